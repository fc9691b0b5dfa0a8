// Notifications on this device (Web Push), turned on only by a click: the button on the settings
// page, or the banner offered after a mention arrives while notifications were never asked for.
// The browser's subscription (endpoint and keys) is stored by POST /push/subscribe/
// (webpush.views). Without a VAPID key on the site (no data-push-key) or without the browser's
// support, nothing here shows.
(function () {
  "use strict";
  const body = document.body;
  const key = body.dataset.pushKey;
  if (!key || !("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return;
  const DISMISSED = "pubsub:push-banner-dismissed";

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function keyBytes(text) {
    const base64 = (text + "=".repeat((4 - (text.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function sameKey(subscription) {
    const current = subscription.options && subscription.options.applicationServerKey;
    if (!current) return false;
    const a = new Uint8Array(current);
    const b = keyBytes(key);
    return a.length === b.length && a.every((byte, i) => byte === b[i]);
  }

  async function post(url, data) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(data),
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    return response.json();
  }

  async function subscription() {
    const registration = await navigator.serviceWorker.ready;
    return registration.pushManager.getSubscription();
  }

  // "on" (subscribed here), "off" (may be turned on), "denied" (the browser's setting blocks it).
  async function state() {
    if (Notification.permission === "denied") return "denied";
    const current = await subscription();
    return current && Notification.permission === "granted" && sameKey(current) ? "on" : "off";
  }

  async function turnOn() {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") return permission === "denied" ? "denied" : "off";
    const registration = await navigator.serviceWorker.ready;
    let current = await registration.pushManager.getSubscription();
    if (current && !sameKey(current)) {
      await current.unsubscribe(); // made with another key: the push service would refuse ours
      current = null;
    }
    if (!current) {
      current = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
    }
    await post(body.dataset.pushSubscribe, current.toJSON());
    return "on";
  }

  async function turnOff() {
    const current = await subscription();
    if (current) {
      await post(body.dataset.pushUnsubscribe, { endpoint: current.endpoint });
      await current.unsubscribe();
    }
    return "off";
  }

  // The settings page.
  const panel = document.getElementById("push-settings");
  if (panel) {
    const status = panel.querySelector("[data-push-status]");
    const on = panel.querySelector("[data-push-on]");
    const off = panel.querySelector("[data-push-off]");
    const show = (value) => {
      status.textContent = {
        on: "Mentions and direct messages reach this device when no tab of pubsub is open (and no longer by e-mail).",
        off: "This device gets no notifications when no tab of pubsub is open.",
        denied: "This browser blocks notifications from this site: allow them in its site settings, then come back.",
      }[value];
      on.hidden = value !== "off";
      off.hidden = value !== "on";
      panel.hidden = false;
    };
    const run = (action) => async () => {
      on.disabled = off.disabled = true;
      try {
        show(await action());
      } catch (error) {
        status.textContent = `Notifications could not be changed: ${error.message}`;
      } finally {
        on.disabled = off.disabled = false;
      }
    };
    on.addEventListener("click", run(turnOn));
    off.addEventListener("click", run(turnOff));
    state().then(show, () => {});
  }

  // The banner, once: after a mention arrives on a page, if notifications were never asked for.
  function offerBanner() {
    if (Notification.permission !== "default" || localStorage.getItem(DISMISSED) || document.getElementById("push-banner")) return;
    const banner = document.createElement("div");
    banner.id = "push-banner";
    banner.className = "push-banner";
    banner.setAttribute("role", "region");
    banner.setAttribute("aria-label", "Notifications");
    const text = document.createElement("p");
    text.textContent = "Want to hear of mentions and direct messages when pubsub is closed?";
    const yes = document.createElement("button");
    yes.type = "button";
    yes.className = "button";
    yes.textContent = "Turn on notifications on this device";
    const no = document.createElement("button");
    no.type = "button";
    no.className = "link-button";
    no.textContent = "Not now";
    const close = () => {
      localStorage.setItem(DISMISSED, "1");
      banner.remove();
    };
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await turnOn();
      } catch (error) {
        console.warn("Notifications could not be turned on:", error);
      }
      close();
    });
    no.addEventListener("click", close);
    banner.append(text, yes, " ", no);
    (document.getElementById("main") || body).prepend(banner);
  }
  document.addEventListener("pubsub:notification", (event) => {
    if (event.detail && event.detail.kind === "mention") offerBanner();
  });

  window.PubSubPush = { state, turnOn, turnOff };
})();
