// The room page's client: puts the room's stream on the page. The wire contract
// (docs/protocol.md: seq order, gaps, resubscribes, pending sends) is static/js/room-stream.js;
// a message's markup is static/js/room-messages.js; who is online or typing and the clap board,
// static/js/room-presence.js. This file places messages in the list, loads history over HTTP,
// and wires the page's actions, the composer and the read marker to the socket.
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
  const reportDialog = document.getElementById("report-dialog");
  const retryButton = document.getElementById("reconnect-now");

  const TYPING_SEND_INTERVAL_MS = 2000;
  const MAX_RENDERED = 400;

  let hasMore = root.dataset.hasMore === "true";
  let loadingOlder = false;
  let loadingNewer = false;
  let lastTypingSent = 0;
  let readSent = 0;
  let reportSeq = null;

  // --- Rendering: the same markup as templates/messaging/_message.html (room-messages.js) ----

  // Reactions, the emoji picker and the pinned list: static/js/room-reactions.js.
  const reactions = window.PubSubReactions.create({
    me, list, room, canModerate, send: (frame) => socket.send(frame),
  });
  const { buildMessage, applyState, setClaps, setPreview, regroup, markMention, updateQuotes, editInPlace, button, replyExcerpt } =
    window.PubSubMessages.create({ me, canModerate, canReply: !!composer, list, reactions });
  const renderTimes = window.PubSub.renderTimes;

  // Who is online, who is typing, the clap board: static/js/room-presence.js.
  const presence = window.PubSubPresence.create({
    onlineList: document.getElementById("online"),
    typingLine: document.getElementById("typing"),
    board: document.getElementById("clap-board"),
  });

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
    // A thread reply goes to its thread's panel (static/js/room-threads.js); the timeline shows
    // it only when its author also sent it to the room.
    if (m.thread && window.PubSubThreads) window.PubSubThreads.message(m);
    if (m.thread && !m.also_in_room) {
      markRead();
      return;
    }
    const stick = nearBottom() || m.author.id === me.id;
    const pending = m.author.id === me.id ? byClientId(m.client_id) : null;
    if (pending) pending.remove(); // our own message, confirmed by its broadcast: it moves into seq order
    const li = buildMessage(m);
    const firstPending = list.querySelector("li.message--pending");
    list.insertBefore(li, firstPending);
    regroup(li);
    regroup(li.nextElementSibling);
    updateEmpty();
    trimOld();
    presence.stopTyping(m.author.id); // their message ends their typing
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
    // The title also counts unread mentions elsewhere (notify.js composes it).
    if (window.PubSub.attention) window.PubSub.attention.setRoomUnseen(unseen);
    else document.title = unseen ? `(${unseen}) ${baseTitle}` : baseTitle;
    // The server sends no unread counts for the room a socket follows: its badge is ours.
    if (n) window.PubSub.setUnread(room, unseen);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") countUnseen(0);
  });

  // --- Connection ----------------------------------------------------------------

  // The protocol's state (seq order, gaps, resubscribes, pending sends): static/js/room-stream.js.
  const stream = window.PubSubRoomStream.create({
    room,
    userId: me.id,
    lastSeq: root.dataset.lastSeq,
    send: (frame) => socket.send(frame),
    onMessage: appendMessage,
    onMessageAgain(m) {
      const li = bySeq(m.seq);
      if (li) applyState(li, m);
      if (window.PubSubThreads) window.PubSubThreads.again(m); // its copy in the thread panel, a root's summary
    },
    onAck(clientId) {
      const li = byClientId(clientId);
      if (li) li.classList.remove("message--failed");
    },
    onFailed(clientId) {
      const li = byClientId(clientId);
      if (li) li.classList.replace("message--pending", "message--failed");
    },
    onReloadHistory: reloadLatest,
    onSubscribed: markRead,
    onEvent: render,
  });

  const socket = window.PubSub.connect({
    onOpen: stream.opened,
    onFrame: handle,
    onState(state) {
      stream.stateChanged(state);
      if (window.PubSubPanels) window.PubSubPanels.setConnection(state); // static/js/panels.js
      if (!connection) return;
      connection.dataset.state = state;
      connection.textContent = { connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…", offline: "offline" }[state];
      if (retryButton) retryButton.hidden = state !== "offline";
    },
  });
  window.pubsubRoomSocket = socket;
  // What the thread panel (static/js/room-threads.js) shares with the page: the stream it posts
  // through, in the room's seq order.
  window.PubSubRoom = { room, me, canModerate, stream, list };
  if (retryButton) retryButton.addEventListener("click", () => socket.retryNow());

  function handle(frame) {
    if (window.PubSub.handleCommon(frame)) return;
    if (window.PubSubPanels && window.PubSubPanels.handle(frame)) return; // members, name, topic
    stream.receive(frame);
  }

  // This room's frames that change what the page shows (the stream keeps the order).
  function render(frame) {
    if (window.PubSubThreads) window.PubSubThreads.changed(frame); // the thread panel's copies
    if (reactions.handle(frame)) return;
    switch (frame.type) {
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
      case "message_preview": {
        const li = bySeq(frame.seq);
        if (li) setPreview(li, frame.preview);
        break;
      }
      case "thread_summary":
        if (window.PubSubThreads) window.PubSubThreads.summary(frame);
        break;
      case "clap_board":
        presence.updateBoard(frame.users);
        break;
      case "presence":
        presence.setOnline(frame.online, frame.count);
        break;
      case "presence_diff":
        presence.changeOnline(frame.joins, frame.leaves, frame.count);
        break;
      case "typing":
        presence.showTyping(frame.user);
        break;
      case "kicked":
        showError(frame.reason || "You were removed from this room.", { stay: true });
        if (composer) composer.hidden = true;
        root.dataset.kicked = "true";
        presence.clear();
        break;
      case "error":
        handleError(frame);
        break;
      default:
        break;
    }
  }

  // A refused message is marked by the stream (onFailed), or kept pending to be retried.
  function handleError(frame) {
    let text = frame.detail || frame.code;
    if (frame.code === "rate_limited" && frame.retry_after) text = `Slow down: you can send again in ${Math.ceil(frame.retry_after)} s.`;
    if (frame.code === "muted" && frame.until) text = `You are muted until ${new Date(frame.until).toLocaleString()}.`;
    showError(text);
  }

  function showError(text, { stay = false } = {}) {
    if (!composerError || (stream.isKicked() && !stay)) return;
    composerError.textContent = text;
    composerError.hidden = false;
    clearTimeout(showError.timer);
    if (!stay) showError.timer = setTimeout(() => { composerError.hidden = true; }, 6000);
  }

  async function loadClapState() {
    const seqs = Array.from(list.querySelectorAll("li.message[data-seq]")).map((li) => li.dataset.seq).slice(-200);
    try {
      const response = await fetch(`${root.dataset.clapsUrl}?seqs=${seqs.join(",")}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      presence.updateBoard(data.board);
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
    const lastSeq = stream.lastSeq();
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
    if (page.messages.length) stream.seen(page.messages[page.messages.length - 1].seq);
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
        if (m.seq > stream.lastSeq() || bySeq(m.seq)) {
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
    if (li && seq && reactions.click(target.dataset.action, li, target)) return;
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
        if (seq) editInPlace(li, (text) => socket.send({ type: "edit", room, seq, body: text }));
        break;
      case "delete":
        if (seq && window.confirm("Delete this message for everyone?")) socket.send({ type: "delete", room, seq });
        break;
      case "report":
        if (seq) openReport(seq);
        break;
      case "remove-preview":
        if (seq) socket.send({ type: "remove_preview", room, seq });
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

  // The author's username: the name shown may be their display name; the button's value (or,
  // on one's own messages, the "@username" title) is the username.
  function authorUsername(li) {
    const author = li.querySelector(".message__author");
    return author.value || (author.title || "").replace(/^@/, "") || author.textContent;
  }

  function startReply(li, seq) {
    if (!composer) return;
    const body = li.querySelector(".message__body");
    replyTo = {
      seq,
      reply: {
        seq,
        author: { id: Number(li.dataset.authorId), username: authorUsername(li) },
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
    // Files: static/js/room-uploads.js (uploaded by HTTP; the send names their ids).
    const uploads = composer.dataset.uploadUrl ? window.PubSubUploads.attach({ composer, dropZone: root, showError }) : null;
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = composerBody.value.trim();
      if (uploads && uploads.busy()) {
        showError("Wait until the files are uploaded, or cancel them.");
        return;
      }
      const files = uploads ? uploads.ready() : [];
      if (!body && !files.length) return;
      const clientId = stream.post(body, replyTo ? replyTo.seq : null, null, files.map((a) => a.id));
      if (uploads) uploads.clear();
      const li = buildMessage({
        seq: "", client_id: clientId, author: me, body, sent_at: new Date().toISOString(),
        deleted: false, edited: false, claps: 0, attachments: files,
        reply_to: replyTo ? replyTo.seq : undefined, reply: replyTo ? replyTo.reply : undefined,
      });
      li.classList.add("message--pending");
      delete li.dataset.seq;
      list.append(li);
      regroup(li);
      updateEmpty();
      scrollToBottom();
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
