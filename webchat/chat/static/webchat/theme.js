// Colour theme: follows the system (CSS color-scheme) until the user picks one with a toggle
// button; the pick is remembered in localStorage. Loaded in <head> so the page never flashes the
// wrong theme.
(() => {
  "use strict";
  const KEY = "webchat.theme";
  const ORDER = ["system", "light", "dark"];
  const LABEL = { system: "System", light: "Light", dark: "Dark" };
  const root = document.documentElement;
  const dark = window.matchMedia("(prefers-color-scheme: dark)");

  const stored = () => {
    try { return ORDER.includes(localStorage.getItem(KEY)) ? localStorage.getItem(KEY) : "system"; } catch { return "system"; }
  };
  const effective = (choice) => (choice === "system" ? (dark.matches ? "dark" : "light") : choice);

  function apply(choice) {
    if (choice === "system") delete root.dataset.theme;
    else root.dataset.theme = choice;
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.textContent = `Theme: ${LABEL[choice]}`;
      button.setAttribute("aria-label", `Colour theme: ${LABEL[choice]} (now ${effective(choice)}). Change theme`);
    }
  }

  function cycle() {
    const next = ORDER[(ORDER.indexOf(stored()) + 1) % ORDER.length];
    try {
      if (next === "system") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, next);
    } catch { /* storage refused (private mode): the choice lasts for this page only */ }
    apply(next);
  }

  apply(stored());
  dark.addEventListener("change", () => apply(stored()));
  document.addEventListener("DOMContentLoaded", () => {
    apply(stored());
    for (const button of document.querySelectorAll("[data-theme-toggle]")) button.addEventListener("click", cycle);
  });
  window.webchatTheme = { effective: () => effective(stored()), choice: stored };
})();
