// What waits for the user, by their notification settings (rooms/notify_settings.py): the
// sidebar's quiet rooms and mention badges, the favicon badge and the title, the browser's
// notifications while the tab is hidden, and the settings' forms on the room page and on
// /notifications/settings/. socket.js hands it the frames (PubSub.handleCommon); it keeps no
// state the page does not show: each sidebar item carries its settings (data-notify,
// data-snoozed-until) and its unread mentions (data-mentions, their seqs).
(function () {
  "use strict";
  const PubSub = window.PubSub;
  if (!PubSub || !document.body.dataset.user) return;

  // --- Settings -----------------------------------------------------------------

  function snoozedUntil(el) {
    const until = el && el.dataset.snoozedUntil ? Date.parse(el.dataset.snoozedUntil) : NaN;
    return Number.isNaN(until) || until <= Date.now() ? null : until;
  }

  // A room set to "nothing", or snoozed: no count badge, no notification, a muted style.
  function quiet(item) {
    if (!item || !item.dataset.notify) return false;
    return item.dataset.notify === "nothing" || snoozedUntil(item) !== null;
  }

  // The room's items in the sidebar, and on the room list.
  function sidebarItems(slug) {
    return document.querySelectorAll(`.sidebar__room[data-room="${CSS.escape(slug)}"], .room-list__item[data-room="${CSS.escape(slug)}"]`);
  }

  function mentionSeqs(item) {
    return (item.dataset.mentions || "").split(" ").filter(Boolean).map(Number);
  }

  function renderItem(item) {
    const silent = quiet(item);
    const kind = item.classList[0]; // sidebar__room or room-list__item
    item.classList.toggle(`${kind}--quiet`, silent);
    const count = item.querySelector("[data-unread], [data-unread-room]");
    const unread = count ? Number(count.firstChild.textContent) || 0 : 0;
    if (count) count.hidden = silent || unread <= 0;
    item.classList.toggle(`${kind}--unread`, !silent && unread > 0);
    const badge = item.querySelector("[data-mention-badge]");
    if (badge) {
      const n = mentionSeqs(item).length;
      badge.firstChild.textContent = `@${n}`;
      badge.hidden = silent || n === 0;
    }
  }

  const LABELS = { all: "All", mentions: "Mentions", nothing: "Off" };

  function renderForms(slug, level, until) {
    document.querySelectorAll(`[data-notify-form="${CSS.escape(slug)}"]`).forEach((form) => {
      form.dataset.level = level;
      form.dataset.snoozedUntil = until || "";
      const direct = !form.querySelector('button[name="level"][value="all"]');
      form.querySelectorAll('button[name="level"]').forEach((button) => {
        const on = direct ? (button.value === "nothing") === (level === "nothing") : button.value === level;
        button.setAttribute("aria-pressed", String(on));
      });
      const snoozed = snoozedUntil(form) !== null;
      const note = form.querySelector("[data-snoozed]");
      if (note) {
        note.hidden = !snoozed;
        const time = note.querySelector("time");
        if (snoozed && time) {
          time.setAttribute("datetime", until);
          time.textContent = new Date(until).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
        }
      }
      const unmute = form.querySelector("[data-unmute]");
      if (unmute) unmute.hidden = !snoozed;
    });
    const menu = document.getElementById("notify-menu");
    const room = document.getElementById("room");
    if (menu && room && room.dataset.room === slug) {
      const label = menu.querySelector("[data-notify-label]");
      const direct = !menu.querySelector('button[name="level"][value="all"]');
      const nothing = level === "nothing";
      if (label) label.textContent = until && Date.parse(until) > Date.now() ? "Muted" : direct && !nothing ? "On" : LABELS[level];
    }
  }

  function applySettings(slug, level, until) {
    sidebarItems(slug).forEach((item) => {
      item.dataset.notify = level;
      item.dataset.snoozedUntil = until || "";
      renderItem(item);
    });
    renderForms(slug, level, until);
    scheduleSnoozeEnd();
    renderAttention();
  }

  // When the nearest snooze ends, the rooms it silenced show again.
  let snoozeTimer = null;
  function scheduleSnoozeEnd() {
    clearTimeout(snoozeTimer);
    const ends = [...document.querySelectorAll("[data-snoozed-until]")].map(snoozedUntil).filter((t) => t !== null);
    if (!ends.length) return;
    const wait = Math.min(...ends) - Date.now() + 500;
    snoozeTimer = setTimeout(() => {
      document.querySelectorAll(".sidebar__room[data-notify], .room-list__item[data-notify]").forEach(renderItem);
      document.querySelectorAll("[data-notify-form]").forEach((form) => {
        renderForms(form.dataset.notifyForm, form.dataset.level, form.dataset.snoozedUntil);
      });
      scheduleSnoozeEnd();
      renderAttention();
    }, Math.min(wait, 2 ** 31 - 1));
  }

  // The forms post with fetch (the answer is the settings, as the frame to the other tabs);
  // without this script they post and come back.
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("[data-notify-form]");
    if (!form) return;
    event.preventDefault();
    const data = new FormData(form);
    if (event.submitter && event.submitter.name) data.set(event.submitter.name, event.submitter.value);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: data,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const answer = await response.json();
      if (!response.ok) {
        PubSub.toast(answer.error || "Could not save the setting.");
        return;
      }
      applySettings(answer.room, answer.level, answer.snoozed_until);
      const menu = form.closest("details");
      if (menu) menu.open = false;
    } catch (error) {
      PubSub.toast("Could not save the setting: are you offline?");
    }
  });

  // --- Unread mentions, the favicon and the title --------------------------------

  // The unread count of a room moved (an `unread` frame: `seq` is its latest, so its read
  // marker is seq - count; or this page's own reading, count 0): mentions up to the marker are read.
  function unreadChanged(slug, count, seq) {
    sidebarItems(slug).forEach((item) => {
      if (item.dataset.mentions !== undefined) {
        const marker = count <= 0 ? Infinity : seq !== undefined ? seq - count : -Infinity;
        item.dataset.mentions = mentionSeqs(item).filter((s) => s > marker).join(" ");
      }
      renderItem(item);
    });
    renderAttention();
  }

  function mentioned(slug, seq) {
    sidebarItems(slug).forEach((item) => {
      if (item.dataset.mentions === undefined) return; // a direct conversation: its count is the mentions
      const seqs = mentionSeqs(item);
      if (!seqs.includes(seq)) item.dataset.mentions = [...seqs, seq].sort((a, b) => a - b).join(" ");
      renderItem(item);
    });
    renderAttention();
  }

  // Unread mentions, and direct messages (each counts as one), of the rooms not silenced.
  function unreadMentions() {
    let total = 0;
    const seen = new Set();
    document.querySelectorAll(".sidebar__room[data-notify]").forEach((item) => {
      if (seen.has(item.dataset.room) || quiet(item)) return;
      seen.add(item.dataset.room);
      if (item.dataset.mentions !== undefined) total += mentionSeqs(item).length;
      else {
        const count = item.querySelector("[data-unread]");
        total += count ? Number(count.firstChild.textContent) || 0 : 0;
      }
    });
    return total;
  }

  const icon = document.querySelector('link[rel="icon"]');
  const plainIcon = icon ? icon.getAttribute("href") : null;
  // static/img/favicon.svg with a red badge: keep the two drawings alike.
  function badgedIcon(n) {
    const text = n > 99 ? "99+" : String(n);
    const size = text.length > 2 ? 11 : 14;
    const svg =
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">' +
      '<rect width="32" height="32" rx="7" fill="#1d4ed8"/><path d="M8 10h16v10H14l-5 4v-4H8z" fill="#fff"/>' +
      '<circle cx="22" cy="10" r="10" fill="#dc2626"/>' +
      `<text x="22" y="15" font-family="Arial,sans-serif" font-size="${size}" font-weight="700" text-anchor="middle" fill="#fff">${text}</text></svg>`;
    return `data:image/svg+xml,${encodeURIComponent(svg)}`;
  }

  let baseTitle = document.title;
  let roomUnseen = 0;
  function renderAttention() {
    const n = unreadMentions();
    if (icon) {
      const href = n > 0 ? badgedIcon(n) : plainIcon;
      if (icon.getAttribute("href") !== href) icon.setAttribute("href", href);
    }
    document.title = `${n > 0 ? `@${n} ` : ""}${roomUnseen ? `(${roomUnseen}) ` : ""}${baseTitle}`;
  }

  // The room page counts its own messages that arrived while hidden (room.js).
  function setRoomUnseen(n) {
    roomUnseen = n;
    renderAttention();
  }

  // --- Browser notifications while the tab is hidden ------------------------------

  const shown = new Set();
  function roomName(slug) {
    const link = document.querySelector(`.sidebar__room[data-room="${CSS.escape(slug)}"] a`);
    return link ? link.textContent.trim() : slug;
  }

  function browserNotify(frame) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible") return; // the page shows it: a toast, a badge
    const key = `${frame.room}:${frame.seq}:${frame.kind}`;
    if (shown.has(key)) return; // a job redone after a crash may send a frame again
    shown.add(key);
    const who = frame.from ? frame.from.username : "Someone";
    const where = roomName(frame.room);
    const titles = {
      mention: `${who} mentioned you in ${where}`,
      direct: `${who} sent you a direct message`,
      message: `${who} in ${where}`,
      invite: `${who} invited you to ${frame.title || where}`,
    };
    const url = frame.kind === "invite" ? `/rooms/${encodeURIComponent(frame.room)}/` : `/rooms/${encodeURIComponent(frame.room)}/#seq-${frame.seq}`;
    const notification = new Notification(titles[frame.kind] || titles.mention, {
      body: frame.excerpt || "",
      tag: key, // the user's other hidden tabs show the same one, not another
      icon: plainIcon || undefined,
    });
    notification.onclick = () => {
      window.focus();
      notification.close();
      window.location.assign(url);
    };
  }

  function notified(frame) {
    if (frame.kind === "mention") mentioned(frame.room, frame.seq);
    browserNotify(frame);
  }

  // The in-page prompt (never on load: the browser asks only when the button is pressed).
  function renderPermission() {
    document.querySelectorAll("#notify-permission, [data-notify-permission-box]").forEach((box) => {
      if (!("Notification" in window)) {
        box.hidden = true;
        return;
      }
      box.hidden = false;
      const button = box.querySelector('[data-action="notify-permission"]');
      const state = box.querySelector("[data-notify-permission-state]");
      const permission = Notification.permission;
      if (button) button.hidden = permission !== "default";
      if (state) {
        state.textContent =
          permission === "granted"
            ? "Browser notifications are on for this site."
            : permission === "denied"
              ? "Your browser blocks this site's notifications: allow them in the browser's site settings."
              : "";
      }
    });
  }
  document.addEventListener("click", async (event) => {
    if (!event.target.closest('[data-action="notify-permission"]')) return;
    await Notification.requestPermission();
    renderPermission();
  });

  document.querySelectorAll(".sidebar__room[data-notify], .room-list__item[data-notify]").forEach(renderItem);
  scheduleSnoozeEnd();
  renderPermission();
  renderAttention();

  PubSub.attention = {
    quiet,
    unreadChanged,
    notified,
    applySettings,
    setRoomUnseen,
    setBaseTitle(title) {
      baseTitle = title;
      renderAttention();
    },
  };
})();
