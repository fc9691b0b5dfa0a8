// The profile card: a click on a member's avatar fetches the card (an HTML fragment the
// server escaped, accounts/_profile_card.html) and shows it in a dialog. The fragment is
// parsed, never assigned as innerHTML of the live page.
(function () {
  "use strict";
  const dialog = document.getElementById("profile-card-dialog");
  const body = document.getElementById("profile-card-body");
  if (!dialog || !body) return;

  async function show(url, opener) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    } catch (error) {
      return;
    }
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    body.replaceChildren(...Array.from(doc.body.childNodes, (node) => document.importNode(node, true)));
    dialog.returnFocusTo = opener;
    dialog.showModal();
  }

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-profile-card]");
    if (opener) {
      event.preventDefault();
      show(opener.dataset.profileCard, opener);
    } else if (event.target.closest("[data-action='close-profile-card']")) {
      dialog.close();
    }
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnFocusTo) dialog.returnFocusTo.focus();
  });
})();
