// The browser test's checks, run in the page by headless Chromium (added at the end of a copy of the
// report, so they run once everything above is laid out). They write what they find as JSON into
// <pre id="beanswap-checks">, which --dump-dom hands back.
(function () {
  const SELECTORS = __SELECTORS__;
  const out = { errors: [], overlaps: [], barOverlaps: [], texts: 0, found: {}, metrics: {}, ticks: [] };
  window.addEventListener("error", (e) => {
    const target = e.target && (e.target.src || e.target.href);
    out.errors.push("error: " + (e.message || target || "unknown"));
  }, true);
  document.addEventListener("securitypolicyviolation", (e) => {
    out.errors.push("csp: " + e.blockedURI + " " + e.violatedDirective);
  });

  // Every piece of text drawn: an SVG <text> as its box, HTML text as the boxes of its lines.
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.trim();
    const parent = n.parentElement;
    if (!text || !parent || parent.closest("title, script, style, desc")) continue;
    // Not drawn: inside a closed <details>, hidden.
    if (!parent.checkVisibility({ visibilityProperty: true })) continue;
    let rects;
    if (parent instanceof SVGElement) {
      rects = [parent.getBoundingClientRect()];
    } else {
      const range = document.createRange();
      range.selectNodeContents(n);
      rects = Array.from(range.getClientRects());
    }
    for (const r of rects) {
      if (r.width > 0 && r.height > 0) boxes.push({ text: text.slice(0, 80), node: n, r });
    }
  }
  out.texts = boxes.length;
  const overlap = (a, b) =>
    Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      if (boxes[i].node !== boxes[j].node && overlap(boxes[i].r, boxes[j].r)) {
        out.overlaps.push([boxes[i].text, boxes[j].text]);
      }
    }
  }

  // In each lane, an action's label is inside its own bar or clear of it, and clear of every other bar.
  for (const lane of document.querySelectorAll("#timeline g.lane")) {
    const actions = Array.from(lane.querySelectorAll("g.action"));
    for (const a of actions) {
      const label = a.querySelector("text").getBoundingClientRect();
      for (const b of actions) {
        const bar = b.querySelector("rect").getBoundingClientRect();
        const inside = label.left >= bar.left - 0.5 && label.right <= bar.right + 0.5 &&
          label.top >= bar.top - 2 && label.bottom <= bar.bottom + 2;
        if (overlap(label, bar) && !(a === b && inside)) {
          out.barOverlaps.push([a.querySelector("text").textContent, lane.dataset.lane]);
        }
      }
    }
  }

  for (const s of SELECTORS) out.found[s] = document.querySelectorAll(s).length;
  for (const m of document.querySelectorAll("[data-metric]")) {
    const key = (m.closest("tr") ? m.closest("tr").dataset.deployment || "run" : "page") + " " + m.dataset.metric;
    out.metrics[key] = m.textContent.trim();
  }
  const title = document.querySelector("#timeline text.title");
  out.metrics["svg title"] = title ? title.textContent : "";
  out.ticks = Array.from(document.querySelectorAll("#timeline g.event-tick > title")).map((t) => t.textContent);
  out.height = Math.ceil(document.documentElement.scrollHeight);
  out.width = Math.ceil(document.documentElement.scrollWidth);
  out.resources = performance.getEntriesByType("resource").map((e) => e.name);

  const pre = document.createElement("pre");
  pre.id = "beanswap-checks";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
