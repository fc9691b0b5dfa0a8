// One WebSocket per tab to /ws/, reconnecting with exponential backoff and jitter; when the
// server restarts (a `reconnect` frame, then close 1012), after the wait it asked for.
// Shared by room.js (the room page) and live.js (every other page).
(function () {
  "use strict";

  // A connection that stays lost this long shows as "offline"; a quick reconnect only
  // ever shows as "reconnecting".
  const OFFLINE_AFTER_MS = 5000;
  // A connection open this long without a frame has served too (a page that follows nothing).
  const SERVED_AFTER_MS = 10000;

  function connect({ onOpen, onFrame, onState }) {
    let socket = null;
    let state = null;
    // Failed tries since a connection last served us (its first frame). Not since it opened: a
    // busy server accepts a socket and closes it at once with 1013 (Try Again Later), and
    // those in a row back off as failures do, instead of coming back every second.
    let attempts = 0;
    let servedTimer = null;
    let pingTimer = null;
    let offlineTimer = null;
    let retryTimer = null;
    let closedByUs = false;
    // The wait a `reconnect` frame asked for (ms), for the close (1012) that follows it.
    let reconnectAfter = null;

    function setState(next) {
      // Every failed attempt reports "reconnecting" again: keep the clock running.
      if (next === "reconnecting" && (state === "reconnecting" || state === "offline")) return;
      clearTimeout(offlineTimer);
      if (next === "reconnecting") offlineTimer = setTimeout(() => setState("offline"), OFFLINE_AFTER_MS);
      state = next;
      if (onState) onState(next);
    }

    function open() {
      clearTimeout(retryTimer);
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      socket = new WebSocket(`${scheme}://${location.host}/ws/`);
      socket.addEventListener("open", () => {
        clearTimeout(servedTimer);
        servedTimer = setTimeout(() => {
          attempts = 0;
        }, SERVED_AFTER_MS);
        setState("connected");
        clearInterval(pingTimer);
        pingTimer = setInterval(() => send({ type: "ping" }), 25000);
        if (onOpen) onOpen();
      });
      socket.addEventListener("message", (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        attempts = 0; // served
        if (frame.type === "reconnect") {
          reconnectAfter = Number(frame.after_ms) || 0;
          return;
        }
        onFrame(frame);
      });
      socket.addEventListener("close", (event) => {
        clearInterval(pingTimer);
        clearTimeout(servedTimer);
        if (closedByUs) return;
        setState("reconnecting");
        const hint = reconnectAfter;
        reconnectAfter = null;
        if (event.code === 1012) {
          // Service Restart: the server is draining. Another process takes us after its hint
          // (plus a little jitter); no backoff yet, this is not a failure.
          attempts = 0;
          retryTimer = setTimeout(open, (hint === null ? 1000 * Math.random() : hint) + Math.random() * 250);
          return;
        }
        attempts += 1;
        // Exponential backoff with jitter, so a restarted server is not stormed.
        const ceiling = Math.min(30000, 500 * 2 ** Math.min(attempts, 6));
        retryTimer = setTimeout(open, ceiling / 2 + Math.random() * (ceiling / 2));
      });
    }

    // Try at once rather than at the end of the backoff (the network is back, the
    // tab is shown again, or the user asked).
    function retryNow() {
      if (closedByUs || !socket || socket.readyState !== WebSocket.CLOSED) return;
      attempts = 0;
      open();
    }
    window.addEventListener("online", retryNow);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") retryNow();
    });

    function send(frame) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(frame));
        return true;
      }
      return false;
    }

    setState("connecting");
    open();
    return {
      send,
      retryNow,
      close() {
        closedByUs = true;
        if (socket) socket.close();
      },
      // For tests and debugging: drop the connection as a network failure would.
      drop() {
        if (socket) socket.close();
      },
    };
  }

  // `seq`: the room's latest (an `unread` frame), for the mentions it leaves unread (notify.js).
  function setUnread(slug, count, seq) {
    const attention = window.PubSub.attention;
    document.querySelectorAll(`[data-unread-room="${CSS.escape(slug)}"], .sidebar__room[data-room="${CSS.escape(slug)}"] [data-unread]`).forEach((badge) => {
      badge.firstChild.textContent = String(count);
      const item = badge.closest(".sidebar__room, .room-list__item");
      // A room set to "nothing", or snoozed, shows no count (notify.js).
      const quiet = attention ? attention.quiet(item) : false;
      badge.hidden = count <= 0 || quiet;
      if (item) item.classList.toggle(`${item.classList[0]}--unread`, count > 0 && !quiet);
    });
    if (attention) attention.unreadChanged(slug, count, seq);
  }

  // A direct conversation someone opened with us: listed at the top of "Direct messages".
  function addDirect(slug, title) {
    const list = document.getElementById("sidebar-directs");
    if (!list || list.querySelector(`.sidebar__room[data-room="${CSS.escape(slug)}"]`)) return;
    const item = document.createElement("li");
    item.className = "sidebar__room sidebar__room--direct";
    item.dataset.room = slug;
    item.dataset.notify = "mentions"; // a new conversation has the default settings
    const link = document.createElement("a");
    link.href = `/rooms/${encodeURIComponent(slug)}/`;
    link.textContent = title;
    const badge = document.createElement("span");
    badge.className = "badge badge--count badge--mention";
    badge.dataset.unread = "";
    badge.hidden = true;
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " unread";
    badge.append("0", hidden);
    item.append(link, " ", badge);
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(item);
  }

  function bumpNotifications() {
    const link = document.getElementById("notifications-link");
    if (!link) return;
    let badge = document.getElementById("notifications-count");
    if (!badge) {
      badge = document.createElement("span");
      badge.id = "notifications-count";
      badge.className = "badge badge--count";
      badge.textContent = "0";
      link.append(" ", badge);
    }
    badge.textContent = String(Number(badge.textContent) + 1);
  }

  function toast(text) {
    let box = document.getElementById("toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "toasts";
      box.className = "toasts";
      box.setAttribute("role", "status");
      document.body.append(box);
    }
    const item = document.createElement("p");
    item.className = "toast";
    item.textContent = text;
    box.append(item);
    setTimeout(() => item.remove(), 6000);
  }

  // Relative while recent, then the clock time, then the date; the exact time is in
  // the title (shown on hover).
  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 45) return "just now";
    if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min ago`;
    const clock = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (date.toDateString() === today.toDateString()) return clock;
    if (date.toDateString() === yesterday.toDateString()) return `yesterday ${clock}`;
    return date.toLocaleDateString([], { day: "numeric", month: "short", year: seconds > 180 * 86400 ? "numeric" : undefined }) + `, ${clock}`;
  }

  function renderTimes(scope) {
    scope.querySelectorAll("time.message__time, time[data-relative]").forEach((el) => {
      const iso = el.getAttribute("datetime");
      el.textContent = formatTime(iso);
      el.title = new Date(iso).toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
    });
  }

  // Frames every page understands: unread counts and notifications.
  function handleCommon(frame) {
    if (frame.type === "unread") {
      setUnread(frame.room, frame.count, frame.seq);
      return true;
    }
    if (frame.type === "notify_settings") {
      if (window.PubSub.attention) window.PubSub.attention.applySettings(frame.room, frame.level, frame.snoozed_until);
      return true;
    }
    if (frame.type === "direct_joined") {
      addDirect(frame.room, frame.title);
      return true;
    }
    if (frame.type === "notification") {
      if (window.PubSub.attention) window.PubSub.attention.notified(frame);
      // "message": a message of a room the user hears all of; not on the notifications page.
      if (frame.kind === "message") return true;
      bumpNotifications();
      // For push.js: the first mention is when it offers notifications on this device.
      document.dispatchEvent(new CustomEvent("pubsub:notification", { detail: frame }));
      if (frame.kind === "invite") toast(`${frame.from.username} invited you to ${frame.title}.`);
      else if (frame.kind === "direct") toast(`${frame.from.username}: ${frame.excerpt}`);
      else toast(`${frame.from.username} mentioned you: ${frame.excerpt}`);
      return true;
    }
    return false;
  }

  window.PubSub = { connect, setUnread, handleCommon, toast, formatTime, renderTimes };
})();
