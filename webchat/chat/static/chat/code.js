// Code blocks in replies (the chat page and shared pages): a header with the language the server
// highlighted it as and a copy button. Also the clipboard helper both pages use.
(() => {
  "use strict";

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API (plain http on another host, or permission refused): the old way.
      const area = document.createElement("textarea");
      area.className = "offscreen";
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    if (!button) return;
    const old = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = old; }, 1200);
  }

  function decorate(root) {
    for (const pre of root.querySelectorAll("pre")) {
      if (pre.parentElement.classList.contains("code-block")) continue;
      const code = pre.querySelector("code");
      const lang = code && (code.className.match(/language-([\w+#.-]+)/) || [])[1];
      const label = document.createElement("span");
      label.className = "code-lang";
      label.textContent = lang || "code";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "code-copy";
      button.textContent = "Copy code";
      button.setAttribute("aria-label", `Copy ${lang || ""} code`.replace("  ", " "));
      button.addEventListener("click", () => copy((code || pre).textContent, button));
      const head = document.createElement("div");
      head.className = "code-head";
      head.append(label, button);
      const block = document.createElement("div");
      block.className = "code-block";
      pre.replaceWith(block);
      block.append(head, pre);
      // A wide block scrolls sideways; keyboard users need to reach it to scroll it.
      pre.tabIndex = 0;
    }
  }

  window.webchatCode = { copy, decorate };
  for (const root of document.querySelectorAll("[data-decorate-code]")) decorate(root);
})();
