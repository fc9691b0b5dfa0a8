// The room page's client: speaks the wire contract (docs/protocol.md) over /ws/.
// User text is only ever inserted with textContent.
(function () {
  "use strict";

  const root = document.getElementById("room");
  if (!root) return;

  const room = root.dataset.room;
  const historyUrl = root.dataset.historyUrl;
  const list = document.getElementById("messages");
  const composer = document.getElementById("composer");
  const composerBody = document.getElementById("composer-body");
  const composerError = document.getElementById("composer-error");
  const connection = document.getElementById("connection");

  let lastSeq = Number(root.dataset.lastSeq) || 0;
  let lastRev = null;
  let hasMore = root.dataset.hasMore === "true";
  let socket = null;
  let attempts = 0;
  let pingTimer = null;
  let offlineTimer = null;
  let loadingOlder = false;
  const unacked = new Map(); // client_id -> {body}

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // --- Rendering: the same markup as templates/messaging/_message.html ------

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 45) return "just now";
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }

  function renderTimes(scope) {
    scope.querySelectorAll("time.message__time").forEach((el) => {
      const iso = el.getAttribute("datetime");
      el.textContent = formatTime(iso);
      el.title = new Date(iso).toLocaleString();
    });
  }

  function buildMessage(m) {
    const li = document.createElement("li");
    li.className = "message";
    li.dataset.seq = m.seq;
    li.dataset.clientId = m.client_id;
    li.dataset.authorId = m.author.id;
    const meta = document.createElement("div");
    meta.className = "message__meta";
    const author = document.createElement("span");
    author.className = "message__author";
    author.textContent = m.author.username;
    const time = document.createElement("time");
    time.className = "message__time";
    time.setAttribute("datetime", m.sent_at);
    meta.append(author, " ", time);
    const body = document.createElement("div");
    body.className = "message__body";
    li.append(meta, body);
    applyState(li, m);
    renderTimes(li);
    return li;
  }

  function applyState(li, m) {
    const body = li.querySelector(".message__body");
    li.classList.toggle("message--deleted", !!m.deleted);
    body.textContent = m.deleted ? "This message was deleted." : m.body;
    let edited = li.querySelector(".message__edited");
    if (m.edited && !m.deleted) {
      if (!edited) {
        edited = document.createElement("span");
        edited.className = "message__edited";
        edited.textContent = "(edited)";
        li.querySelector(".message__meta").append(" ", edited);
      }
    } else if (edited) {
      edited.remove();
    }
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToBottom() {
    list.scrollTop = list.scrollHeight;
  }

  function findByClientId(clientId) {
    return list.querySelector(`li.message[data-client-id="${CSS.escape(clientId)}"]`);
  }

  function appendMessage(m) {
    const stick = nearBottom();
    const existing = findByClientId(m.client_id);
    if (existing) {
      // Our own pending message: its broadcast confirms it.
      existing.dataset.seq = m.seq;
      existing.classList.remove("message--pending", "message--failed");
      unacked.delete(m.client_id);
      applyState(existing, m);
      return;
    }
    list.append(buildMessage(m));
    if (stick) scrollToBottom();
  }

  // --- The socket -------------------------------------------------------------

  function setState(state) {
    clearTimeout(offlineTimer);
    if (state === "reconnecting") {
      // Only say "offline" when it lasts: a quick reconnect shows as reconnecting.
      offlineTimer = setTimeout(() => setConnection("offline"), 5000);
    }
    setConnection(state);
  }

  function setConnection(state) {
    if (!connection) return;
    connection.dataset.state = state;
    connection.textContent = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…", offline: "offline" }[state];
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function subscribe() {
    send({ type: "subscribe", room, since: lastSeq, rev: lastRev });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/`);
    socket.addEventListener("open", () => {
      attempts = 0;
      setState("connected");
      subscribe();
      clearInterval(pingTimer);
      pingTimer = setInterval(() => send({ type: "ping" }), 25000);
    });
    socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      clearInterval(pingTimer);
      setState("reconnecting");
      attempts += 1;
      const base = Math.min(30000, 500 * 2 ** Math.min(attempts, 6));
      setTimeout(connect, base / 2 + Math.random() * (base / 2));
    });
  }

  function resendUnacked() {
    for (const [clientId, item] of unacked) {
      send({ type: "send", room, body: item.body, client_id: clientId, ref: clientId });
    }
  }

  function handle(frame) {
    if (frame.room !== undefined && frame.room !== room) return;
    if (frame.rev !== undefined && (lastRev === null || frame.rev > lastRev)) lastRev = frame.rev;
    switch (frame.type) {
      case "subscribed":
        if (!frame.recovered) {
          reloadLatest();
        }
        resendUnacked();
        break;
      case "message":
        if (frame.seq <= lastSeq) {
          const li = list.querySelector(`li.message[data-seq="${frame.seq}"]`);
          if (li) applyState(li, frame);
          return;
        }
        if (frame.seq > lastSeq + 1) {
          // A gap: something was missed. Resubscribing replays from lastSeq.
          subscribe();
          return;
        }
        lastSeq = frame.seq;
        appendMessage(frame);
        break;
      case "ack": {
        const li = findByClientId(frame.client_id);
        unacked.delete(frame.client_id);
        if (li) {
          li.classList.remove("message--pending", "message--failed");
          li.dataset.seq = frame.seq;
        }
        break;
      }
      case "kicked":
        showError(frame.reason || "You were removed from this room.");
        if (composer) composer.hidden = true;
        break;
      case "error":
        if (frame.ref && unacked.has(frame.ref)) {
          const li = findByClientId(frame.ref);
          if (frame.code !== "unavailable") {
            unacked.delete(frame.ref);
            if (li) li.classList.add("message--failed");
          }
        }
        showError(frame.detail || frame.code);
        break;
      default:
        break;
    }
  }

  function showError(text) {
    if (!composerError) return;
    composerError.textContent = text;
    composerError.hidden = false;
    setTimeout(() => { composerError.hidden = true; }, 6000);
  }

  // --- History over HTTP -----------------------------------------------------

  async function fetchHistory(params) {
    const response = await fetch(`${historyUrl}?${new URLSearchParams(params)}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`history: ${response.status}`);
    return response.json();
  }

  async function reloadLatest() {
    const page = await fetchHistory({ limit: 50 });
    list.querySelectorAll("li.message:not(.message--pending)").forEach((el) => el.remove());
    const pending = Array.from(list.querySelectorAll("li.message--pending"));
    page.messages.forEach((m) => list.insertBefore(buildMessage(m), pending[0] || null));
    if (page.messages.length) lastSeq = page.messages[page.messages.length - 1].seq;
    setHasMore(page.has_more);
    scrollToBottom();
  }

  function setHasMore(value) {
    hasMore = value;
    let more = document.getElementById("load-older");
    if (!hasMore && more) more.remove();
    if (hasMore && !more) {
      more = document.createElement("li");
      more.id = "load-older";
      more.className = "messages__more";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button";
      button.dataset.action = "load-older";
      button.textContent = "Load older messages";
      more.append(button);
      list.prepend(more);
    }
  }

  async function loadOlder() {
    if (!hasMore || loadingOlder) return;
    const first = list.querySelector("li.message[data-seq]");
    if (!first) return;
    loadingOlder = true;
    try {
      const page = await fetchHistory({ before: first.dataset.seq, limit: 50 });
      const previousHeight = list.scrollHeight;
      const anchor = first;
      page.messages.forEach((m) => list.insertBefore(buildMessage(m), anchor));
      list.scrollTop += list.scrollHeight - previousHeight;
      setHasMore(page.has_more);
    } finally {
      loadingOlder = false;
    }
  }

  list.addEventListener("scroll", () => { if (list.scrollTop < 40) loadOlder(); });
  list.addEventListener("click", (event) => {
    if (event.target.closest("[data-action='load-older']")) loadOlder();
  });

  // --- Composer --------------------------------------------------------------

  if (composer) {
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = composerBody.value.trim();
      if (!body) return;
      const clientId = uuid4();
      const li = buildMessage({
        seq: "", client_id: clientId, author: { id: Number(root.dataset.userId), username: root.dataset.username },
        body, sent_at: new Date().toISOString(), deleted: false, edited: false,
      });
      li.classList.add("message--pending");
      delete li.dataset.seq;
      list.append(li);
      scrollToBottom();
      unacked.set(clientId, { body });
      send({ type: "send", room, body, client_id: clientId, ref: clientId });
      composerBody.value = "";
    });
    composerBody.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
  }

  renderTimes(list);
  setInterval(() => renderTimes(list), 30000);
  scrollToBottom();
  setState("connecting");
  connect();
})();
