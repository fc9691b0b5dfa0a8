// The room page's keyboard and touch paths, beside room.js (which speaks the wire contract):
// - the composer has the focus when the room opens, and "/" brings it back from anywhere;
// - ArrowUp in an empty composer edits one's last message;
// - the message log is one tab stop (a roving tabindex): the arrows move between messages,
//   ArrowRight or Enter reaches a message's actions, ArrowLeft or Escape goes back to it;
// - on a phone the rooms and the room's details are drawers, and a message shows its
//   actions when tapped or long-pressed, not all the time;
// - Escape closes what is open (a drawer, a message's actions).
(function () {
  "use strict";

  const root = document.getElementById("room");
  if (!root) return;
  const list = document.getElementById("messages");
  const composerBody = document.getElementById("composer-body");
  const me = root.dataset.userId;
  const CONTROLS = "button, a[href], input, select, textarea";
  const TOUCH = window.matchMedia("(hover: none), (max-width: 720px)");
  const PHONE = window.matchMedia("(max-width: 720px)");

  // --- Drawers (phones) ------------------------------------------------------------

  const drawers = { rooms: root.querySelector(".sidebar"), details: root.querySelector(".room__side") };
  const openers = Array.from(root.querySelectorAll("[data-panel-open]"));
  const backdrop = document.createElement("div");
  backdrop.className = "drawer-backdrop";
  root.append(backdrop);
  Object.entries(drawers).forEach(([name, drawer]) => {
    if (!drawer) return;
    drawer.id = drawer.id || `drawer-${name}`;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link-button drawer__close";
    close.textContent = "Close";
    close.addEventListener("click", () => closePanel());
    drawer.prepend(close);
  });
  openers.forEach((opener) => {
    const drawer = drawers[opener.dataset.panelOpen];
    if (!drawer) {
      opener.hidden = true;
      return;
    }
    opener.setAttribute("aria-controls", drawer.id);
    opener.addEventListener("click", () => openPanel(opener.dataset.panelOpen));
  });
  backdrop.addEventListener("click", () => closePanel());

  function openPanel(name) {
    root.dataset.panel = name;
    openers.forEach((o) => o.setAttribute("aria-expanded", String(o.dataset.panelOpen === name)));
    const close = drawers[name].querySelector(".drawer__close");
    if (close) close.focus();
  }

  function closePanel() {
    const name = root.dataset.panel;
    if (!name) return false;
    const hadFocus = drawers[name] && drawers[name].contains(document.activeElement);
    delete root.dataset.panel;
    openers.forEach((o) => o.setAttribute("aria-expanded", "false"));
    const opener = openers.find((o) => o.dataset.panelOpen === name);
    if (hadFocus && opener) opener.focus();
    return true;
  }
  PHONE.addEventListener("change", () => { if (!PHONE.matches) closePanel(); });

  // --- The composer ----------------------------------------------------------------

  function editable(el) {
    return !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  if (composerBody) {
    composerBody.focus({ preventScroll: true });
    composerBody.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowUp" || composerBody.value !== "" || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      const mine = Array.from(list.querySelectorAll(`li.message[data-author-id="${CSS.escape(me)}"][data-seq]:not(.message--deleted)`));
      const edit = mine.length ? mine[mine.length - 1].querySelector("[data-action=edit]") : null;
      if (!edit) return;
      event.preventDefault();
      edit.click(); // room.js opens the editor and focuses it
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented) return;
    if (event.key === "Escape") {
      if (closePanel()) {
        event.preventDefault();
        return;
      }
      const active = list.querySelector("li.message--active");
      if (active) active.classList.remove("message--active");
      return;
    }
    if (event.key === "/" && composerBody && !editable(event.target) && !event.ctrlKey && !event.metaKey && !event.altKey
        && !document.querySelector("dialog[open]") && !composerBody.closest("[hidden]")) {
      event.preventDefault();
      closePanel();
      composerBody.focus();
    }
  });

  // --- The log: one tab stop, arrows within -----------------------------------------

  let current = null;

  function messages() {
    return Array.from(list.querySelectorAll("li.message")).filter((li) => !li.hidden);
  }

  function controlsOf(li) {
    return Array.from(li.querySelectorAll(CONTROLS)).filter((c) => !c.closest(".message__editor") && !c.disabled && c.getClientRects().length);
  }

  function prepare(li) {
    if (li.tabIndex !== 0) li.tabIndex = -1;
    li.querySelectorAll(CONTROLS).forEach((c) => {
      if (!c.closest(".message__editor")) c.tabIndex = -1;
    });
  }

  function setCurrent(li) {
    if (current && current !== li) current.tabIndex = -1;
    current = li;
    if (li) li.tabIndex = 0;
  }

  function refresh() {
    if (current && (!current.isConnected || !list.contains(current))) current = null;
    if (!current || !list.contains(document.activeElement)) {
      const all = messages();
      setCurrent(all.length ? all[all.length - 1] : null); // Tab lands on the newest
    }
  }

  list.querySelectorAll("li.message").forEach(prepare);
  refresh();
  new MutationObserver((records) => {
    const touched = new Set();
    for (const record of records) {
      record.addedNodes.forEach((node) => {
        if (node.nodeType !== 1) return;
        const li = node.closest("li.message") || (node.matches("li.message") ? node : null);
        if (li) touched.add(li);
        node.querySelectorAll?.("li.message").forEach((m) => touched.add(m));
      });
    }
    touched.forEach(prepare);
    refresh();
  }).observe(list, { childList: true, subtree: true });

  list.addEventListener("focusin", (event) => {
    const li = event.target.closest("li.message");
    if (li) setCurrent(li);
  });

  function moveTo(li) {
    if (!li) return;
    setCurrent(li);
    li.focus();
    li.scrollIntoView({ block: "nearest" });
  }

  list.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const li = event.target.closest("li.message");
    if (!li || event.target.closest(".message__editor")) return;
    const all = messages();
    const index = all.indexOf(li);
    const onMessage = event.target === li;
    let handled = true;
    if (event.key === "ArrowDown") moveTo(all[index + 1]);
    else if (event.key === "ArrowUp") moveTo(all[index - 1]);
    else if (event.key === "Home" && onMessage) moveTo(all[0]);
    else if (event.key === "End" && onMessage) moveTo(all[all.length - 1]);
    else if (onMessage && (event.key === "ArrowRight" || event.key === "Enter")) {
      const controls = controlsOf(li);
      if (controls.length) controls[0].focus();
    } else if (!onMessage && (event.key === "ArrowRight" || event.key === "ArrowLeft")) {
      const controls = controlsOf(li);
      const at = controls.indexOf(event.target);
      const next = controls[at + (event.key === "ArrowRight" ? 1 : -1)];
      if (next) next.focus();
      else if (event.key === "ArrowLeft") li.focus();
    } else if (!onMessage && event.key === "Escape") li.focus();
    else handled = false;
    if (handled) event.preventDefault();
  });

  // --- Touch: a tap or a long press shows a message's actions ----------------------

  function activate(li) {
    list.querySelectorAll("li.message--active").forEach((other) => { if (other !== li) other.classList.remove("message--active"); });
    if (li) li.classList.add("message--active");
  }

  list.addEventListener("click", (event) => {
    if (!TOUCH.matches || event.target.closest(CONTROLS) || event.target.closest(".message__editor")) return;
    const li = event.target.closest("li.message");
    if (!li || li.classList.contains("message--pending")) return;
    if (li.classList.contains("message--active")) li.classList.remove("message--active");
    else activate(li);
  });

  // A long press: a touch held still for 450 ms (a finger's tremble is not a move; a scroll is).
  let pressTimer = null;
  let pressStart = null;
  list.addEventListener("pointerdown", (event) => {
    if (event.pointerType !== "touch") return;
    const li = event.target.closest("li.message");
    if (!li || event.target.closest(CONTROLS)) return;
    clearTimeout(pressTimer);
    pressStart = { x: event.clientX, y: event.clientY };
    pressTimer = setTimeout(() => activate(li), 450);
  });
  list.addEventListener("pointermove", (event) => {
    if (pressStart && Math.hypot(event.clientX - pressStart.x, event.clientY - pressStart.y) > 10) clearTimeout(pressTimer);
  });
  ["pointerup", "pointercancel"].forEach((type) => {
    list.addEventListener(type, () => clearTimeout(pressTimer));
  });
  // Where the browser turns a long press into a context menu, it shows the actions as well.
  list.addEventListener("contextmenu", (event) => {
    const li = event.target.closest("li.message");
    if (TOUCH.matches && li && !event.target.closest(CONTROLS) && !li.classList.contains("message--pending")) activate(li);
  });

  document.addEventListener("click", (event) => {
    if (!event.target.closest("#messages")) activate(null);
  });
})();
