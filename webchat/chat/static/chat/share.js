// The share dialog: make a read-only link to the branch on screen, copy it, revoke it
// (webchat/chat/share_views.py).
(() => {
  "use strict";
  const chat = window.webchat;
  const $ = (id) => document.getElementById(id);
  const dialog = $("share-dialog");

  function error(text) {
    $("share-error").textContent = text;
    $("share-error").hidden = !text;
  }

  function linkItem(link) {
    const url = new URL(link.url, location.origin).href;
    const field = document.createElement("input");
    field.className = "share-url";
    field.readOnly = true;
    field.value = url;
    field.setAttribute("aria-label", `Link to ${link.messages} messages`);
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "ghost-button share-copy";
    copy.textContent = "Copy link";
    copy.addEventListener("click", () => window.webchatCode.copy(url, copy));
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "ghost-button share-revoke";
    revoke.textContent = "Revoke";
    revoke.addEventListener("click", async () => {
      const res = await chat.postJSON(`/shares/${link.id}/revoke`, {});
      if (res.error) { error(res.error.detail); return; }
      item.remove();
      $("share-create").focus();
    });
    const when = document.createElement("small");
    when.className = "muted";
    when.textContent = `${link.messages} messages · ${new Date(link.created_at).toLocaleString()}`;
    const item = document.createElement("li");
    item.dataset.id = link.id;
    item.append(field, copy, revoke, when);
    return item;
  }

  async function refresh() {
    error("");
    const id = chat.state.conversationId;
    const res = await fetch(`/conversations/${id}/shares`, { credentials: "same-origin" });
    const body = await res.json();
    if (!res.ok) { error(body.error ? body.error.detail : "Could not load the links."); return; }
    $("share-links").replaceChildren(...body.shared_links.map(linkItem));
  }

  async function create() {
    const path = chat.visiblePath();
    const last = path[path.length - 1];
    if (!last) return;
    const res = await chat.postJSON(`/conversations/${chat.state.conversationId}/shares`, { message_id: last.id });
    if (res.error) { error(res.error.detail); return; }
    error("");
    const item = linkItem(res.shared_link);
    $("share-links").prepend(item);
    item.querySelector(".share-url").select();
  }

  $("share-open").addEventListener("click", () => {
    if (!chat.state.conversationId) { chat.showNotice("There is nothing to share yet: send a message first.", "error"); return; }
    $("share-links").replaceChildren();
    dialog.showModal();
    refresh();
  });
  $("share-create").addEventListener("click", create);
})();
