// Emoji reactions and pinned messages on the room page (docs/protocol.md, "Reactions" and
// "Pins"): a message's reaction chips (the markup of templates/messaging/_message.html),
// the emoji picker (search and recently used; its list is static/data/emoji.json, written by
// `manage.py emoji_data` from the server's own emoji list), and the side panel's pinned
// list (templates/rooms/room_detail.html). room.js hands it the `reactions` and `pinned`
// frames; room-messages.js the reactions and pin of each message it builds.
// User text is only ever inserted with textContent.
(function () {
  "use strict";

  const RECENT_KEY = "pubsub.recentEmoji";
  const RECENT_MAX = 16;
  const SHOWN_MAX = 240;
  const GRID_COLUMNS = 8;
  const DEFAULT_RECENT = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];

  // Who put the emoji on, as the chip's tooltip says it (messaging_tags.reaction_title).
  function reactionTitle(r) {
    let names = r.users.map((u) => u.username).join(", ");
    const more = r.count - r.users.length;
    if (more > 0) names += ` and ${more} more`;
    return `${names} reacted with ${r.emoji}`;
  }

  // An empty reactions row, for a message built from its wire form.
  function container() {
    const div = document.createElement("div");
    div.className = "reactions";
    div.setAttribute("role", "group");
    div.setAttribute("aria-label", "Reactions");
    div.hidden = true;
    return div;
  }

  function create({ me, list, send, room, canModerate }) {
    const panel = document.getElementById("pins");
    const panelEmpty = document.getElementById("pins-empty");
    const picker = document.getElementById("emoji-picker");
    const search = document.getElementById("emoji-search");
    const recentGrid = document.getElementById("emoji-recent");
    const allGrid = document.getElementById("emoji-all");
    const status = document.getElementById("emoji-status");
    let pickerFor = null; // the message's li the picker adds to
    let opener = null; // the button that opened it, focused again when it closes
    let emojiList = null; // [[emoji, name, aliases], …] once loaded
    const names = new Map();

    function bySeq(seq) {
      return list.querySelector(`li.message[data-seq="${Number(seq)}"]`);
    }

    // The message's reactions, the whole summary at `rev` (an older one is ignored: a frame
    // that was on its way while a newer state arrived).
    function setReactions(li, reactions, rev) {
      if (typeof rev === "number") {
        const known = Number(li.dataset.reactionsRev || 0);
        if (rev < known) return;
        li.dataset.reactionsRev = String(rev);
      }
      const row = li.querySelector(".reactions");
      if (!row) return;
      const chips = reactions.map((r) => {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.className = "reaction";
        chip.dataset.action = "react-toggle";
        chip.dataset.emoji = r.emoji;
        chip.setAttribute("aria-pressed", r.users.some((u) => u.id === me.id) ? "true" : "false");
        chip.title = reactionTitle(r);
        const count = document.createElement("span");
        count.className = "reaction__count";
        count.textContent = String(r.count);
        chip.append(`${r.emoji} `, count);
        return chip;
      });
      row.replaceChildren(...chips);
      row.hidden = chips.length === 0 || li.classList.contains("message--deleted");
    }

    function setPinned(li, pinned) {
      li.dataset.pinned = pinned ? "true" : "false";
      const badge = li.querySelector(".message__pinned");
      if (badge) badge.hidden = !pinned;
      const toggle = li.querySelector("[data-action=pin]");
      if (toggle) toggle.textContent = pinned ? "Unpin" : "Pin";
    }

    function react(seq, emoji, on) {
      send({ type: "react", room, seq: Number(seq), emoji, on });
    }

    function toggleChip(li, chip) {
      react(li.dataset.seq, chip.dataset.emoji, chip.getAttribute("aria-pressed") !== "true");
    }

    // --- Pins ---------------------------------------------------------------------

    function pinItem(seq, message, by) {
      const li = document.createElement("li");
      li.className = "pins__item";
      li.dataset.seq = String(seq);
      const a = document.createElement("a");
      a.className = "pins__link";
      a.href = `${window.location.pathname}?around=${Number(seq)}#seq-${Number(seq)}`;
      a.dataset.action = "show-pinned";
      a.dataset.seq = String(seq);
      const author = document.createElement("span");
      author.className = "pins__author";
      author.textContent = message && message.author ? message.author.username : "";
      const excerpt = document.createElement("span");
      excerpt.className = "pins__excerpt";
      excerpt.textContent = message ? message.excerpt : "";
      a.append(author, " ", excerpt);
      const who = document.createElement("span");
      who.className = "pins__by";
      who.textContent = `pinned by ${by ? by.username : "a moderator"}`;
      li.append(a, " ", who);
      if (canModerate) {
        const unpin = document.createElement("button");
        unpin.type = "button";
        unpin.className = "link-button";
        unpin.dataset.action = "unpin";
        unpin.dataset.seq = String(seq);
        unpin.textContent = "Unpin";
        li.append(" ", unpin);
      }
      return li;
    }

    function removePin(seq) {
      if (!panel) return;
      const item = panel.querySelector(`.pins__item[data-seq="${Number(seq)}"]`);
      if (item) item.remove();
      if (panelEmpty) panelEmpty.hidden = !!panel.querySelector(".pins__item");
    }

    function pinnedFrame(frame) {
      const li = bySeq(frame.seq);
      if (li) setPinned(li, frame.pinned);
      removePin(frame.seq);
      if (frame.pinned && panel) {
        panel.prepend(pinItem(frame.seq, frame.message, frame.by));
        if (panelEmpty) panelEmpty.hidden = true;
      }
    }

    if (panel) {
      panel.addEventListener("click", (event) => {
        const target = event.target.closest("[data-action=unpin]");
        if (target) send({ type: "pin", room, seq: Number(target.dataset.seq), pinned: false });
      });
    }

    // --- The picker ---------------------------------------------------------------

    function recent() {
      try {
        const stored = JSON.parse(window.localStorage.getItem(RECENT_KEY) || "[]");
        return Array.isArray(stored) && stored.length ? stored.filter((e) => typeof e === "string") : DEFAULT_RECENT;
      } catch (error) {
        return DEFAULT_RECENT;
      }
    }

    function remember(emoji) {
      const kept = [emoji, ...recent().filter((e) => e !== emoji)].slice(0, RECENT_MAX);
      try {
        window.localStorage.setItem(RECENT_KEY, JSON.stringify(kept));
      } catch (error) {
        // Storage full or refused: the picker still works, without its memory.
      }
    }

    function emojiButton(emoji) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "emoji-picker__emoji";
      b.dataset.emoji = emoji;
      b.textContent = emoji;
      const name = names.get(emoji);
      b.setAttribute("aria-label", name || emoji);
      b.title = name || emoji;
      return b;
    }

    function showResults() {
      const query = search.value.trim().toLowerCase();
      recentGrid.replaceChildren(...recent().map(emojiButton));
      if (!emojiList) return;
      const words = query.split(/\s+/).filter(Boolean);
      const found = emojiList.filter(([, name, aliases]) => words.every((w) => name.includes(w) || aliases.includes(w)));
      allGrid.replaceChildren(...found.slice(0, SHOWN_MAX).map(([emoji]) => emojiButton(emoji)));
      if (!found.length) status.textContent = "No emoji found.";
      else if (found.length > SHOWN_MAX) status.textContent = `${SHOWN_MAX} of ${found.length} shown: type to narrow.`;
      else status.textContent = `${found.length} emoji.`;
    }

    async function loadEmoji() {
      if (emojiList) return;
      status.textContent = "Loading…";
      try {
        const response = await fetch(document.getElementById("room").dataset.emojiUrl, { credentials: "same-origin" });
        emojiList = await response.json();
        for (const [emoji, name] of emojiList) names.set(emoji, name);
      } catch (error) {
        status.textContent = "The emoji list could not be loaded; recently used ones still work.";
      }
    }

    async function openPicker(li, button) {
      if (!picker) return;
      pickerFor = li;
      opener = button;
      search.value = "";
      picker.showModal();
      search.focus();
      showResults();
      await loadEmoji();
      showResults();
    }

    function choose(emoji) {
      const li = pickerFor;
      picker.close();
      if (!li) return;
      const chip = li.querySelector(`.reaction[data-emoji="${CSS.escape(emoji)}"]`);
      react(li.dataset.seq, emoji, !(chip && chip.getAttribute("aria-pressed") === "true"));
      remember(emoji);
    }

    if (picker) {
      search.addEventListener("input", showResults);
      search.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          const first = allGrid.querySelector(".emoji-picker__emoji");
          if (first) choose(first.dataset.emoji);
        } else if (event.key === "ArrowDown") {
          event.preventDefault();
          const first = picker.querySelector(".emoji-picker__emoji");
          if (first) first.focus();
        }
      });
      picker.addEventListener("click", (event) => {
        const target = event.target.closest(".emoji-picker__emoji");
        if (target) choose(target.dataset.emoji);
        if (event.target.closest("[data-action=close-emoji-picker]")) picker.close();
      });
      // Arrow keys move through a grid (Tab leaves it).
      picker.addEventListener("keydown", (event) => {
        const current = event.target.closest(".emoji-picker__emoji");
        if (!current) return;
        const grid = Array.from(current.parentElement.children);
        const at = grid.indexOf(current);
        const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -GRID_COLUMNS, ArrowDown: GRID_COLUMNS }[event.key];
        if (step === undefined) return;
        event.preventDefault();
        const next = grid[at + step];
        if (next) next.focus();
        else if (event.key === "ArrowUp" && at < GRID_COLUMNS) search.focus();
      });
      picker.addEventListener("close", () => {
        pickerFor = null;
        if (opener && opener.isConnected) opener.focus();
      });
    }

    // room.js: a click on the list's [data-action] that is ours.
    function click(action, li, target) {
      switch (action) {
        case "react-open":
          openPicker(li, target);
          return true;
        case "react-toggle":
          toggleChip(li, target);
          return true;
        case "pin":
          send({ type: "pin", room, seq: Number(li.dataset.seq), pinned: li.dataset.pinned !== "true" });
          return true;
        default:
          return false;
      }
    }

    // room.js: this room's frames; true when it was ours.
    function handle(frame) {
      switch (frame.type) {
        case "reactions": {
          const li = bySeq(frame.seq);
          if (li) setReactions(li, frame.reactions, frame.rev);
          return true;
        }
        case "pinned":
          pinnedFrame(frame);
          return true;
        case "message_deleted": {
          removePin(frame.seq);
          const li = bySeq(frame.seq);
          if (li) setReactions(li, [], frame.rev);
          return false; // room.js shows the deletion
        }
        default:
          return false;
      }
    }

    return { setReactions, setPinned, click, handle };
  }

  window.PubSubReactions = { create, container, reactionTitle };
})();
