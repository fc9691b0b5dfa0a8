/* pubsub's service worker (served at /sw.js, scope "/", by webpush.views.service_worker).

   It keeps one page for when the network is gone (/offline/, cached at install), shows the
   pushes the server sends (webpush.services: {title, body, room, seq, url, tag, count}), and
   opens the room at the message when a notification is clicked. */
"use strict";

const CACHE = "pubsub-offline-v1";
const OFFLINE_URL = "{{ offline_url|escapejs }}";
const PRECACHE = [OFFLINE_URL, "{{ css_url|escapejs }}", "{{ icon_url|escapejs }}"];
const ICON_URL = "{{ icon_url|escapejs }}";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

// Pages come from the network, always; the offline page only when it cannot answer.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.mode === "navigate" && request.method === "GET") {
    event.respondWith(fetch(request).catch(() => caches.match(OFFLINE_URL)));
    return;
  }
  if (PRECACHE.includes(new URL(request.url).pathname)) {
    event.respondWith(fetch(request).catch(() => caches.match(request)));
  }
});

function notificationFrom(data) {
  const url = new URL(data.url || "/", self.location.origin);
  if (url.origin !== self.location.origin) url.href = new URL("/", self.location.origin).href;
  return {
    title: String(data.title || "pubsub"),
    options: {
      body: String(data.body || ""),
      tag: String(data.tag || "pubsub"),
      renotify: true,
      icon: ICON_URL,
      data: { url: url.href, room: data.room || "", seq: Number(data.seq) || 0 },
    },
  };
}

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data ? event.data.text() : "" };
  }
  const { title, options } = notificationFrom(data);
  event.waitUntil(self.registration.showNotification(title, options));
});

// Opening a notification: a tab of the site already on that room (or any of its tabs) goes to
// the message and takes the focus; with none open, a new window opens at it.
async function openFromNotification(notification) {
  notification.close();
  const target = (notification.data && notification.data.url) || new URL("/", self.location.origin).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const path = new URL(target).pathname;
  const sameRoom = windows.find((client) => new URL(client.url).pathname === path);
  const existing = sameRoom || windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (existing) {
    try {
      await existing.focus(); // first, while the click's user activation lasts
    } catch (error) {
      // Without it the tab still goes to the message.
    }
    if (existing.url === target) return existing;
    try {
      const client = await existing.navigate(target); // only a tab this worker controls can be sent
      if (client) return client;
    } catch (error) {
      // An uncontrolled tab: a new window instead.
    }
  }
  return self.clients.openWindow(target);
}

self.addEventListener("notificationclick", (event) => {
  event.waitUntil(openFromNotification(event.notification));
});
