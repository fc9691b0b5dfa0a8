// The colour theme: the system's (prefers-color-scheme) unless the person chose light or dark
// with the toggle in the top bar; the choice is kept in localStorage and followed by every tab.
// Loaded in <head> without `defer` (a file, not an inline script: the CSP allows none), so the
// page is painted in the chosen theme from the first frame.
(function () {
  "use strict";

  const KEY = "pubsub-theme";
  const ORDER = ["system", "dark", "light"];
  const LABELS = { system: "Auto", dark: "Dark", light: "Light" };
  const ICONS = { system: "\u25d0", dark: "\u263e", light: "\u2600" };

  function stored() {
    try {
      const value = window.localStorage.getItem(KEY);
      return ORDER.includes(value) ? value : "system";
    } catch (error) {
      return "system"; // storage refused (a private window): the system's theme
    }
  }

  function apply(choice) {
    if (choice === "light" || choice === "dark") document.documentElement.dataset.theme = choice;
    else delete document.documentElement.dataset.theme;
  }

  function render(button, choice) {
    const icon = document.createElement("span");
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = ICONS[choice];
    const label = document.createElement("span");
    label.className = "theme-toggle__label";
    label.textContent = `Theme: ${LABELS[choice]}`;
    button.replaceChildren(icon, label);
    button.title = "Switch the colour theme (automatic follows the system)";
    button.dataset.theme = choice;
  }

  apply(stored());

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    render(button, stored());
    button.hidden = false;
    button.addEventListener("click", () => {
      const next = ORDER[(ORDER.indexOf(stored()) + 1) % ORDER.length];
      try {
        if (next === "system") window.localStorage.removeItem(KEY);
        else window.localStorage.setItem(KEY, next);
      } catch (error) {
        // Not kept: this page still switches.
      }
      apply(next);
      render(button, next);
    });
    window.addEventListener("storage", (event) => {
      if (event.key !== KEY) return;
      apply(stored());
      render(button, stored());
    });
  });
})();
