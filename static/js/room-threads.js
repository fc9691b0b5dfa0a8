// Threads on the room page (docs/protocol.md, threads): the summary under a thread's root, the
// thread panel (a side panel on a desktop, the whole screen on a phone) with the root, its
// replies live and a composer ("Also send to the room"), and the threads one follows with
// their unread replies. No socket of its own: room.js gives it the room's stream (thread
// replies are messages of the room, in its seq order) and calls it for each thread reply, each
// message sent again and each `thread_summary`. User text only ever goes in with textContent.
(function () {
  "use strict";

  const root = document.getElementById("room");
  const panel = document.getElementById("thread-panel");
  const shared = window.PubSubRoom;
  if (!root || !panel || !shared) return;

  const { room, me, canModerate, stream, list } = shared;
  const threadsUrl = panel.dataset.threadsUrl;
  const historyUrl = root.dataset.historyUrl;
  const title = document.getElementById("thread-panel-title");
  const followButton = document.getElementById("thread-follow");
  const threadList = document.getElementById("thread-list");
  const view = document.getElementById("thread-view");
  const rootList = document.getElementById("thread-root");
  const replies = document.getElementById("thread-replies");
  const countLine = document.getElementById("thread-count");
  const composer = document.getElementById("thread-composer");
  const composerBody = document.getElementById("thread-composer-body");
  const alsoInRoom = document.getElementById("thread-also-in-room");
  const threadsButton = document.getElementById("threads-button");
  const unreadBadge = document.getElementById("threads-unread");

  const rootMessages = window.PubSubMessages.create({ me, canModerate, canReply: false, list: rootList });
  const replyMessages = window.PubSubMessages.create({ me, canModerate, canReply: false, list: replies });
  const main = window.PubSubMessages.create({ me, canModerate, canReply: false, list });

  let openRoot = null; // the thread shown in the panel
  // root seq -> {following: bool|undefined, unread: n}: what the server said (GET threads/)
  // and what came live since.
  const threads = new Map();

  function csrf() {
    const token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (token) return token.value;
    const found = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
    return found ? decodeURIComponent(found.split("=")[1]) : "";
  }

  function post(url, data) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf() },
      body: new URLSearchParams(data),
    });
  }

  function threadUrl(seq, action) {
    return `${threadsUrl}${Number(seq)}/${action}/`;
  }

  function entry(seq) {
    if (!threads.has(seq)) threads.set(seq, { following: undefined, unread: 0 });
    return threads.get(seq);
  }

  // One follows a thread one started or replied in, unless one unfollowed it.
  function follows(seq) {
    const t = entry(seq);
    if (t.following !== undefined) return t.following;
    const rootLi = list.querySelector(`li.message[data-seq="${seq}"]`);
    return !!rootLi && Number(rootLi.dataset.authorId) === me.id;
  }

  function renderUnread() {
    let total = 0;
    for (const [seq, t] of threads) if (follows(seq)) total += t.unread;
    unreadBadge.hidden = total === 0;
    unreadBadge.textContent = String(total);
    threadsButton.setAttribute("aria-label", total ? `Threads, ${total} unread` : "Threads");
  }

  function panelVisible() {
    return !panel.hidden && document.visibilityState === "visible";
  }

  // --- The panel --------------------------------------------------------------------------

  function show(mode) {
    panel.hidden = false;
    root.dataset.thread = mode;
    threadList.hidden = mode !== "list";
    view.hidden = mode !== "thread";
    followButton.hidden = mode !== "thread";
  }

  function close() {
    panel.hidden = true;
    openRoot = null;
    delete root.dataset.thread;
    threadsButton.focus();
  }

  function setFollowButton(seq) {
    const on = follows(seq);
    followButton.textContent = on ? "Following" : "Follow";
    followButton.setAttribute("aria-pressed", String(on));
  }

  function setCount(summary) {
    const n = summary ? summary.count : 0;
    countLine.textContent = n ? `${n} repl${n === 1 ? "y" : "ies"}` : "No replies yet";
  }

  async function open(seq) {
    seq = Number(seq);
    openRoot = seq;
    title.textContent = "Thread";
    rootList.replaceChildren();
    replies.replaceChildren();
    countLine.textContent = "…";
    show("thread");
    setFollowButton(seq);
    const response = await fetch(`${historyUrl}?${new URLSearchParams({ thread: seq, limit: 100 })}`, { credentials: "same-origin" });
    if (openRoot !== seq) return;
    if (!response.ok) {
      countLine.textContent = "This thread cannot be shown.";
      return;
    }
    const page = await response.json();
    const rootLi = rootMessages.buildMessage({ ...page.root, thread_summary: undefined });
    rootList.replaceChildren(rootLi);
    setCount(page.root.thread_summary);
    for (const m of page.messages) addReply(m);
    markRead();
    if (composerBody) composerBody.focus();
  }

  function replyBySeq(seq) {
    return replies.querySelector(`li.message[data-seq="${Number(seq)}"]`);
  }

  function addReply(m) {
    if (m.seq && replyBySeq(m.seq)) return;
    const pending = m.author.id === me.id
      ? replies.querySelector(`li.message--pending[data-client-id="${CSS.escape(m.client_id)}"]`)
      : null;
    if (pending) pending.remove();
    const li = replyMessages.buildMessage({ ...m, also_in_room: true }); // shown here in any case
    li.querySelectorAll(".message__in-thread").forEach((el) => el.remove());
    replies.insertBefore(li, replies.querySelector("li.message--pending"));
    replyMessages.regroup(li);
    li.scrollIntoView({ block: "nearest" });
  }

  function markRead() {
    if (!openRoot || !panelVisible()) return;
    const last = Array.from(replies.querySelectorAll("li.message[data-seq]")).pop();
    const t = entry(openRoot);
    const hadUnread = t.unread;
    t.unread = 0;
    renderUnread();
    if (last && last.dataset.seq && (hadUnread || t.readSent !== Number(last.dataset.seq))) {
      t.readSent = Number(last.dataset.seq);
      post(threadUrl(openRoot, "read"), { seq: last.dataset.seq });
    }
  }
  document.addEventListener("visibilitychange", markRead);

  async function openList() {
    show("list");
    title.textContent = "Threads you follow";
    threadList.replaceChildren();
    const data = await loadFollowed();
    if (!data) return;
    if (!data.threads.length) {
      const empty = document.createElement("li");
      empty.className = "thread-panel__empty";
      empty.textContent = "No threads yet: start one with “Reply in thread”.";
      threadList.append(empty);
    }
    for (const t of data.threads) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "thread-item";
      b.dataset.action = "open-thread";
      b.dataset.thread = t.root;
      const who = document.createElement("strong");
      who.textContent = t.author.username;
      const excerpt = document.createElement("span");
      excerpt.className = "thread-item__excerpt";
      excerpt.textContent = t.deleted ? "Message deleted" : t.excerpt;
      const meta = document.createElement("span");
      meta.className = "thread-item__meta";
      meta.textContent = `${t.summary.count} repl${t.summary.count === 1 ? "y" : "ies"}`;
      b.append(who, " ", excerpt, meta);
      const unread = entry(t.root).unread;
      if (unread) {
        const badge = document.createElement("span");
        badge.className = "badge thread-item__unread";
        badge.textContent = `${unread} new`;
        b.append(badge);
      }
      li.append(b);
      threadList.append(li);
    }
  }

  async function loadFollowed() {
    try {
      const response = await fetch(threadsUrl, { credentials: "same-origin" });
      if (!response.ok) return null;
      const data = await response.json();
      for (const t of data.threads) {
        const e = entry(t.root);
        e.following = true;
        e.unread = t.unread;
      }
      renderUnread();
      return data;
    } catch (error) {
      return null; // the counts are a nicety: the page works without them
    }
  }

  // --- What room.js hands over ------------------------------------------------------------

  // A thread reply, new, in the room's seq order.
  function message(m) {
    const seq = Number(m.thread);
    if (m.author.id === me.id) entry(seq).following = true; // replying follows it (again)
    if (openRoot === seq) {
      addReply(m);
      if (panelVisible()) {
        markRead();
        return;
      }
    }
    if (m.author.id !== me.id && follows(seq)) {
      entry(seq).unread += 1;
      renderUnread();
    }
  }

  // A message sent again (a replay): its state, and a root's summary, may be newer.
  function again(m) {
    if (m.thread) {
      const li = replyBySeq(m.seq);
      if (li) replyMessages.applyState(li, m);
    } else if (m.thread_summary) {
      summary({ seq: m.seq, ...m.thread_summary });
    }
    if (openRoot === m.seq) {
      const li = rootList.querySelector("li.message");
      if (li) rootMessages.applyState(li, m);
    }
  }

  // A thread's summary changed: under its root in the timeline, and in the panel.
  function summary(frame) {
    const s = { count: frame.count, last_seq: frame.last_seq, last_reply_at: frame.last_reply_at, repliers: frame.repliers };
    const rootLi = list.querySelector(`li.message[data-seq="${Number(frame.seq)}"]`);
    if (rootLi && !rootLi.dataset.thread) main.setThreadSummary(rootLi, s, frame.seq);
    if (openRoot === frame.seq) setCount(s);
  }

  // An edit, a deletion or claps: the panel's copy of the message follows.
  function changed(frame) {
    if (panel.hidden || !["message_updated", "message_deleted", "claps"].includes(frame.type)) return;
    for (const [messages, where] of [[rootMessages, rootList], [replyMessages, replies]]) {
      const li = where.querySelector(`li.message[data-seq="${Number(frame.seq)}"]`);
      if (!li) continue;
      if (frame.type === "message_updated") messages.applyState(li, { body: frame.body, edited: true });
      else if (frame.type === "message_deleted") messages.applyState(li, { deleted: true });
      else messages.setClaps(li, frame.total);
    }
  }

  // A link to a thread reply the timeline does not show (a search result, a mention): its thread.
  function openLinkedReply() {
    const match = /^#seq-(\d+)$/.exec(window.location.hash);
    const seq = match ? Number(match[1]) : Number(root.dataset.around) || 0;
    const li = seq ? list.querySelector(`li.message--thread-only[data-seq="${seq}"]`) : null;
    if (li) open(li.dataset.thread);
  }

  // --- The page's actions -----------------------------------------------------------------

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return;
    switch (target.dataset.action) {
      case "open-thread": {
        const seq = target.dataset.thread || (target.closest("li.message") || {}).dataset?.seq;
        if (seq) open(seq);
        break;
      }
      case "threads-open":
        if (!panel.hidden && root.dataset.thread === "list") close();
        else openList();
        break;
      case "thread-close":
        close();
        break;
      case "thread-follow": {
        if (!openRoot) break;
        const seq = openRoot;
        const on = !follows(seq);
        entry(seq).following = on;
        setFollowButton(seq);
        renderUnread();
        post(threadUrl(seq, "follow"), { following: on ? "1" : "0" });
        break;
      }
      default:
        break;
    }
  });

  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });

  if (composer) {
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = composerBody.value.trim();
      if (!body || !openRoot) return;
      const extra = { thread: openRoot };
      if (alsoInRoom.checked) extra.also_in_room = true;
      const clientId = stream.post(body, null, extra);
      const li = replyMessages.buildMessage({
        seq: "", client_id: clientId, author: me, body, sent_at: new Date().toISOString(),
        deleted: false, edited: false, claps: 0, thread: openRoot, also_in_room: true,
      });
      li.classList.add("message--pending");
      li.querySelectorAll(".message__in-thread").forEach((el) => el.remove());
      delete li.dataset.seq;
      replies.append(li);
      li.scrollIntoView({ block: "nearest" });
      entry(openRoot).following = true;
      setFollowButton(openRoot);
      composerBody.value = "";
      alsoInRoom.checked = false;
    });
    composerBody.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
  }

  window.PubSubThreads = { message, again, summary, changed, open };
  loadFollowed();
  openLinkedReply();
})();
