// One-shot views: what a supernet strategy reported each epoch (``ctx.progress``): its
// numbers over the epochs, and the architecture weights of every choice over time
// (``values.probs``: label -> choice -> weight). Plain SVG; marks carry data-* attributes.
"use strict";

const OneShot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  // bookkeeping fields of a report, not quantities to plot
  const NOT_PLOTTED = new Set(["epoch", "epochs", "steps", "evaluated"]);

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
  const stepOf = (entry, i) => (typeof entry[1] === "number" ? entry[1] : i);

  // the numbers a report carries, in the order they first appear
  function numericKeys(entries) {
    const keys = [];
    for (const [, , values] of entries) {
      for (const [k, v] of Object.entries(values || {})) {
        if (typeof v === "number" && !NOT_PLOTTED.has(k) && !keys.includes(k)) keys.push(k);
      }
    }
    return keys;
  }

  function withProbs(entries) {
    return entries.filter((e) => e[2] && e[2].probs && typeof e[2].probs === "object");
  }

  function labels(entries) {
    const out = [];
    for (const [, , v] of withProbs(entries)) for (const l of Object.keys(v.probs)) if (!out.includes(l)) out.push(l);
    return out;
  }

  function lines(svg, series, xlabel) {
    clear(svg);
    const all = series.flatMap((s) => s.points);
    if (!all.length) { el("text", { x: 140, y: 110 }, svg).textContent = "nothing reported yet"; return; }
    const s = Charts.frame(svg, all.map((p) => p[0]), all.map((p) => p[1]), { xlabel });
    series.forEach((c, i) => {
      el("path", { class: `line cmp-${i % 4}`, d: Charts.path(c.points, s.sx, s.sy),
        "data-series": c.name, "data-points": c.points.length,
        "data-values": JSON.stringify(c.points.map((p) => p[1])) }, svg);
      el("text", { class: `cmp-${i % 4}`, x: 50 + (i % 6) * 62, y: 12 + 11 * Math.floor(i / 6) }, svg)
        .textContent = c.name.length > 10 ? c.name.slice(0, 9) + "…" : c.name;
    });
  }

  // one line per chosen number over the reports that have it
  function epochs(svg, entries, key) {
    const points = [];
    entries.forEach((e, i) => { const v = (e[2] || {})[key]; if (typeof v === "number") points.push([stepOf(e, i), v]); });
    lines(svg, key ? [{ name: key, points }] : [], "epoch");
  }

  // one line per choice of `label`: its weight in each report
  function probs(svg, entries, label) {
    const rows = withProbs(entries);
    const choices = [];
    for (const [, , v] of rows) for (const c of Object.keys(v.probs[label] || {})) if (!choices.includes(c)) choices.push(c);
    lines(svg, choices.map((c) => ({ name: c, points: rows.flatMap((e, i) => {
      const w = (e[2].probs[label] || {})[c];
      return typeof w === "number" ? [[stepOf(e, i), w]] : [];
    }) })), "epoch");
  }

  // "epoch 3/8 · train_loss 0.41 · val_accuracy 0.82": the last report
  function summary(entries) {
    if (!entries.length) return "";
    const v = entries[entries.length - 1][2] || {};
    const head = [v.strategy, v.phase].filter(Boolean).join(" ");
    const at = typeof v.epoch === "number" ? `epoch ${v.epoch + 1}${v.epochs ? "/" + v.epochs : ""}` : "";
    const nums = Object.entries(v).filter(([k, x]) => typeof x === "number" && !NOT_PLOTTED.has(k))
      .map(([k, x]) => `${k} ${Charts.fmt(x)}`);
    return [head, at, ...nums].filter(Boolean).join(" · ");
  }

  return { numericKeys, labels, epochs, probs, summary };
})();
