// The chat page: one websocket (docs/websocket.md), a message tree with branches, and the sidebar.
// Model text arrives as HTML the server already sanitised; everything else is set as text.
(() => {
  "use strict";

  const page = JSON.parse(document.getElementById("page-data").textContent);
  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c) node.append(c);
    return node;
  };

  // Icons as inline SVG (constant markup, never user data): emoji fonts are not everywhere.
  const ICON = {
    up: '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M7 10v12"/><path d="M15 5.88 14 10h5.83a2 2 0 0 1 1.92 2.56l-2.33 8A2 2 0 0 1 17.5 22H4a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2h2.76a2 2 0 0 0 1.79-1.11L12 2a3.13 3.13 0 0 1 3 3.88Z"/></svg>',
    down: '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M17 14V2"/><path d="M9 18.12 10 14H4.17a2 2 0 0 1-1.92-2.56l2.33-8A2 2 0 0 1 6.5 2H20a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-2.76a2 2 0 0 0-1.79 1.11L12 22a3.13 3.13 0 0 1-3-3.88Z"/></svg>',
    trash: '<svg viewBox="0 0 24 24" width="15" height="15" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M3 6h18"/><path d="M19 6v14a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V6"/><path d="M8 6V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2"/></svg>',
    pencil: '<svg viewBox="0 0 24 24" width="15" height="15" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M17 3a2.85 2.83 0 1 1 4 4L7.5 20.5 2 22l1.5-5.5Z"/></svg>',
  };
  const icon = (node, name) => { node.innerHTML = ICON[name]; return node; };

  const state = {
    conversationId: page.conversation_id,
    conversation: null,
    messages: new Map(), // id -> message
    children: new Map(), // parent key ("root" or id) -> [ids], oldest first
    selected: new Map(), // parent key -> chosen child id (default: the newest)
    conversations: page.conversations,
    ws: null,
    retry: 0,
    nextRef: 1,
    pending: new Map(), // ref -> {kind, text}
    editing: null, // id of the user message being edited
    feedbackOpen: new Set(),
  };

  // --- settings (sampling params in localStorage; the rest per conversation) -----------------

  const PARAM_ORDER = ["temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "num_beams"];
  const HELP = {
    temperature: "0 = always the most likely token",
    top_p: "keep the smallest set of tokens with this much probability",
    top_k: "keep only the k most likely tokens (0 = off)",
    max_new_tokens: "longest reply, in tokens",
    repetition_penalty: "above 1 discourages repeating",
    num_beams: "beam search: more than 1 explores several replies (no sampling)",
  };
  const stored = (() => {
    try { return JSON.parse(localStorage.getItem("webchat.params") || "{}"); } catch { return {}; }
  })();
  // Settings the user has not changed are not sent: the server then applies the model's own
  // recommended settings (its generation_config.json), which the panel shows.
  const params = {};
  const changed = new Set();
  for (const name of PARAM_ORDER) {
    const r = page.params[name];
    const v = Number(stored[name]);
    const ok = name in stored && Number.isFinite(v) && v >= r.min && v <= r.max;
    params[name] = ok ? v : r.default;
    if (ok) changed.add(name);
  }
  const draft = { system_prompt: "", model_version: null, training_consent: page.consent_default };

  function buildSettings() {
    const select = $("model-select");
    select.append(el("option", { value: "", text: "Default (the active model)" }));
    for (const m of page.models) {
      select.append(el("option", { value: m.id, text: `${m.name}${m.status === "active" ? " (active)" : " (previous)"}` }));
    }
    const box = $("param-fields");
    for (const name of PARAM_ORDER) {
      const r = page.params[name];
      const range = el("input", { type: "range", id: `p-${name}`, min: r.min, max: r.max, step: r.step, value: params[name] });
      const number = el("input", { type: "number", class: "num", min: r.min, max: r.max, step: r.step, value: params[name], "aria-label": r.label });
      const set = (v) => {
        const n = Math.min(r.max, Math.max(r.min, Number(v)));
        if (!Number.isFinite(n)) return;
        params[name] = n;
        range.value = n;
        number.value = n;
        changed.add(name);
        localStorage.setItem("webchat.params", JSON.stringify(Object.fromEntries([...changed].map((k) => [k, params[k]]))));
      };
      range.addEventListener("input", () => set(range.value));
      number.addEventListener("change", () => set(number.value));
      box.append(el("div", { class: "setting param" },
        el("label", { for: `p-${name}` }, el("span", { text: r.label }), number),
        range,
        el("small", { class: "muted", text: HELP[name] })));
    }
    $("params-reset").addEventListener("click", () => {
      changed.clear();
      localStorage.removeItem("webchat.params");
      showModelDefaults();
    });
    select.addEventListener("change", () => {
      updateConversation({ model_version: select.value ? Number(select.value) : null });
      showReplyCap();
    });
    $("consent").addEventListener("change", (e) => updateConversation({ training_consent: e.target.checked }));
    $("system-prompt").addEventListener("change", (e) => updateConversation({ system_prompt: e.target.value }));
    showSettingsValues();
  }

  function showSettingsValues() {
    const c = state.conversation || draft;
    $("model-select").value = c.model_version ? String(c.model_version) : "";
    $("consent").checked = !!c.training_consent;
    $("system-prompt").value = c.system_prompt || "";
    showReplyCap();
  }

  // A model answers at most half its context window; the server cuts max tokens to that, so the
  // panel says so for the model this conversation uses.
  function showReplyCap() {
    const c = state.conversation || draft;
    const chosen = $("model-select").value ? Number($("model-select").value) : c.model_version;
    const m = chosen ? page.models.find((x) => x.id === chosen) : page.models.find((x) => x.status === "active");
    const cap = m && m.max_new_tokens;
    const help = $("p-max_new_tokens").parentElement.querySelector("small");
    help.textContent = HELP.max_new_tokens + (cap ? ` (this model: at most ${cap})` : "");
    showModelDefaults();
  }

  // The settings the user has not changed show the chosen model's recommendation.
  function showModelDefaults() {
    const c = state.conversation || draft;
    const chosen = $("model-select").value ? Number($("model-select").value) : c.model_version;
    const m = chosen ? page.models.find((x) => x.id === chosen) : page.models.find((x) => x.status === "active");
    const recommended = (m && m.sampling) || {};
    for (const name of PARAM_ORDER) {
      if (changed.has(name)) continue;
      const r = page.params[name];
      const v = recommended[name];
      params[name] = v !== undefined && v >= r.min && v <= r.max ? v : r.default;
      $(`p-${name}`).value = params[name];
      $(`p-${name}`).parentElement.querySelector(".num").value = params[name];
    }
  }

  function requestParams() {
    const p = Object.fromEntries([...changed].map((k) => [k, params[k]]));
    if (changed.has("temperature") || changed.has("num_beams")) {
      p.do_sample = params.temperature > 0 && params.num_beams === 1;
    }
    return p;
  }

  async function updateConversation(changes) {
    if (!state.conversationId) { Object.assign(draft, changes); return; }
    const res = await postJSON(`/conversations/${state.conversationId}/settings`, changes);
    if (res.conversation) state.conversation = res.conversation;
    else showNotice(res.error ? res.error.detail : "Could not save the setting.", "error");
  }

  // --- http helpers --------------------------------------------------------------------------

  function csrf() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function postJSON(url, body) {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
        body: JSON.stringify(body || {}),
        credentials: "same-origin",
      });
      return await res.json();
    } catch (err) {
      return { error: { detail: "The server could not be reached." } };
    }
  }

  // --- websocket ---------------------------------------------------------------------------

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}${page.ws_path}`);
    state.ws = ws;
    setConn("connecting");
    ws.addEventListener("open", () => {
      state.retry = 0;
      setConn("online");
      if (state.conversationId) send({ type: "subscribe", conversation_id: state.conversationId });
    });
    ws.addEventListener("message", (e) => {
      let frame;
      try { frame = JSON.parse(e.data); } catch { return; }
      const handler = HANDLERS[frame.type];
      if (handler) handler(frame);
    });
    ws.addEventListener("close", () => {
      setConn("offline");
      if (state.ws !== ws) return;
      const delay = Math.min(10000, 500 * 2 ** state.retry++);
      setTimeout(connect, delay);
    });
  }

  function send(frame, pending) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      showNotice("Not connected to the server. Reconnecting…", "error");
      return null;
    }
    const ref = state.nextRef++;
    frame.id = ref;
    if (pending) state.pending.set(ref, pending);
    state.ws.send(JSON.stringify(frame));
    return ref;
  }

  function setConn(status) {
    const c = $("conn-status");
    c.className = `conn ${status}`;
    c.textContent = status === "online" ? "" : status === "connecting" ? "connecting…" : "offline, reconnecting…";
  }

  const HANDLERS = {
    hello() {},
    pong() {},
    conversation(f) {
      state.moreBefore = f.more_before || null;
      state.historyPending = false;
      loadConversation(f.conversation, f.messages);
    },
    // An older page of a long conversation (asked for when the user scrolls to the top).
    history(f) {
      state.pending.delete(f.ref);
      state.historyPending = false;
      if (f.conversation_id !== state.conversationId) return;
      state.moreBefore = f.more_before || null;
      rebuildTree([...f.messages.filter((m) => !state.messages.has(m.id)), ...state.messages.values()]);
      renderThread(false);
    },
    accepted(f) {
      state.pending.delete(f.ref);
      if (f.created || state.conversationId !== f.conversation.id) {
        state.conversationId = f.conversation.id;
        state.conversation = f.conversation;
        history.pushState({}, "", `/c/${f.conversation.id}/`);
      }
      state.conversation = f.conversation;
      upsertConversationInList(f.conversation);
      if (f.user_message) addMessage(f.user_message, true);
      f.message.position = f.position;
      addMessage(f.message, true);
      announce(f.message, false); // this tab asked for it: read it out, also if stopped early
      $("chat-title").textContent = f.conversation.title;
      renderThread(true);
    },
    message(f) {
      const known = state.messages.has(f.message.id);
      addMessage(f.message, !known);
      renderThread(!known);
    },
    started(f) {
      const m = state.messages.get(f.message_id);
      if (!m) return;
      if (m.status === "queued") m.status = "streaming";
      m.model_version = f.model_version;
      updateMessage(m);
    },
    queue(f) {
      const m = state.messages.get(f.message_id);
      if (!m) return;
      m.position = f.position;
      updateMessage(m);
    },
    delta(f) {
      const m = state.messages.get(f.message_id);
      if (!m || f.seq <= m.last_seq) return; // already shown (snapshot or an earlier delta)
      m.last_seq = f.seq;
      m.content += f.text;
      // Only what changed comes (webchat/chat/markdown_stream.py); none while coalesced.
      if (f.html_tail !== undefined) m.html = (m.html || "").slice(0, f.html_keep) + f.html_tail;
      if (m.status === "queued") m.status = "streaming";
      updateMessage(m);
      announce(m, false);
      stickToBottom();
    },
    done(f) {
      const m = state.messages.get(f.message_id);
      if (!m) return;
      Object.assign(m, { status: f.status, content: f.content, html: f.html, last_seq: f.last_seq, error: f.error, usage: f.usage });
      updateMessage(m);
      announce(m, true);
      updateComposer();
    },
    stopping() {},
    feedback_saved(f) {
      const pending = state.pending.get(f.ref);
      state.pending.delete(f.ref);
      const m = state.messages.get(f.message_id);
      if (!m) return;
      m.feedback = f.feedback;
      // A thumb alone keeps an open form open; sending the form closes it.
      if (pending && pending.kind === "feedback_form") {
        state.feedbackOpen.delete(m.id);
        m.feedbackThanks = true;
      }
      updateMessage(m);
    },
    unsubscribed() {},
    error(f) {
      const pending = state.pending.get(f.ref);
      state.pending.delete(f.ref);
      if (pending && pending.kind === "history") {
        state.historyPending = false;
        if (f.code === "rate_limited") {
          // ask again once the server allows it, not on the next scroll event: retrying at
          // every frame floods the socket until the server closes it (and the page starts over)
          state.lastHistoryAt = Date.now() + (f.retry_after || 1) * 1000 - HISTORY_GAP_MS;
          loadOlder();
          return; // no notice: the user did nothing wrong
        }
      }
      if (pending && pending.kind === "send" && !$("input").value) $("input").value = pending.text;
      if (f.code === "not_found" && pending && pending.kind === "subscribe") {
        showNotice("That conversation does not exist (or is not yours).", "error");
        newChat();
        return;
      }
      let text = f.detail;
      if (f.code === "rate_limited" && f.retry_after) countdown(f.retry_after);
      else showNotice(text, "error");
    },
  };

  // --- the message tree ----------------------------------------------------------------------

  const threadWindow = window.webchatThreadWindow.create({ scroller: $("messages"), thread: $("thread"), render: renderMessage, onTop: loadOlder });

  // Older pages at most every HISTORY_GAP_MS, half the server's frame rate (10 a second), so
  // scrolling to the top of a long chat leaves room for the user's own frames.
  const HISTORY_GAP_MS = 200;
  function loadOlder() {
    if (!state.moreBefore || state.historyPending || !state.conversationId) return;
    state.historyPending = true;
    const wait = (state.lastHistoryAt || 0) + HISTORY_GAP_MS - Date.now();
    if (wait > 0) {
      setTimeout(() => { state.historyPending = false; loadOlder(); }, wait);
      return;
    }
    state.lastHistoryAt = Date.now();
    send({ type: "history", conversation_id: state.conversationId, before: state.moreBefore }, { kind: "history" });
  }

  // The reply being written is read out politely, a sentence or line at a time (the thread itself
  // is not a live region: re-rendering it must not be announced).
  const live = { id: null, said: 0 };
  const speakable = (text) => text.replace(/[*_`#>|]+/g, "");
  function announce(m, final) {
    const region = $("live");
    if (live.id !== m.id) {
      if (final) return; // a reply that finished while the user looked elsewhere
      live.id = m.id;
      live.said = 0;
      region.replaceChildren();
    }
    const text = m.content || "";
    const upto = final ? text.length : Math.max(text.lastIndexOf(". "), text.lastIndexOf("\n")) + 1;
    if (upto > live.said) {
      region.append(document.createTextNode(`${speakable(text.slice(live.said, upto))} `));
      live.said = upto;
    }
    if (final && m.status !== "done") region.append(document.createTextNode(`(reply ${m.status})`));
  }

  const key = (parentId) => (parentId === null || parentId === undefined ? "root" : parentId);

  function addMessage(m, select) {
    const old = state.messages.get(m.id);
    if (old) {
      // A resend (gap or new tab): the server's row wins, except seq must never go back.
      if (m.last_seq < old.last_seq && m.status === old.status) return;
      Object.assign(old, m);
      return;
    }
    state.messages.set(m.id, m);
    // The oldest message of a history page may have its parent on an older page.
    const k = state.messages.has(m.parent_id) ? m.parent_id : key(null);
    if (!state.children.has(k)) state.children.set(k, []);
    const list = state.children.get(k);
    list.push(m.id);
    list.sort((a, b) => a - b);
    if (select) state.selected.set(k, m.id);
  }

  // The tree from scratch (a snapshot, or an older page joining it), oldest first so parents come
  // before their children; the branch the user was looking at stays chosen.
  function rebuildTree(messages) {
    const keepSelection = state.selected;
    state.messages = new Map();
    state.children = new Map();
    state.selected = new Map();
    for (const m of [...messages].sort((a, b) => a.id - b.id)) addMessage(m, false);
    for (const [k, id] of keepSelection) if (state.messages.has(id)) state.selected.set(k, id);
  }

  function loadConversation(conversation, messages) {
    state.conversation = conversation;
    rebuildTree(messages);
    $("chat-title").textContent = conversation.title;
    document.title = `${conversation.title} · webchat`;
    showSettingsValues();
    setExportLinks();
    renderThread(true);
    markActiveInList();
  }

  function visiblePath() {
    const path = [];
    let k = "root";
    while (state.children.has(k)) {
      const kids = state.children.get(k);
      const chosen = state.selected.get(k);
      const id = kids.includes(chosen) ? chosen : kids[kids.length - 1];
      path.push(state.messages.get(id));
      k = id;
    }
    return path;
  }

  function renderThread(scroll) {
    const path = visiblePath();
    threadWindow.show(path, { toBottom: scroll });
    $("empty").hidden = path.length > 0;
    updateComposer();
    if (scroll) scrollToBottom();
  }

  function updateMessage(m) {
    const node = $("thread").querySelector(`.msg[data-id="${m.id}"]`);
    if (!node) { updateComposer(); return; }
    const fresh = renderMessage(m);
    // Keep what the user is typing in an open feedback form or editor across re-renders.
    for (const sel of [".feedback-form", ".editor"]) {
      const old = node.querySelector(sel);
      const next = fresh.querySelector(sel);
      if (old && next) next.replaceWith(old);
    }
    threadWindow.replace(m.id, fresh);
    updateComposer();
  }

  function renderMessage(m) {
    const isUser = m.role === "user";
    const node = el("article", { class: `msg ${m.role} status-${m.status}`, "data-id": m.id });
    if (isUser && state.editing === m.id) {
      node.append(renderEditor(m));
      return node;
    }
    const content = el("div", { class: "content" });
    if (isUser) content.textContent = m.content;
    else {
      content.innerHTML = m.html || ""; // sanitised on the server (webchat.chat.validation)
      window.webchatCode.decorate(content);
      if (m.status === "streaming") content.classList.add("typing");
    }
    const bubble = el("div", { class: "bubble" }, content);
    if (!isUser) {
      const note = statusNote(m);
      if (note) bubble.append(note);
    }
    node.append(el("div", { class: "avatar", "aria-hidden": "true", text: isUser ? "You" : "◆" }), bubble);
    node.append(renderActions(m));
    if (!isUser && state.feedbackOpen.has(m.id)) node.append(renderFeedbackForm(m));
    return node;
  }

  function statusNote(m) {
    const regen = () => el("button", { type: "button", class: "link", text: "Regenerate", onclick: () => regenerate(m) });
    switch (m.status) {
      case "queued": {
        const ahead = m.position || 0;
        return el("div", { class: "note waiting" }, el("span", { class: "spinner" }),
          ahead > 0 ? `Waiting in queue: ${ahead} ahead of you…` : "Starting…");
      }
      case "streaming":
        return m.content ? null : el("div", { class: "note waiting" }, el("span", { class: "spinner" }), "Thinking…");
      case "stopped":
        return el("div", { class: "note muted" }, "Stopped. ", regen());
      case "interrupted":
        return el("div", { class: "note warn" },
          `⚠ This reply was interrupted: ${m.error || "the worker generating it stopped."} `, regen());
      case "failed":
        return el("div", { class: "note warn" }, `⚠ This reply failed: ${m.error || "unknown error."} `, regen());
      default:
        return null;
    }
  }

  function renderActions(m) {
    const bar = el("div", { class: "actions" });
    const siblings = state.children.get(key(m.parent_id)) || [m.id];
    if (siblings.length > 1) {
      const i = siblings.indexOf(m.id);
      const go = (d) => () => {
        state.selected.set(key(m.parent_id), siblings[i + d]);
        state.editing = null;
        renderThread(false);
      };
      bar.append(el("span", { class: "pager" },
        el("button", { type: "button", class: "icon-button", "aria-label": "Previous version", disabled: i === 0, onclick: go(-1), text: "‹" }),
        el("span", { class: "pager-count", text: `${i + 1}/${siblings.length}` }),
        el("button", { type: "button", class: "icon-button", "aria-label": "Next version", disabled: i === siblings.length - 1, onclick: go(1), text: "›" })));
    }
    const active = m.status === "queued" || m.status === "streaming";
    bar.append(el("button", { type: "button", class: "action copy", title: "Copy", text: "Copy", onclick: (e) => window.webchatCode.copy(m.content, e.target) }));
    if (m.role === "user") {
      bar.append(el("button", { type: "button", class: "action edit", title: "Edit and resend", text: "Edit", disabled: busy(), onclick: () => { state.editing = m.id; updateMessage(m); } }));
      return bar;
    }
    if (!active) {
      bar.append(el("button", { type: "button", class: "action regenerate", title: "Regenerate", text: "Regenerate", disabled: busy(), onclick: () => regenerate(m) }));
      const rating = m.feedback ? m.feedback.rating : 0;
      bar.append(
        icon(el("button", { type: "button", class: `action thumb up${rating === 1 ? " on" : ""}`, title: "Good reply", "aria-label": "Good reply", onclick: () => rate(m, 1) }), "up"),
        icon(el("button", { type: "button", class: `action thumb down${rating === -1 ? " on" : ""}`, title: "Bad reply", "aria-label": "Bad reply", onclick: () => { rate(m, -1); openFeedback(m); } }), "down"),
        el("button", { type: "button", class: "action improve", title: "Tell us what was wrong or write the correct reply", text: "Improve", onclick: () => openFeedback(m) }));
      if (m.feedbackThanks) bar.append(el("span", { class: "thanks", text: "Thanks for the feedback" }));
      if (m.usage && m.usage.completion_tokens) {
        const speed = m.usage.tokens_per_s ? ` · ${m.usage.tokens_per_s.toFixed(0)} tok/s` : "";
        bar.append(el("span", { class: "meta", text: `${m.usage.completion_tokens} tokens${speed}${m.model_version ? ` · ${m.model_version}` : ""}` }));
      }
    }
    return bar;
  }

  function renderEditor(m) {
    const area = el("textarea", { class: "edit-area", rows: 3, "aria-label": "Edit message" });
    area.value = m.content;
    const submit = () => {
      const text = area.value;
      if (!text.trim()) return;
      const ref = send({ type: "edit", message_id: m.id, text, params: requestParams() }, { kind: "edit", text });
      if (ref) { state.editing = null; renderThread(false); }
    };
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
      if (e.key === "Escape") { state.editing = null; updateMessage(m); }
    });
    setTimeout(() => area.focus(), 0);
    return el("div", { class: "editor" }, area,
      el("div", { class: "editor-actions" },
        el("button", { type: "button", class: "ghost-button", text: "Cancel", onclick: () => { state.editing = null; updateMessage(m); } }),
        el("button", { type: "button", class: "button small save-edit", text: "Send", onclick: submit })));
  }

  function renderFeedbackForm(m) {
    const f = m.feedback || {};
    const reason = el("select", { class: "fb-reason", "aria-label": "Reason" },
      ...[["", "Reason…"], ["wrong", "Wrong"], ["unhelpful", "Unhelpful"], ["unsafe", "Unsafe"], ["other", "Other"]]
        .map(([v, t]) => el("option", { value: v, text: t })));
    reason.value = f.reason || "";
    const comment = el("textarea", { class: "fb-comment", rows: 2, placeholder: "What was wrong? (optional)" });
    comment.value = f.comment || "";
    const corrected = el("textarea", { class: "fb-correct", rows: 4, placeholder: "Write the correct reply (optional) — it helps the model learn." });
    corrected.value = f.corrected_reply || "";
    const form = el("form", { class: "feedback-form" },
      el("div", { class: "fb-row" }, reason),
      comment,
      el("label", { class: "small muted", text: "Write the correct reply" }),
      corrected,
      el("div", { class: "editor-actions" },
        el("button", { type: "button", class: "ghost-button", text: "Cancel", onclick: () => { state.feedbackOpen.delete(m.id); updateMessage(m); } }),
        el("button", { type: "submit", class: "button small", text: "Send feedback" })));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const rating = m.feedback ? m.feedback.rating : -1;
      send({ type: "feedback", message_id: m.id, rating, reason: reason.value, comment: comment.value, corrected_reply: corrected.value }, { kind: "feedback_form" });
    });
    return form;
  }

  function openFeedback(m) {
    state.feedbackOpen.add(m.id);
    updateMessage(m);
  }

  function rate(m, rating) {
    const f = m.feedback || {};
    send({ type: "feedback", message_id: m.id, rating, reason: f.reason || "", comment: f.comment || "", corrected_reply: f.corrected_reply || "" }, { kind: "feedback" });
  }

  // --- composer ------------------------------------------------------------------------------

  function activeReply() {
    return visiblePath().find((m) => m.role === "assistant" && (m.status === "queued" || m.status === "streaming"));
  }

  function busy() {
    return !!activeReply();
  }

  function updateComposer() {
    const active = activeReply();
    $("stop").hidden = !active;
    $("send").hidden = !!active;
    for (const b of document.querySelectorAll(".action.regenerate, .action.edit")) b.disabled = !!active;
  }

  function submitMessage() {
    const input = $("input");
    const text = input.value;
    if (!text.trim() || busy()) return;
    if (text.length > page.limits.max_message_chars) {
      showNotice(`Your message is ${text.length} characters; the limit is ${page.limits.max_message_chars}.`, "error");
      return;
    }
    const path = visiblePath();
    const last = path[path.length - 1];
    const frame = { type: "send", text, params: requestParams(), conversation_id: state.conversationId || null };
    if (last && last.role === "assistant") frame.parent_id = last.id;
    if (!state.conversationId) frame.conversation = { ...draft };
    if (send(frame, { kind: "send", text })) {
      input.value = "";
      autosize();
      hideNotice();
    }
  }

  function stopReply() {
    const m = activeReply();
    if (m) send({ type: "stop", message_id: m.id });
    return !!m;
  }

  function regenerate(m) {
    send({ type: "regenerate", message_id: m.id, params: requestParams() }, { kind: "regenerate" });
  }

  function autosize() {
    const input = $("input");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
    const n = input.value.length;
    const max = page.limits.max_message_chars;
    $("counter").textContent = n > max * 0.8 ? `${n}/${max}` : "";
    $("counter").classList.toggle("over", n > max);
  }

  let noticeTimer = null;
  function showNotice(text, kind) {
    const n = $("notice");
    n.textContent = text;
    n.className = `notice ${kind || ""}`;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(hideNotice, 8000);
  }

  function hideNotice() {
    $("notice").hidden = true;
  }

  function countdown(seconds) {
    let left = Math.ceil(seconds);
    const tick = () => {
      if (left <= 0) { showNotice("You can send again now.", "ok"); return; }
      showNotice(`You are sending requests too quickly. Try again in ${left} second${left === 1 ? "" : "s"}.`, "error");
      left -= 1;
      clearTimeout(noticeTimer);
      noticeTimer = setTimeout(tick, 1000);
    };
    tick();
  }

  function scrollToBottom() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  function stickToBottom() {
    const box = $("messages");
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 160) scrollToBottom();
  }

  // --- sidebar -------------------------------------------------------------------------------

  function renderList() {
    const list = $("conversation-list");
    list.replaceChildren(...state.conversations.map((c) => {
      const link = el("a", { href: `/c/${c.id}/`, class: "conv-link", text: c.title, title: c.title });
      link.addEventListener("click", (e) => { e.preventDefault(); openConversation(c.id); closeSidebar(); });
      const rename = el("button", { type: "button", class: "icon-button conv-rename", title: "Rename", "aria-label": `Rename ${c.title}`, onclick: () => startRename(item, c) });
      icon(rename, "pencil");
      const del = el("button", { type: "button", class: "icon-button conv-delete", title: "Delete", "aria-label": `Delete ${c.title}`, onclick: () => deleteConversation(c) });
      icon(del, "trash");
      const item = el("div", { class: `conv-item${c.id === state.conversationId ? " active" : ""}`, "data-id": c.id }, link, el("span", { class: "conv-tools" }, rename, del));
      return item;
    }));
    if (!state.conversations.length) list.append(el("p", { class: "muted small pad", text: $("search").value ? "No chats match." : "No chats yet." }));
  }

  function markActiveInList() {
    for (const item of document.querySelectorAll(".conv-item")) item.classList.toggle("active", Number(item.dataset.id) === state.conversationId);
  }

  function upsertConversationInList(c) {
    state.conversations = [c, ...state.conversations.filter((x) => x.id !== c.id)];
    renderList();
  }

  function startRename(item, c) {
    const input = el("input", { class: "rename-input", "aria-label": "New title", maxlength: 200 });
    input.value = c.title;
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      if (save && input.value.trim() && input.value !== c.title) {
        const res = await postJSON(`/conversations/${c.id}/rename`, { title: input.value });
        if (res.conversation) {
          c.title = res.conversation.title;
          if (c.id === state.conversationId) $("chat-title").textContent = c.title;
        } else showNotice(res.error ? res.error.detail : "Could not rename.", "error");
      }
      renderList();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    item.replaceChildren(input);
    input.focus();
    input.select();
  }

  async function deleteConversation(c) {
    if (!confirm(`Delete "${c.title}"? This cannot be undone.`)) return;
    const res = await postJSON(`/conversations/${c.id}/delete`, {});
    if (res.error) { showNotice(res.error.detail, "error"); return; }
    state.conversations = state.conversations.filter((x) => x.id !== c.id);
    if (c.id === state.conversationId) newChat();
    renderList();
  }

  let searchTimer = null;
  function onSearch() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const q = $("search").value;
      const res = await fetch(`/conversations/?q=${encodeURIComponent(q)}`, { credentials: "same-origin" });
      if (res.ok) { state.conversations = (await res.json()).conversations; renderList(); }
    }, 200);
  }

  function openConversation(id) {
    if (id === state.conversationId && state.conversation) return;
    state.conversationId = id;
    state.conversation = null;
    state.selected = new Map();
    state.editing = null;
    history.pushState({}, "", `/c/${id}/`);
    send({ type: "subscribe", conversation_id: id }, { kind: "subscribe" });
    markActiveInList();
  }

  function newChat() {
    if (state.conversationId) send({ type: "unsubscribe" });
    state.conversationId = null;
    state.conversation = null;
    state.messages = new Map();
    state.children = new Map();
    state.selected = new Map();
    draft.system_prompt = "";
    draft.model_version = null;
    draft.training_consent = page.consent_default;
    history.pushState({}, "", "/");
    $("chat-title").textContent = "New chat";
    document.title = "Chat · webchat";
    showSettingsValues();
    setExportLinks();
    renderThread(false);
    markActiveInList();
    $("input").focus();
  }

  function setExportLinks() {
    const id = state.conversationId;
    $("export-json").href = id ? `/c/${id}/export.json` : "#";
    $("export-md").href = id ? `/c/${id}/export.md` : "#";
    $("export-json").classList.toggle("disabled", !id);
    $("export-md").classList.toggle("disabled", !id);
  }

  function openSidebar() { document.body.classList.add("sidebar-open"); $("scrim").hidden = false; }
  function closeSidebar() { document.body.classList.remove("sidebar-open"); $("scrim").hidden = true; }

  // --- wiring --------------------------------------------------------------------------------

  buildSettings();
  renderList();
  setExportLinks();
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submitMessage(); });
  for (const b of document.querySelectorAll("#examples .example")) {
    b.addEventListener("click", () => { $("input").value = b.dataset.prompt; submitMessage(); });
  }
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitMessage(); }
  });
  $("input").addEventListener("input", autosize);
  $("stop").addEventListener("click", stopReply);
  $("new-chat").addEventListener("click", () => { newChat(); closeSidebar(); });
  $("search").addEventListener("input", onSearch);
  $("menu").addEventListener("click", openSidebar);
  $("scrim").addEventListener("click", closeSidebar);
  const toggleSettings = (open) => {
    $("settings").hidden = !open;
    $("settings-toggle").setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("settings-open", open);
  };
  $("settings-toggle").addEventListener("click", () => toggleSettings($("settings").hidden));
  $("settings-close").addEventListener("click", () => toggleSettings(false));
  window.addEventListener("popstate", () => {
    const m = location.pathname.match(/^\/c\/(\d+)\//);
    if (m) openConversation(Number(m[1]));
    else newChat();
  });
  renderThread(false);
  connect();
  $("input").focus();
  // For shortcuts.js and share.js, the console and the browser tests.
  window.webchat = { state, visiblePath, newChat, regenerate, stopReply, busy, postJSON, showNotice, threadWindow };
})();
