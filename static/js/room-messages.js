// A message on the room page, built from its wire form (docs/protocol.md) with the same markup
// as templates/messaging/_message.html: user text only ever goes in with textContent (its
// formatting through static/js/format.js), links are built as elements. No socket, no state
// but the elements themselves: room.js decides when and where a message goes.
(function () {
  "use strict";

  const GROUP_WINDOW_MS = 5 * 60 * 1000;

  // me: {id, username}; canModerate: may delete others' messages; canReply: the page has a
  // composer; list: the page's message list (for the quotes of an edited original).
  function create({ me, canModerate, canReply, list }) {
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
      content.append(body);
      if (m.attachments && m.attachments.length && !m.deleted) content.append(window.PubSubUploads.buildAttachments(m.attachments));
      content.append(" ", edited);
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
      if (canReply) tools.append(button("reply", "Reply"), " ");
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
      buildMessage, applyState, setClaps, regroup, markMention, updateQuotes, editInPlace, button, replyExcerpt,
    };
  }

  window.PubSubMessages = { create };
})();
