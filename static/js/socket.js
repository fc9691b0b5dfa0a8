// One WebSocket per tab to /ws/, reconnecting with exponential backoff and jitter.
// Shared by room.js (the room page) and live.js (every other page).
(function () {
  "use strict";

  function connect({ onOpen, onFrame, onState }) {
    let socket = null;
    let attempts = 0;
    let pingTimer = null;
    let offlineTimer = null;
    let closedByUs = false;

    function setState(state) {
      clearTimeout(offlineTimer);
      if (state === "reconnecting") {
        // "offline" only when it lasts: a quick reconnect shows as reconnecting.
        offlineTimer = setTimeout(() => onState && onState("offline"), 5000);
      }
      if (onState) onState(state);
    }

    function open() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      socket = new WebSocket(`${scheme}://${location.host}/ws/`);
      socket.addEventListener("open", () => {
        attempts = 0;
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
        onFrame(frame);
      });
      socket.addEventListener("close", () => {
        clearInterval(pingTimer);
        if (closedByUs) return;
        setState("reconnecting");
        attempts += 1;
        const ceiling = Math.min(30000, 500 * 2 ** Math.min(attempts, 6));
        setTimeout(open, ceiling / 2 + Math.random() * (ceiling / 2));
      });
    }

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

  function setUnread(slug, count) {
    document.querySelectorAll(`[data-unread-room="${CSS.escape(slug)}"], .sidebar__room[data-room="${CSS.escape(slug)}"] [data-unread]`).forEach((badge) => {
      badge.firstChild.textContent = String(count);
      badge.hidden = count <= 0;
      const item = badge.closest(".sidebar__room");
      if (item) item.classList.toggle("sidebar__room--unread", count > 0);
    });
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

  // Frames every page understands: unread counts and notifications.
  function handleCommon(frame) {
    if (frame.type === "unread") {
      setUnread(frame.room, frame.count);
      return true;
    }
    if (frame.type === "notification") {
      bumpNotifications();
      toast(`${frame.from.username} mentioned you: ${frame.excerpt}`);
      return true;
    }
    return false;
  }

  window.PubSub = { connect, setUnread, handleCommon, toast };
})();
