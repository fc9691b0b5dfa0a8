// The room page's people: who is online (named up to the server's cap, counted in full), who
// is typing (for a few seconds after their last keystroke, or until their message or their
// leaving), and the clap board. room.js hands it the frames; it owns only these elements.
(function () {
  "use strict";

  const TYPING_SHOW_MS = 4000;

  function create({ onlineList, typingLine, board }) {
    const online = new Map(); // user id -> user (the server names at most PRESENCE_LIST_MAX)
    let onlineCount = 0; // how many people are online, named or not
    const typers = new Map(); // user id -> {user, timer}

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
      // Its first child is the profile card's button (an avatar): the name is in its data.
      return item ? item.dataset.displayName || item.dataset.username : `user ${id}`;
    }

    return {
      // `presence`: everyone online now.
      setOnline(users, count) {
        online.clear();
        users.forEach((u) => online.set(u.id, u));
        onlineCount = count ?? users.length;
        renderOnline();
      },
      // `presence_diff`: who came and who left.
      changeOnline(joins, leaves, count) {
        joins.forEach((u) => online.set(u.id, u));
        leaves.forEach((u) => { online.delete(u.id); stopTyping(u.id); });
        onlineCount = count ?? online.size;
        renderOnline();
      },
      // Removed from the room: nobody shows as online or typing any more.
      clear() {
        online.clear();
        onlineCount = 0;
        typers.forEach((entry) => clearTimeout(entry.timer));
        typers.clear();
        renderOnline();
        renderTyping();
      },
      showTyping,
      stopTyping,
      updateBoard,
    };
  }

  window.PubSubPresence = { create };
})();
