// Pages other than a room: keep unread badges and notifications live.
(function () {
  "use strict";
  if (document.getElementById("room") || !document.body.dataset.user) return;
  window.PubSub.renderTimes(document);
  setInterval(() => window.PubSub.renderTimes(document), 30000);
  window.PubSub.connect({ onFrame: (frame) => window.PubSub.handleCommon(frame) });
})();
