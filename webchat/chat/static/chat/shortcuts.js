// Keyboard shortcuts of the chat page and their help dialog (?). Shortcuts with Ctrl/⌘ work
// everywhere; bare keys (?, Esc) never fire while the user types in a field, except Esc in the
// message box, which stops the reply being written.
(() => {
  "use strict";
  const chat = window.webchat;
  const $ = (id) => document.getElementById(id);

  const isField = (node) => !!node && (node.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(node.tagName));
  const openDialog = () => document.querySelector("dialog[open]");

  function lastReply() {
    const path = chat.visiblePath();
    for (let i = path.length - 1; i >= 0; i--) if (path[i].role === "assistant") return path[i];
    return null;
  }

  function showHelp() {
    const dialog = $("shortcuts-dialog");
    if (!dialog.open) dialog.showModal();
  }

  // [test, action]; an action returning false lets the key do what it normally does.
  const SHORTCUTS = [
    [(e, mod) => mod && e.shiftKey && e.code === "KeyO", () => { chat.newChat(); }],
    [(e, mod) => mod && !e.shiftKey && e.code === "KeyK", () => { $("search").focus(); $("search").select(); }],
    [(e, mod) => mod && e.code === "Slash", showHelp],
    [(e, mod) => mod && e.shiftKey && e.code === "KeyC", () => {
      const m = lastReply();
      if (!m) return false;
      window.webchatCode.copy(m.content, null);
      chat.showNotice("Copied the last reply.", "ok");
      return true;
    }],
    [(e, mod) => mod && e.shiftKey && e.key === "Enter", () => {
      const m = lastReply();
      if (!m || chat.busy()) return false;
      chat.regenerate(m);
      return true;
    }],
    [(e, mod) => !mod && e.shiftKey && e.key === "Escape", () => { $("input").focus(); }],
    [(e, mod, typing) => !mod && !e.shiftKey && e.key === "Escape" && (!typing || e.target.id === "input"), () => chat.stopReply()],
    [(e, mod, typing) => !mod && !e.altKey && e.key === "?" && !typing, showHelp],
  ];

  document.addEventListener("keydown", (e) => {
    if (e.isComposing || e.defaultPrevented || openDialog()) return;
    const mod = e.ctrlKey || e.metaKey;
    const typing = isField(e.target);
    for (const [test, action] of SHORTCUTS) {
      if (!test(e, mod, typing)) continue;
      if (action() !== false) e.preventDefault();
      return;
    }
  });

  // Every dialog: its close button closes it; focus goes back to where it was.
  for (const dialog of document.querySelectorAll("dialog.dialog")) {
    let opener = null;
    dialog.addEventListener("close", () => { if (opener && opener.isConnected) opener.focus(); });
    const showModal = dialog.showModal.bind(dialog);
    dialog.showModal = () => { opener = document.activeElement; showModal(); };
    for (const b of dialog.querySelectorAll("[data-close]")) b.addEventListener("click", () => dialog.close());
  }
  $("shortcuts-open").addEventListener("click", showHelp);
})();
