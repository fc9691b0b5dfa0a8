// The room page's panels and header kept live (docs/protocol.md, "Room details and members"):
// who joins and leaves the member list, the room's name, topic and archive state, and the
// online list, which shows nobody as online while the socket is not connected (it does not
// know). room.js hands every frame to `handle` and every connection state to `setConnection`.
// User text is only ever inserted with textContent (the member list read again is the
// server's own markup, escaped there).
//
// A page that missed a change (it was offline, or rendered before its socket subscribed) reads
// the room's details again: the page is rendered with the room's details revision, every
// change's frame carries the revision after it, and `subscribed` the revision when the
// subscription started; when that is not the page's, the page reads them again over HTTP
// (docs/protocol.md, "Room details and members").
(function () {
  "use strict";

  const root = document.getElementById("room");
  if (!root) return;

  const room = root.dataset.room;
  const myId = Number(root.dataset.userId);
  const members = document.getElementById("members");
  const onlineList = document.getElementById("online");
  const nameHeading = document.getElementById("room-name");
  const topicLine = document.getElementById("room-topic");
  const ROLE_NAMES = { owner: "owner", moderator: "moderator", spectator: "spectator" };
  const detailsUrl = root.dataset.detailsUrl;
  const profileCardUrl = root.dataset.profileCardUrl; // user 0's: the id is put in its place
  // The details revision the page shows; null when unknown (Redis could not be read).
  let shown = root.dataset.details === "" || root.dataset.details === undefined ? null : Number(root.dataset.details);
  // While the details are read again, the frames that arrive (applied again on what is read).
  let arrived = null;
  let retries = 0;

  // The markup of templates/rooms/_members.html, from what the frame says (a user's display name,
  // avatar and status are not on the wire: the initial of their username stands for them).
  function memberItem(user, role) {
    const li = document.createElement("li");
    li.className = "members__item";
    li.dataset.userId = String(user.id);
    li.dataset.username = user.username;
    li.dataset.displayName = user.username;
    const card = document.createElement("button");
    card.type = "button";
    card.className = "members__card";
    if (profileCardUrl) card.dataset.profileCard = profileCardUrl.replace("/0/", `/${Number(user.id)}/`);
    card.setAttribute("aria-haspopup", "dialog");
    card.setAttribute("aria-label", `Profile of ${user.username}`);
    const initial = document.createElement("span");
    initial.className = "members__avatar members__avatar--initial";
    initial.setAttribute("aria-hidden", "true");
    initial.textContent = user.username.charAt(0).toUpperCase();
    card.append(initial);
    li.append(card, " ");
    if (user.id === myId) {
      li.append(user.username);
    } else {
      const dm = document.createElement("button");
      dm.type = "submit";
      dm.className = "link-button members__dm";
      dm.setAttribute("form", "direct-form");
      dm.name = "usernames";
      dm.value = user.username;
      dm.title = `Send ${user.username} a direct message`;
      dm.textContent = user.username;
      li.append(dm);
    }
    if (user.bot) {
      const badge = document.createElement("span");
      badge.className = "badge badge--bot";
      badge.title = "A bot account";
      badge.textContent = "BOT";
      li.append(" ", badge);
    }
    setRole(li, role);
    return li;
  }

  // The role tag of a member's item ("member" has none).
  function setRole(li, role) {
    const current = li.querySelector(".members__role");
    if (current) {
      // The space before the tag only (it may share its text with the member's own name).
      const before = current.previousSibling;
      if (before && before.nodeType === Node.TEXT_NODE) {
        before.textContent = before.textContent.replace(/ $/, "");
        if (!before.textContent) before.remove();
      }
      current.remove();
    }
    if (ROLE_NAMES[role]) {
      const tag = document.createElement("span");
      tag.className = "members__role";
      tag.textContent = ROLE_NAMES[role];
      li.append(" ", tag);
    }
  }

  function memberEntry(userId) {
    return members ? members.querySelector(`.members__item[data-user-id="${Number(userId)}"]`) : null;
  }

  function memberUpdated(user, role) {
    if (!members) return;
    const current = memberEntry(user.id);
    if (current) {
      setRole(current, role); // the rest of the item (avatar, display name, status) stays
      return;
    }
    const item = memberItem(user, role);
    // A newcomer goes in name order among the others.
    const after = Array.from(members.querySelectorAll(".members__item")).find(
      (li) => (li.dataset.username || li.textContent.trim()).localeCompare(user.username) > 0,
    );
    members.insertBefore(item, after || null);
  }

  function memberLeft(user) {
    const current = memberEntry(user.id);
    if (current) current.remove();
  }

  function roomUpdated(frame) {
    // A direct conversation is named after its people, never by its name.
    if (!root.dataset.direct) {
      if (nameHeading) nameHeading.textContent = frame.name;
      document.querySelectorAll(`.sidebar__room[data-room="${CSS.escape(room)}"] a`).forEach((a) => {
        a.textContent = frame.name;
      });
    }
    if (topicLine) {
      topicLine.textContent = frame.topic;
      topicLine.hidden = !frame.topic;
    }
    setArchived(frame.archived);
  }

  function setArchived(archived) {
    const composer = document.getElementById("composer");
    const hint = document.getElementById("composer-hint");
    let note = document.getElementById("archived-note");
    if (composer) composer.hidden = archived;
    if (hint) hint.hidden = archived;
    if (archived && !note) {
      note = document.createElement("p");
      note.id = "archived-note";
      note.className = "composer composer--join";
      note.setAttribute("role", "status");
      note.textContent = "This room is archived: it is read-only.";
      const main = document.querySelector(".room__main");
      if (main) main.append(note);
    } else if (!archived && note) {
      note.remove();
    }
  }

  // Until the socket is back and its subscription has sent `presence`, who is online is unknown.
  function setConnection(state) {
    if (!onlineList || state === "connected" || state === "connecting") return;
    onlineList.dataset.unknown = "true";
    const item = document.createElement("li");
    item.className = "empty";
    item.textContent = state === "offline" ? "Unknown while offline." : "Unknown while reconnecting…";
    onlineList.replaceChildren(item);
  }

  function apply(frame) {
    if (frame.type === "member_updated") memberUpdated(frame.user, frame.role);
    else if (frame.type === "member_left") memberLeft(frame.user);
    else roomUpdated(frame);
    if (typeof frame.details === "number") shown = frame.details;
    if (arrived) arrived.push(frame);
  }

  // The room's details as they are now, in place of what the page shows.
  async function readAgain() {
    if (arrived || !detailsUrl) return; // already reading
    arrived = [];
    let data = null;
    try {
      const response = await fetch(detailsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) data = await response.json();
    } catch (error) {
      data = null;
    }
    const since = arrived;
    arrived = null;
    if (!data) {
      // Tried again a few times; after that, at the next subscription.
      if (retries < 3) setTimeout(readAgain, 2000 * ++retries);
      return;
    }
    retries = 0;
    if (members) members.innerHTML = data.members;
    roomUpdated(data);
    shown = data.details;
    // Frames that came while it was read and are newer than what was read.
    since.filter((frame) => data.details === null || frame.details > data.details).forEach(apply);
  }

  // True when the frame was this module's (room.js then ignores it).
  function handle(frame) {
    if (frame.room !== room) return false;
    switch (frame.type) {
      case "subscribed":
        if (typeof frame.details === "number" && frame.details !== shown) readAgain();
        return false; // room.js's too
      case "member_updated":
      case "member_left":
      case "room_updated":
        apply(frame);
        return true;
      case "presence":
        if (onlineList) delete onlineList.dataset.unknown; // room.js renders the list
        return false;
      default:
        return false;
    }
  }

  window.PubSubPanels = { handle, setConnection };
})();
