// Every page registers the service worker (/sw.js: the installable app, the offline page and the
// pushes). Registering asks the user nothing; notifications are asked for only by a click (push.js).
(function () {
  "use strict";
  const url = document.body.dataset.sw;
  if (!url || !("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register(url, { scope: "/" }).catch((error) => {
    console.warn("The service worker was not registered:", error);
  });
})();
