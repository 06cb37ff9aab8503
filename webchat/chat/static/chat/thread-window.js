// The visible window of a long branch: past a few hundred messages only the messages near the
// viewport are in the DOM, between two spacers that stand for the rest (measured heights where
// known, an estimate elsewhere). Short branches are rendered whole, as before.
(() => {
  "use strict";

  const WINDOW_FROM = 150; // messages; below this the whole branch is rendered
  const OVERSCAN = 1500; // px rendered above and below the viewport
  const ESTIMATE = 110; // px, the height assumed for a message not rendered yet

  const NEAR_TOP = 300; // px from the top where older history is asked for

  // onTop: called when the user reaches the top of what is loaded (to fetch an older page).
  function create({ scroller, thread, render, onTop = () => {} }) {
    let path = [];
    let windowed = false;
    let range = [0, 0];
    const heights = new Map(); // message id -> measured height
    const nodes = new Map(); // message id -> rendered node (windowed mode)
    const top = document.createElement("div");
    const bottom = document.createElement("div");
    top.className = bottom.className = "thread-spacer";
    top.setAttribute("aria-hidden", "true");
    bottom.setAttribute("aria-hidden", "true");

    const height = (m) => heights.get(m.id) || ESTIMATE;
    const offsets = () => {
      const out = new Array(path.length + 1);
      out[0] = 0;
      for (let i = 0; i < path.length; i++) out[i + 1] = out[i] + height(path[i]);
      return out;
    };

    function wanted(offs, viewTop) {
      const viewBottom = viewTop + scroller.clientHeight;
      let start = 0;
      while (start < path.length - 1 && offs[start + 1] < viewTop - OVERSCAN) start++;
      let end = start;
      while (end < path.length && offs[end] < viewBottom + OVERSCAN) end++;
      return [start, Math.max(end, start + 1)];
    }

    function measure() {
      for (const [id, node] of nodes) heights.set(id, node.offsetHeight);
    }

    // Put messages [start, end) between the spacers, reusing the nodes already there, and keep
    // the first message on screen where it was (the spacers above it are only estimates).
    function place(start, end) {
      const viewTop = scroller.getBoundingClientRect().top;
      const anchor = [...nodes.values()].find((n) => n.getBoundingClientRect().bottom > viewTop);
      const anchorGap = anchor ? anchor.getBoundingClientRect().top : 0;
      const keep = new Set(path.slice(start, end).map((m) => m.id));
      for (const [id, node] of nodes) if (!keep.has(id)) { node.remove(); nodes.delete(id); }
      const list = path.slice(start, end).map((m) => nodes.get(m.id) || render(m));
      path.slice(start, end).forEach((m, i) => nodes.set(m.id, list[i]));
      thread.replaceChildren(top, ...list, bottom);
      measure();
      const offs = offsets();
      top.style.height = `${offs[start]}px`;
      bottom.style.height = `${offs[path.length] - offs[end]}px`;
      range = [start, end];
      if (anchor && anchor.isConnected) scroller.scrollTop += anchor.getBoundingClientRect().top - anchorGap;
    }

    function refresh() {
      if (!windowed) return;
      const viewTop = scroller.scrollTop - thread.offsetTop;
      const [start, end] = wanted(offsets(), viewTop);
      if (start !== range[0] || end !== range[1]) place(start, end);
    }

    // The first message on screen and how far below the scroller's top edge it is.
    function firstVisible() {
      const edge = scroller.getBoundingClientRect().top;
      const node = [...thread.querySelectorAll(".msg")].find((n) => n.getBoundingClientRect().bottom > edge);
      return node ? { id: Number(node.dataset.id), gap: node.getBoundingClientRect().top - edge } : null;
    }

    function restore(anchor) {
      const node = anchor && thread.querySelector(`.msg[data-id="${anchor.id}"]`);
      if (!node) return;
      scroller.scrollTop += node.getBoundingClientRect().top - scroller.getBoundingClientRect().top - anchor.gap;
    }

    // Show a (new) path. toBottom: at its end; otherwise the message on screen stays where it is,
    // also when older messages were put before it.
    function show(newPath, { toBottom = false } = {}) {
      const anchor = toBottom ? null : firstVisible();
      path = newPath;
      windowed = path.length >= WINDOW_FROM;
      nodes.clear();
      if (!windowed) {
        thread.replaceChildren(...path.map(render));
      } else {
        thread.replaceChildren();
        const offs = offsets();
        const at = anchor ? path.findIndex((m) => m.id === anchor.id) : -1;
        let viewTop = scroller.scrollTop - thread.offsetTop;
        if (toBottom) viewTop = offs[path.length] - scroller.clientHeight;
        else if (at >= 0) viewTop = offs[at] - anchor.gap;
        const [start, end] = wanted(offs, viewTop);
        range = [-1, -1];
        place(start, toBottom ? path.length : end);
      }
      if (toBottom) scroller.scrollTop = scroller.scrollHeight;
      else restore(anchor);
      if (scroller.scrollTop < NEAR_TOP) onTop();
    }

    // A message re-rendered in place (a delta, a status change); off-window ones wait until shown.
    function replace(id, fresh) {
      const old = windowed ? nodes.get(id) : thread.querySelector(`.msg[data-id="${id}"]`);
      if (!old) return false;
      old.replaceWith(fresh);
      if (windowed) {
        nodes.set(id, fresh);
        heights.set(id, fresh.offsetHeight);
      }
      return true;
    }

    let queued = false;
    scroller.addEventListener("scroll", () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        refresh();
        if (scroller.scrollTop < NEAR_TOP) onTop();
      });
    }, { passive: true });
    window.addEventListener("resize", refresh);

    return { show, replace, rendered: () => (windowed ? nodes.size : path.length), isWindowed: () => windowed };
  }

  window.webchatThreadWindow = { create, WINDOW_FROM };
})();
