// A message on the room page, built from its wire form (docs/protocol.md) with the same markup
// as templates/messaging/_message.html: user text only ever goes in with textContent (its
// formatting through static/js/format.js), links are built as elements. No socket, no state
// but the elements themselves: room.js decides when and where a message goes.
(function () {
  "use strict";

  const GROUP_WINDOW_MS = 5 * 60 * 1000;

  // me: {id, username}; canModerate: may delete others' messages; canReply: the page has a
  // composer; list: the page's message list (for the quotes of an edited original);
  // reactions: a message's reactions and pin (static/js/room-reactions.js).
  function create({ me, canModerate, canReply, list, reactions }) {
    const renderTimes = window.PubSub.renderTimes;

    // The body's formatting (links, *bold*, _italic_, `code`, code blocks, > quotes): static/js/format.js,
    // the grammar of messaging/formatting.py, which renders the server's pages.
    function fillBody(el, text) {
      window.PubSubFormat.fill(el, text);
    }

    // A reply's quote of its original: who wrote it and how it starts (protocol.wire.reply_excerpt).
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

    // The author's display name, as the member list shows it (data-display-name, from their
    // profile), else their username: the wire carries only the username (docs/protocol.md).
    function shownName(author) {
      const member = document.querySelector(`#members .members__item[data-user-id="${Number(author.id)}"]`);
      return (member && member.dataset.displayName) || author.username;
    }

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
      if (m.thread) {
        // A thread reply (docs/protocol.md, threads): the room's timeline shows it only when its
        // author also sent it to the room; the thread panel shows it always (room-threads.js).
        li.dataset.thread = m.thread;
        if (!m.also_in_room) {
          li.classList.add("message--thread-only");
          li.hidden = true;
        }
      }
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = m.author.username.charAt(0).toUpperCase();
      const meta = document.createElement("div");
      meta.className = "message__meta";
      // Someone else's name opens a direct conversation with them (the page's #direct-form).
      const author = document.createElement(m.author.id === me.id ? "span" : "button");
      author.className = "message__author";
      author.textContent = shownName(m.author);
      author.title = `@${m.author.username}`;
      if (m.author.id !== me.id) {
        author.type = "submit";
        author.className = "message__author link-button";
        author.setAttribute("form", "direct-form");
        author.name = "usernames";
        author.value = m.author.username;
        author.title = `@${m.author.username}: send a direct message`;
      }
      const time = document.createElement("time");
      time.className = "message__time";
      time.setAttribute("datetime", m.sent_at);
      const pinned = document.createElement("span");
      pinned.className = "message__pinned";
      pinned.textContent = "📌 pinned";
      pinned.hidden = true;
      meta.append(author, " ");
      if (m.author.bot) {
        // A bot account's message (author.bot on the wire; templates/messaging/_message.html).
        const badge = document.createElement("span");
        badge.className = "badge badge--bot";
        badge.title = "A bot account";
        badge.textContent = "BOT";
        meta.append(badge, " ");
      }
      meta.append(time, " ", pinned);
      const content = document.createElement("div");
      content.className = "message__content";
      const body = document.createElement("div");
      body.className = "message__body";
      const edited = document.createElement("span");
      edited.className = "message__edited";
      edited.textContent = "(edited)";
      if (m.reply_to) content.append(buildQuote(m));
      content.append(body);
      if (m.attachments && m.attachments.length && !m.deleted) content.append(window.PubSubUploads.buildAttachments(m.attachments));
      content.append(" ", edited);
      if (m.thread && m.also_in_room) {
        const inThread = button("open-thread", "Replied in a thread");
        inThread.classList.add("message__in-thread");
        inThread.dataset.thread = m.thread;
        content.append(inThread);
      } else if (!m.thread && m.thread_summary) {
        setThreadSummary(li, m.thread_summary, m.seq, content);
      }
      const actions = document.createElement("div");
      actions.className = "message__actions";
      const reactOpen = document.createElement("button");
      reactOpen.type = "button";
      reactOpen.className = "react-open";
      reactOpen.dataset.action = "react-open";
      reactOpen.setAttribute("aria-haspopup", "dialog");
      reactOpen.title = "Add a reaction";
      const reactIcon = document.createElement("span");
      reactIcon.setAttribute("aria-hidden", "true");
      reactIcon.textContent = "☺+";
      const reactLabel = document.createElement("span");
      reactLabel.className = "visually-hidden";
      reactLabel.textContent = "Add a reaction";
      reactOpen.append(reactIcon, reactLabel);
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
      if (canReply) tools.append(button("reply", "Reply"), " ");
      if (canReply && !m.thread) tools.append(button("open-thread", "Reply in thread"), " ");
      if (m.author.id === me.id) tools.append(button("edit", "Edit"), " ", button("delete", "Delete"));
      else if (canModerate) tools.append(button("delete", "Delete"));
      if (canModerate) tools.append(" ", button("pin", "Pin"));
      if (m.author.id !== me.id) tools.append(button("report", "Report"));
      actions.append(clap, " ", reactOpen, " ", tools);
      li.append(avatar, meta, content, window.PubSubReactions.container(), actions);
      applyState(li, m);
      renderTimes(li);
      return li;
    }

    // Under a thread's root: how many replies, the last one's time and the last repliers; it
    // opens the thread (the markup of templates/messaging/_thread_summary.html).
    function setThreadSummary(li, summary, root, content = li.querySelector(".message__content")) {
      let el = content.querySelector(":scope > .thread-summary");
      if (!el) {
        el = document.createElement("button");
        el.type = "button";
        el.className = "thread-summary";
        el.dataset.action = "open-thread";
        el.dataset.thread = root;
        content.append(el);
      }
      el.dataset.lastReplyAt = summary.last_reply_at;
      const repliers = document.createElement("span");
      repliers.className = "thread-summary__repliers";
      repliers.setAttribute("aria-hidden", "true");
      for (const u of summary.repliers) {
        const avatar = document.createElement("span");
        avatar.className = "avatar avatar--small";
        avatar.title = u.username;
        avatar.textContent = u.username.charAt(0).toUpperCase();
        repliers.append(avatar);
      }
      const count = document.createElement("span");
      count.className = "thread-summary__count";
      count.textContent = `${summary.count} repl${summary.count === 1 ? "y" : "ies"}`;
      const last = document.createElement("span");
      last.className = "thread-summary__last";
      const time = document.createElement("time");
      time.setAttribute("datetime", summary.last_reply_at);
      last.append("last reply ", time);
      const who = document.createElement("span");
      who.className = "visually-hidden";
      who.textContent = ` by ${summary.repliers.map((u) => u.username).join(", ")}`;
      el.replaceChildren(repliers, " ", count, " · ", last, who);
      renderTimes(el);
      return el;
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

    // A message's link card (templates/messaging/_link_preview.html), or none (preview null).
    // The image is the site's own copy (messaging/previews.py): no third party is asked.
    function setPreview(li, preview) {
      const old = li.querySelector(".link-preview");
      if (old) old.remove();
      if (!preview || li.classList.contains("message--deleted")) return;
      const card = document.createElement("div");
      card.className = "link-preview";
      if (preview.image) {
        const img = document.createElement("img");
        img.className = "link-preview__image";
        img.src = preview.image;
        img.alt = "";
        img.width = 72;
        img.height = 72;
        img.loading = "lazy";
        card.append(img);
      }
      const text = document.createElement("div");
      text.className = "link-preview__text";
      if (preview.site_name) {
        const site = document.createElement("span");
        site.className = "link-preview__site";
        site.textContent = preview.site_name;
        text.append(site);
      }
      const title = document.createElement("a");
      title.className = "link-preview__title";
      title.href = /^https?:\/\//i.test(preview.url) ? preview.url : "#";
      title.rel = "noopener nofollow";
      title.target = "_blank";
      title.textContent = preview.title;
      text.append(title);
      if (preview.description) {
        const description = document.createElement("p");
        description.className = "link-preview__description";
        description.textContent = preview.description;
        text.append(description);
      }
      card.append(text);
      if (Number(li.dataset.authorId) === me.id || canModerate) {
        const remove = button("remove-preview", "×");
        remove.className = "link-preview__remove link-button";
        remove.setAttribute("aria-label", "Remove the link preview");
        remove.title = "Remove the link preview";
        card.append(remove);
      }
      li.querySelector(".message__content").append(card);
    }

    function applyState(li, m) {
      li.classList.toggle("message--deleted", !!m.deleted);
      const body = li.querySelector(".message__body");
      if (m.deleted) {
        body.textContent = "This message was deleted.";
        delete li.dataset.body;
        const files = li.querySelector(".attachments");
        if (files) files.remove(); // no longer served either (attachments.selectors)
      }
      else if (m.body !== undefined) {
        fillBody(body, m.body);
        li.dataset.body = m.body; // what Edit starts from, and a reply's quote (not the formatted text)
      }
      markMention(li);
      li.querySelector(".message__edited").hidden = !m.edited || !!m.deleted;
      li.querySelector(".message__actions").hidden = !!m.deleted;
      if (m.claps !== undefined) setClaps(li, m.claps);
      if (m.deleted) setPreview(li, null);
      else if (m.preview !== undefined) setPreview(li, m.preview);
      if (reactions && m.client_id !== undefined) {
        // A whole message (its wire form): no `reactions` or `pinned` means none.
        reactions.setReactions(li, m.reactions || [], m.rev);
        reactions.setPinned(li, !!m.pinned);
      }
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

    // Edit in place: a form in the message, until saved (Enter) or cancelled (Escape); `save`
    // gets the new text, only if it changed.
    function editInPlace(li, save) {
      const body = li.querySelector(".message__body");
      if (li.querySelector(".message__editor")) return;
      const form = document.createElement("form");
      form.className = "message__editor";
      const area = document.createElement("textarea");
      area.value = li.dataset.body ?? body.textContent;
      area.maxLength = 4000;
      area.setAttribute("aria-label", "Edit message");
      const submit = document.createElement("button");
      submit.type = "submit";
      submit.className = "button button--small";
      submit.textContent = "Save";
      const cancel = button("cancel-edit", "Cancel");
      form.append(area, submit, " ", cancel);
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
        if (text && text !== (li.dataset.body ?? body.textContent)) save(text);
        close();
        li.querySelector("[data-action=edit]").focus();
      });
    }

    return {
      buildMessage, applyState, setClaps, setPreview, regroup, markMention, updateQuotes, editInPlace, button, replyExcerpt,
      setThreadSummary,
    };
  }

  window.PubSubMessages = { create };
})();
