// The room page's client: speaks the wire contract (docs/protocol.md) over /ws/.
// User text is only ever inserted with textContent; links are built as elements.
(function () {
  "use strict";

  const root = document.getElementById("room");
  if (!root) return;

  const room = root.dataset.room;
  const me = { id: Number(root.dataset.userId), username: root.dataset.username };
  const canModerate = root.dataset.canModerate === "true";
  const list = document.getElementById("messages");
  const composer = document.getElementById("composer");
  const composerBody = document.getElementById("composer-body");
  const composerError = document.getElementById("composer-error");
  const connection = document.getElementById("connection");
  const onlineList = document.getElementById("online");
  const typingLine = document.getElementById("typing");
  const board = document.getElementById("clap-board");
  const reportDialog = document.getElementById("report-dialog");
  const retryButton = document.getElementById("reconnect-now");

  const GROUP_WINDOW_MS = 5 * 60 * 1000;
  const TYPING_SEND_INTERVAL_MS = 2000;
  const TYPING_SHOW_MS = 4000;
  const MAX_RENDERED = 400;

  let lastSeq = Number(root.dataset.lastSeq) || 0;
  let lastRev = null;
  let hasMore = root.dataset.hasMore === "true";
  let loadingOlder = false;
  let loadingNewer = false;
  let lastTypingSent = 0;
  let readSent = 0;
  let reportSeq = null;
  let retryTimer = null;
  let kicked = false;
  // Subscribed on the current connection: until then new messages wait in `unacked`
  // and go out after the ones before them, in the order they were written.
  let ready = false;
  const unacked = new Map(); // client_id -> {body, replyTo}
  const online = new Map(); // user id -> user (the server names at most PRESENCE_LIST_MAX)
  let onlineCount = 0; // how many people are online, named or not
  const typers = new Map(); // user id -> {user, timer}

  // --- Rendering: the same markup as templates/messaging/_message.html -------

  // The body's formatting (links, *bold*, _italic_, `code`, code blocks, > quotes): static/js/format.js,
  // the grammar of messaging/formatting.py, which renders the server's pages.
  function fillBody(el, text) {
    window.PubSubFormat.fill(el, text);
  }

  // A reply's quote of its original: who wrote it and how it starts (messaging.wire.reply_excerpt).
  function replyExcerpt(body) {
    return window.PubSubFormat.excerpt(body);
  }

  function fillQuote(a, reply) {
    const excerpt = document.createElement("span");
    excerpt.className = "message__reply-excerpt";
    if (reply.deleted) {
      excerpt.textContent = "Original message deleted";
      a.replaceChildren(excerpt);
      return;
    }
    const author = document.createElement("span");
    author.className = "message__reply-author";
    author.textContent = reply.author ? reply.author.username : "A message";
    excerpt.textContent = reply.excerpt;
    a.replaceChildren(author, " ", excerpt);
  }

  function buildQuote(m) {
    const a = document.createElement("a");
    a.className = "message__reply";
    a.href = `${window.location.pathname}?around=${Number(m.reply_to)}#seq-${Number(m.reply_to)}`;
    a.dataset.action = "show-original";
    a.dataset.replyTo = m.reply_to;
    fillQuote(a, m.reply || { seq: m.reply_to, author: null, excerpt: "", deleted: false });
    return a;
  }

  // The original changed: every quote of it on the page follows.
  function updateQuotes(seq, change) {
    list.querySelectorAll(`a.message__reply[data-reply-to="${Number(seq)}"]`).forEach((a) => {
      const author = a.querySelector(".message__reply-author");
      fillQuote(a, {
        author: author ? { username: author.textContent } : null,
        excerpt: change.body !== undefined ? replyExcerpt(change.body) : "",
        deleted: !!change.deleted,
      });
    });
  }

  const renderTimes = window.PubSub.renderTimes;

  function button(action, label) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link-button";
    b.dataset.action = action;
    b.textContent = label;
    return b;
  }

  function buildMessage(m) {
    const li = document.createElement("li");
    li.className = "message";
    li.dataset.seq = m.seq;
    li.dataset.clientId = m.client_id;
    li.dataset.authorId = m.author.id;
    li.dataset.sentAt = m.sent_at;
    if (m.seq) li.id = `seq-${m.seq}`;
    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = m.author.username.charAt(0).toUpperCase();
    const meta = document.createElement("div");
    meta.className = "message__meta";
    // Someone else's name opens a direct conversation with them (the page's #direct-form).
    const author = document.createElement(m.author.id === me.id ? "span" : "button");
    author.className = "message__author";
    author.textContent = m.author.username;
    if (m.author.id !== me.id) {
      author.type = "submit";
      author.className = "message__author link-button";
      author.setAttribute("form", "direct-form");
      author.name = "usernames";
      author.value = m.author.username;
      author.title = `Send ${m.author.username} a direct message`;
    }
    const time = document.createElement("time");
    time.className = "message__time";
    time.setAttribute("datetime", m.sent_at);
    meta.append(author, " ", time);
    const content = document.createElement("div");
    content.className = "message__content";
    const body = document.createElement("div");
    body.className = "message__body";
    const edited = document.createElement("span");
    edited.className = "message__edited";
    edited.textContent = "(edited)";
    if (m.reply_to) content.append(buildQuote(m));
    content.append(body, " ", edited);
    const actions = document.createElement("div");
    actions.className = "message__actions";
    const clap = document.createElement("button");
    clap.type = "button";
    clap.className = "clap";
    clap.dataset.action = "clap";
    clap.title = "Clap for this message";
    clap.setAttribute("aria-pressed", "false");
    const icon = document.createElement("span");
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = "👏";
    const total = document.createElement("span");
    total.className = "clap__total";
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " claps";
    clap.append(icon, " ", total, hidden);
    const tools = document.createElement("span");
    tools.className = "message__tools";
    if (composer) tools.append(button("reply", "Reply"), " ");
    if (m.author.id === me.id) tools.append(button("edit", "Edit"), " ", button("delete", "Delete"));
    else if (canModerate) tools.append(button("delete", "Delete"));
    if (m.author.id !== me.id) tools.append(button("report", "Report"));
    actions.append(clap, " ", tools);
    li.append(avatar, meta, content, actions);
    applyState(li, m);
    renderTimes(li);
    return li;
  }

  // "@username" in a message, found as the server finds mentions (messaging/persistence.py).
  const MENTION = /(^|[^\p{L}\p{N}\p{M}_@])@([\p{L}\p{N}\p{M}_.@+-]{1,150})/gu;

  function mentionsMe(text) {
    for (const match of text.matchAll(MENTION)) {
      if (match[2].replace(/\.+$/, "").toLowerCase() === me.username.toLowerCase()) return true;
    }
    return false;
  }

  function markMention(li) {
    const mine = Number(li.dataset.authorId) === me.id;
    const deleted = li.classList.contains("message--deleted");
    li.classList.toggle("message--mentions-me", !mine && !deleted && mentionsMe(li.querySelector(".message__body").textContent));
  }

  function applyState(li, m) {
    li.classList.toggle("message--deleted", !!m.deleted);
    const body = li.querySelector(".message__body");
    if (m.deleted) {
      body.textContent = "This message was deleted.";
      delete li.dataset.body;
    }
    else if (m.body !== undefined) {
      fillBody(body, m.body);
      li.dataset.body = m.body; // what Edit starts from, and a reply's quote (not the formatted text)
    }
    markMention(li);
    li.querySelector(".message__edited").hidden = !m.edited || !!m.deleted;
    li.querySelector(".message__actions").hidden = !!m.deleted;
    if (m.claps !== undefined) setClaps(li, m.claps);
  }

  function setClaps(li, total, mine) {
    li.querySelector(".clap__total").textContent = String(total);
    li.querySelector(".clap").dataset.total = total;
    if (mine !== undefined) {
      const clap = li.querySelector(".clap");
      clap.setAttribute("aria-pressed", mine > 0 ? "true" : "false");
      clap.dataset.mine = mine;
      clap.title = mine > 0 ? `You clapped ${mine} time${mine === 1 ? "" : "s"}` : "Clap for this message";
    }
  }

  // Consecutive messages of one author within a few minutes show as one group.
  function regroup(li) {
    if (!li || !li.classList.contains("message")) return;
    const prev = li.previousElementSibling;
    const continued = prev && prev.classList.contains("message") &&
      prev.dataset.authorId === li.dataset.authorId &&
      new Date(li.dataset.sentAt) - new Date(prev.dataset.sentAt) < GROUP_WINDOW_MS;
    li.classList.toggle("message--continued", !!continued);
  }

  function bySeq(seq) {
    return list.querySelector(`li.message[data-seq="${Number(seq)}"]`);
  }

  // Our own message still waiting to be confirmed. A client_id is its author's: another
  // user's message may carry the same one, and it is theirs, never this one's confirmation.
  function byClientId(clientId) {
    return list.querySelector(`li.message:is(.message--pending, .message--failed)[data-client-id="${CSS.escape(clientId)}"]`);
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToBottom() {
    list.scrollTop = list.scrollHeight;
  }

  function trimOld() {
    // Infinite scroll keeps the page light: far-away old messages leave the DOM.
    const rendered = list.querySelectorAll("li.message[data-seq]");
    if (rendered.length <= MAX_RENDERED || !nearBottom()) return;
    for (let i = 0; i < rendered.length - MAX_RENDERED; i += 1) rendered[i].remove();
    setHasMore(true);
  }

  function appendMessage(m) {
    const stick = nearBottom() || m.author.id === me.id;
    const pending = m.author.id === me.id ? byClientId(m.client_id) : null;
    if (pending) {
      // Our own pending message: its broadcast confirms it, and it moves into seq order.
      pending.remove();
      unacked.delete(m.client_id);
    }
    const li = buildMessage(m);
    const firstPending = list.querySelector("li.message--pending");
    list.insertBefore(li, firstPending);
    regroup(li);
    regroup(li.nextElementSibling);
    updateEmpty();
    trimOld();
    stopTyping(m.author.id); // their message ends their typing
    if (stick) scrollToBottom();
    else showNewBelow();
    if (document.visibilityState !== "visible" && m.author.id !== me.id) countUnseen(1);
    markRead();
  }

  // "No messages yet" while the room is empty.
  function updateEmpty() {
    const empty = document.getElementById("messages-empty");
    if (empty) empty.hidden = !!list.querySelector("li.message");
  }

  // New messages below while the reader is scrolled up: a button to jump to them.
  const newBelow = document.getElementById("new-below");
  function showNewBelow() {
    if (newBelow) newBelow.hidden = false;
  }
  if (newBelow) {
    newBelow.addEventListener("click", () => {
      scrollToBottom();
      newBelow.hidden = true;
      list.focus();
    });
  }

  // Messages that arrived while the tab was hidden show in its title.
  const baseTitle = document.title;
  let unseen = 0;
  function countUnseen(n) {
    unseen = n ? unseen + n : 0;
    document.title = unseen ? `(${unseen}) ${baseTitle}` : baseTitle;
    // The server sends no unread counts for the room a socket follows: its badge is ours.
    if (n) window.PubSub.setUnread(room, unseen);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") countUnseen(0);
  });

  // --- Connection ----------------------------------------------------------------

  const socket = window.PubSub.connect({
    onOpen() {
      ready = false;
      subscribe();
    },
    onFrame: handle,
    onState(state) {
      if (state !== "connected") ready = false;
      if (window.PubSubPanels) window.PubSubPanels.setConnection(state); // static/js/panels.js
      if (!connection) return;
      connection.dataset.state = state;
      connection.textContent = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…", offline: "offline" }[state];
      if (retryButton) retryButton.hidden = state !== "offline";
    },
  });
  window.pubsubRoomSocket = socket;
  if (retryButton) retryButton.addEventListener("click", () => socket.retryNow());

  function subscribe() {
    if (kicked) return; // the subscription ended for good; a reload shows why
    socket.send({ type: "subscribe", room, since: lastSeq, rev: lastRev });
  }

  function resendUnacked() {
    for (const [clientId, pending] of unacked) socket.send(sendFrame(clientId, pending));
  }

  function sendFrame(clientId, { body, replyTo }) {
    const frame = { type: "send", room, body, client_id: clientId, ref: clientId };
    if (replyTo) frame.reply_to = replyTo;
    return frame;
  }

  function handle(frame) {
    if (window.PubSub.handleCommon(frame)) return;
    if (window.PubSubPanels && window.PubSubPanels.handle(frame)) return; // members, name, topic
    if (frame.room !== undefined && frame.room !== room) return;
    if (typeof frame.rev === "number" && (lastRev === null || frame.rev > lastRev)) lastRev = frame.rev;
    switch (frame.type) {
      case "subscribed":
        ready = true;
        if (!frame.recovered) reloadLatest();
        resendUnacked();
        markRead();
        break;
      case "message":
        if (frame.seq <= lastSeq) {
          const li = bySeq(frame.seq);
          if (li) applyState(li, frame);
          return;
        }
        if (frame.seq > lastSeq + 1) {
          subscribe(); // a gap: resubscribing replays everything after lastSeq
          return;
        }
        lastSeq = frame.seq;
        appendMessage(frame);
        break;
      case "ack": {
        unacked.delete(frame.client_id);
        const li = byClientId(frame.client_id);
        if (li) li.classList.remove("message--failed");
        break;
      }
      case "message_updated": {
        const li = bySeq(frame.seq);
        if (li) applyState(li, { body: frame.body, edited: true });
        updateQuotes(frame.seq, { body: frame.body });
        break;
      }
      case "message_deleted": {
        const li = bySeq(frame.seq);
        if (li) applyState(li, { deleted: true });
        updateQuotes(frame.seq, { deleted: true });
        break;
      }
      case "claps": {
        const li = bySeq(frame.seq);
        if (li) setClaps(li, frame.total, frame.user && frame.user.id === me.id ? frame.user_total : undefined);
        break;
      }
      case "clap_board":
        updateBoard(frame.users);
        break;
      case "presence":
        online.clear();
        frame.online.forEach((u) => online.set(u.id, u));
        onlineCount = frame.count ?? frame.online.length;
        renderOnline();
        break;
      case "presence_diff":
        frame.joins.forEach((u) => online.set(u.id, u));
        frame.leaves.forEach((u) => { online.delete(u.id); stopTyping(u.id); });
        onlineCount = frame.count ?? online.size;
        renderOnline();
        break;
      case "typing":
        showTyping(frame.user);
        break;
      case "kicked":
        kicked = true;
        showError(frame.reason || "You were removed from this room.", { stay: true });
        if (composer) composer.hidden = true;
        root.dataset.kicked = "true";
        online.clear();
        onlineCount = 0;
        typers.forEach((entry) => clearTimeout(entry.timer));
        typers.clear();
        renderOnline();
        renderTyping();
        break;
      case "error":
        handleError(frame);
        break;
      default:
        break;
    }
  }

  function handleError(frame) {
    if (frame.ref && unacked.has(frame.ref)) {
      const li = byClientId(frame.ref);
      if (frame.code === "unavailable" || frame.code === "rate_limited") {
        // Kept pending: retried with the same client_id, so it can never appear twice.
        clearTimeout(retryTimer);
        retryTimer = setTimeout(resendUnacked, ((frame.retry_after || 1) * 1000) + Math.random() * 500);
      } else {
        unacked.delete(frame.ref);
        if (li) li.classList.replace("message--pending", "message--failed");
      }
    }
    let text = frame.detail || frame.code;
    if (frame.code === "rate_limited" && frame.retry_after) text = `Slow down: you can send again in ${Math.ceil(frame.retry_after)} s.`;
    if (frame.code === "muted" && frame.until) text = `You are muted until ${new Date(frame.until).toLocaleString()}.`;
    showError(text);
  }

  function showError(text, { stay = false } = {}) {
    if (!composerError || (kicked && !stay)) return;
    composerError.textContent = text;
    composerError.hidden = false;
    clearTimeout(showError.timer);
    if (!stay) showError.timer = setTimeout(() => { composerError.hidden = true; }, 6000);
  }

  // --- Presence, typing, clap board ----------------------------------------

  function renderOnline() {
    if (!onlineList) return;
    const users = Array.from(online.values()).sort((a, b) => a.username.localeCompare(b.username));
    const items = users.map((u) => {
      const li = document.createElement("li");
      li.className = u.spectator ? "online__user online__user--spectator" : "online__user";
      li.dataset.userId = u.id;
      li.textContent = u.username;
      if (u.spectator) {
        const tag = document.createElement("span");
        tag.className = "members__role";
        tag.textContent = " watching";
        li.append(tag);
      }
      return li;
    });
    if (!items.length) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nobody else right now.";
      items.push(empty);
    }
    // A big room names some of the people online (the server caps the list) and counts all.
    const others = onlineCount - users.length;
    if (others > 0) {
      const more = document.createElement("li");
      more.className = "online__more";
      more.textContent = `and ${others.toLocaleString()} more`;
      items.push(more);
    }
    onlineList.replaceChildren(...items);
  }

  function showTyping(user) {
    stopTyping(user.id);
    const timer = setTimeout(() => stopTyping(user.id), TYPING_SHOW_MS);
    typers.set(user.id, { user, timer });
    renderTyping();
  }

  function stopTyping(userId) {
    const entry = typers.get(userId);
    if (!entry) return;
    clearTimeout(entry.timer);
    typers.delete(userId);
    renderTyping();
  }

  function renderTyping() {
    const names = Array.from(typers.values()).map((t) => t.user.username);
    if (!names.length) typingLine.textContent = "";
    else if (names.length === 1) typingLine.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) typingLine.textContent = `${names[0]} and ${names[1]} are typing…`;
    else typingLine.textContent = "Several people are typing…";
  }

  function updateBoard(users) {
    if (!board) return;
    const body = board.tBodies[0];
    const empty = body.querySelector(".clap-board__empty");
    if (empty && users.length) empty.remove();
    for (const u of users) {
      let row = body.querySelector(`tr[data-user-id="${Number(u.id)}"]`);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.userId = u.id;
        const name = document.createElement("td");
        name.textContent = u.username || (online.get(u.id) || {}).username || memberName(u.id);
        const given = document.createElement("td");
        given.className = "clap-board__given";
        const received = document.createElement("td");
        received.className = "clap-board__received";
        row.append(name, given, received);
        body.append(row);
      }
      row.querySelector(".clap-board__given").textContent = String(u.given);
      row.querySelector(".clap-board__received").textContent = String(u.received);
    }
  }

  function memberName(id) {
    const item = document.querySelector(`.members__item[data-user-id="${Number(id)}"]`);
    return item ? item.firstChild.textContent.trim() : `user ${id}`;
  }

  async function loadClapState() {
    const seqs = Array.from(list.querySelectorAll("li.message[data-seq]")).map((li) => li.dataset.seq).slice(-200);
    try {
      const response = await fetch(`${root.dataset.clapsUrl}?seqs=${seqs.join(",")}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      updateBoard(data.board);
      for (const [seq, mine] of Object.entries(data.mine)) {
        const li = bySeq(seq);
        if (li) setClaps(li, Number(li.querySelector(".clap__total").textContent), mine);
      }
    } catch (error) {
      // The board is a nicety: the page works without it.
    }
  }

  // --- Read markers ------------------------------------------------------------

  function markRead() {
    if (document.visibilityState !== "visible" || !nearBottom() || lastSeq <= readSent) return;
    if (document.getElementById("load-newer")) return; // messages before the latest were left out

    if (!socket.send({ type: "read", room, seq: lastSeq })) return;
    readSent = lastSeq;
    window.PubSub.setUnread(room, 0);
  }
  document.addEventListener("visibilitychange", markRead);

  // --- History over HTTP -----------------------------------------------------

  async function fetchHistory(params) {
    const response = await fetch(`${root.dataset.historyUrl}?${new URLSearchParams(params)}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`history: ${response.status}`);
    return response.json();
  }

  async function reloadLatest() {
    const page = await fetchHistory({ limit: 50 });
    list.querySelectorAll("li.message:not(.message--pending), #load-newer").forEach((el) => el.remove());
    const firstPending = list.querySelector("li.message--pending");
    page.messages.forEach((m) => {
      const li = buildMessage(m);
      list.insertBefore(li, firstPending);
      regroup(li);
    });
    if (page.messages.length) lastSeq = Math.max(lastSeq, page.messages[page.messages.length - 1].seq);
    setHasMore(page.has_more);
    updateEmpty();
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
      more.append(button("load-older", "Load older messages"));
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
      page.messages.forEach((m) => list.insertBefore(buildMessage(m), first));
      list.querySelectorAll("li.message").forEach(regroup);
      list.scrollTop += list.scrollHeight - previousHeight;
      setHasMore(page.has_more);
    } finally {
      loadingOlder = false;
    }
  }

  // The page opened around a message (?around=<seq>): the messages between it and the live
  // ones, which follow the button, come 50 at a time.
  async function loadNewer() {
    const gap = document.getElementById("load-newer");
    if (!gap || loadingNewer) return;
    let last = gap.previousElementSibling;
    while (last && !(last.classList.contains("message") && last.dataset.seq)) last = last.previousElementSibling;
    if (!last) return;
    loadingNewer = true;
    try {
      const page = await fetchHistory({ after: last.dataset.seq, limit: 50 });
      let closed = !page.has_more;
      for (const m of page.messages) {
        if (m.seq > lastSeq || bySeq(m.seq)) {
          closed = true; // the live messages take it from here
          break;
        }
        const li = buildMessage(m);
        list.insertBefore(li, gap);
        regroup(li);
      }
      if (closed) {
        gap.remove();
        list.querySelectorAll("li.message").forEach(regroup);
        markRead();
      }
    } finally {
      loadingNewer = false;
    }
  }

  // A message to show: the page's ?around=<seq>, or a #seq-<seq> link (a mention). One that is
  // not on the page is asked of the server, which renders the page around it.
  function showTarget() {
    const match = /^#seq-(\d+)$/.exec(window.location.hash);
    const seq = match ? Number(match[1]) : Number(root.dataset.around) || 0;
    if (!seq) return false;
    const li = bySeq(seq);
    if (!li) {
      if (Number(root.dataset.around) === seq) return false; // no such message
      const url = new URL(window.location.href);
      url.searchParams.set("around", String(seq));
      window.location.replace(url.href);
      return true;
    }
    markTarget(li);
    // The browser's own jump to a #fragment (to the top edge) may come after this: centre it again.
    if (document.readyState !== "complete") {
      window.addEventListener("load", () => li.scrollIntoView({ block: "center" }), { once: true });
    }
    return true;
  }
  window.addEventListener("hashchange", showTarget);

  function markTarget(li) {
    list.querySelectorAll("li.message--target").forEach((el) => el.classList.remove("message--target"));
    li.classList.add("message--target");
    li.scrollIntoView({ block: "center" });
  }

  // A reply's quote leads to its original: on the page, scrolled to and marked; otherwise the
  // page opens around it (?around=<seq>, the server renders the messages about it).
  function showMessage(seq) {
    if (!seq) return;
    const li = bySeq(seq);
    if (li) {
      markTarget(li);
      window.history.replaceState(null, "", `#seq-${seq}`);
      return;
    }
    const url = new URL(window.location.href);
    url.searchParams.set("around", String(seq));
    url.hash = `seq-${seq}`;
    window.location.assign(url.href);
  }

  list.addEventListener("scroll", () => {
    if (list.scrollTop < 40) loadOlder();
    if (nearBottom()) loadNewer();
    if (newBelow && nearBottom()) newBelow.hidden = true;
    markRead();
  });

  // --- Actions on messages -----------------------------------------------------

  list.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return;
    const li = target.closest("li.message");
    const seq = li ? Number(li.dataset.seq) : null;
    switch (target.dataset.action) {
      case "load-older":
        loadOlder();
        break;
      case "load-newer":
        loadNewer();
        break;
      case "clap":
        if (seq) socket.send({ type: "clap", room, seq, count: 1 });
        break;
      case "edit":
        if (seq) startEdit(li, seq);
        break;
      case "delete":
        if (seq && window.confirm("Delete this message for everyone?")) socket.send({ type: "delete", room, seq });
        break;
      case "report":
        if (seq) openReport(seq);
        break;
      case "reply":
        if (seq) startReply(li, seq);
        break;
      case "show-original":
        event.preventDefault();
        showMessage(Number(target.dataset.replyTo));
        break;
      default:
        break;
    }
  });

  function startEdit(li, seq) {
    const body = li.querySelector(".message__body");
    if (li.querySelector(".message__editor")) return;
    const form = document.createElement("form");
    form.className = "message__editor";
    const area = document.createElement("textarea");
    area.value = li.dataset.body ?? body.textContent;
    area.maxLength = 4000;
    area.setAttribute("aria-label", "Edit message");
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button button--small";
    save.textContent = "Save";
    const cancel = button("cancel-edit", "Cancel");
    form.append(area, save, " ", cancel);
    body.hidden = true;
    body.after(form);
    area.focus();
    const close = () => { form.remove(); body.hidden = false; };
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        close();
        li.querySelector("[data-action=edit]").focus();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault(); // as in the composer: Enter saves, Shift+Enter breaks the line
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = area.value.trim();
      if (text && text !== (li.dataset.body ?? body.textContent)) socket.send({ type: "edit", room, seq, body: text });
      close();
      li.querySelector("[data-action=edit]").focus();
    });
  }

  function openReport(seq) {
    reportSeq = seq;
    document.getElementById("report-reason").value = "";
    reportDialog.showModal();
  }

  if (reportDialog) {
    reportDialog.querySelector("[data-action='close-dialog']").addEventListener("click", () => reportDialog.close());
    document.getElementById("report-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const reason = document.getElementById("report-reason").value.trim();
      if (!reason || reportSeq === null) return;
      const token = document.querySelector("input[name=csrfmiddlewaretoken]");
      const response = await fetch(`/rooms/${encodeURIComponent(room)}/messages/${reportSeq}/report/`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": token ? token.value : getCookie("csrftoken") },
        body: new URLSearchParams({ reason }),
      });
      reportDialog.close();
      window.PubSub.toast(response.ok ? "Thanks: a moderator will look at it." : "The report could not be sent.");
    });
  }

  function getCookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(`${name}=`));
    return found ? decodeURIComponent(found.split("=")[1]) : "";
  }

  // --- Composer --------------------------------------------------------------

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // Replying: a line above the composer says to what, until it is sent or cancelled.
  let replyTo = null;
  const replyBar = document.createElement("div");
  replyBar.className = "composer__reply";
  replyBar.id = "composer-reply";
  replyBar.hidden = true;
  const replyLabel = document.createElement("span");
  replyLabel.className = "composer__reply-label";
  const replyCancel = button("cancel-reply", "Cancel reply");
  replyBar.append(replyLabel, " ", replyCancel);

  function startReply(li, seq) {
    if (!composer) return;
    const body = li.querySelector(".message__body");
    replyTo = {
      seq,
      reply: {
        seq,
        author: { id: Number(li.dataset.authorId), username: li.querySelector(".message__author").textContent },
        excerpt: replyExcerpt(li.dataset.body ?? body.textContent),
        deleted: false,
      },
    };
    replyLabel.textContent = `Replying to ${replyTo.reply.author.username}: ${replyTo.reply.excerpt}`;
    replyBar.hidden = false;
    composerBody.focus();
  }

  function cancelReply() {
    replyTo = null;
    replyBar.hidden = true;
  }

  if (composer) {
    composer.before(replyBar);
    replyCancel.addEventListener("click", () => {
      cancelReply();
      composerBody.focus();
    });
    composerBody.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && replyTo) cancelReply();
    });
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = composerBody.value.trim();
      if (!body) return;
      const clientId = uuid4();
      const li = buildMessage({
        seq: "", client_id: clientId, author: me, body, sent_at: new Date().toISOString(),
        deleted: false, edited: false, claps: 0,
        reply_to: replyTo ? replyTo.seq : undefined, reply: replyTo ? replyTo.reply : undefined,
      });
      li.classList.add("message--pending");
      delete li.dataset.seq;
      list.append(li);
      regroup(li);
      updateEmpty();
      scrollToBottom();
      const pending = { body, replyTo: replyTo ? replyTo.seq : null };
      unacked.set(clientId, pending);
      if (ready) socket.send(sendFrame(clientId, pending));
      cancelReply();
      composerBody.value = "";
      lastTypingSent = 0; // the message ended the typing: the next keystroke starts anew
    });
    composerBody.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    composerBody.addEventListener("input", () => {
      const now = Date.now();
      if (composerBody.value.trim() && now - lastTypingSent >= TYPING_SEND_INTERVAL_MS) {
        lastTypingSent = now;
        socket.send({ type: "typing", room });
      }
    });
  }

  list.querySelectorAll("li.message").forEach((li) => { regroup(li); markMention(li); });
  if (!composer) list.querySelectorAll("[data-action=reply]").forEach((b) => b.remove()); // read-only here
  renderTimes(list);
  setInterval(() => renderTimes(list), 30000);
  if (!showTarget()) scrollToBottom();
  loadClapState();
})();
