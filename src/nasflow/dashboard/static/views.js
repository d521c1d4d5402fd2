// The analysis views of one experiment: timeline, parallel coordinates, scatter, label
// importance, compare. Plain SVG, like charts.js; every mark carries data-* attributes
// with the values it stands for (the browser tests read them back against the store).
"use strict";

const Views = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const MAX_MARKS = 2000; // more SVG nodes than this make a redraw slow: thin evenly

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
  function size(svg) {
    const [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
    return { w, h };
  }
  function note(svg, text) {
    const { w, h } = size(svg);
    el("text", { x: w / 2 - 80, y: h / 2 }, svg).textContent = text;
  }
  // every k-th item, keeping `keep` (the best trial) so it is always drawn
  function thin(items, keep) {
    if (items.length <= MAX_MARKS) return items;
    const step = items.length / MAX_MARKS;
    const out = [];
    for (let i = 0; i < MAX_MARKS; i++) out.push(items[Math.floor(i * step)]);
    if (keep && !out.includes(keep)) out.push(keep);
    return out;
  }
  const isNum = (v) => typeof v === "number" && isFinite(v);
  // Math.max(...xs) overflows the call stack on 100k values: loop instead
  function maxOf(xs) { let m = -Infinity; for (const x of xs) if (x > m) m = x; return m; }
  function minOf(xs) { let m = Infinity; for (const x of xs) if (x < m) m = x; return m; }
  const key = (v) => JSON.stringify(v);

  // A scale for one label's values: numbers linear, anything else by sorted category.
  function axisScale(values, lo, hi) {
    if (values.length && values.every(isNum)) {
      let a = Infinity, b = -Infinity;
      for (const v of values) { if (v < a) a = v; if (v > b) b = v; }
      if (a === b) { a -= 0.5; b += 0.5; }
      return { pos: (v) => lo + (v - a) / (b - a) * (hi - lo), ticks: [[a, Charts.fmt(a)], [b, Charts.fmt(b)]] };
    }
    const cats = [...new Set(values.map(key))].sort();
    const at = new Map(cats.map((c, i) => [c, cats.length === 1 ? (lo + hi) / 2 : lo + i / (cats.length - 1) * (hi - lo)]));
    return { pos: (v) => at.get(key(v)), ticks: cats.map((c) => [JSON.parse(c), c]) };
  }

  // trials per lane over time; lanes are the slots trials ran in (a lane is free again
  // when its trial ended): the store does not name workers, and slots are what a
  // timeline of utilisation shows
  function timeline(svg, trials) {
    clear(svg);
    const ran = trials.filter((t) => t.started_at).sort((a, b) => a.started_at - b.started_at || a.id - b.id);
    if (!ran.length) { note(svg, "no trial started yet"); return; }
    const running = ran.some((t) => !t.ended_at);
    const latest = maxOf(ran.map((t) => t.ended_at || t.started_at));
    const now = running ? Math.max(latest, Date.now() / 1000) : latest;
    const t0 = ran[0].started_at;
    const t1 = maxOf(ran.map((t) => t.ended_at || now));
    const laneEnd = [];
    const placed = ran.map((t) => {
      const end = t.ended_at || now;
      let lane = laneEnd.findIndex((e) => e <= t.started_at + 1e-6);
      if (lane < 0) { lane = laneEnd.length; laneEnd.push(end); } else laneEnd[lane] = end;
      return { t, lane, end };
    });
    const { w, h } = size(svg);
    const lanes = laneEnd.length, x0 = 42, x1 = w - 8, y0 = 6, y1 = h - 20;
    const lh = (y1 - y0) / lanes;
    const sx = (v) => x0 + (v - t0) / ((t1 - t0) || 1) * (x1 - x0);
    for (let i = 0; i < lanes; i++) {
      el("text", { x: 2, y: y0 + lh * i + lh / 2 + 3 }, svg).textContent = `slot ${i + 1}`;
    }
    el("text", { x: x0, y: h - 6 }, svg).textContent = "0s";
    el("text", { x: x1 - 40, y: h - 6 }, svg).textContent = `${Charts.fmt(t1 - t0)}s`;
    for (const p of thin(placed)) {
      const r = el("rect", { class: `span st-${p.t.state}`, x: sx(p.t.started_at).toFixed(1),
        y: (y0 + lh * p.lane + 1).toFixed(1), height: Math.max(2, lh - 2).toFixed(1),
        width: Math.max(1, sx(p.end) - sx(p.t.started_at)).toFixed(1),
        "data-trial": p.t.id, "data-lane": p.lane, "data-start": p.t.started_at,
        "data-end": p.t.ended_at || "" }, svg);
      el("title", {}, r).textContent = `trial ${p.t.id} ${p.t.state} (slot ${p.lane + 1})`;
    }
    svg.dataset.lanes = lanes;
  }

  // one polyline per succeeded trial across an axis per label and the objective
  function parallel(svg, rows, labels, objective, maximize, onClick) {
    clear(svg);
    if (!rows.length) { note(svg, "no succeeded trial yet"); return; }
    const { w, h } = size(svg);
    const axes = [...labels, objective];
    const y0 = h - 22, y1 = 16;
    const xs = axes.map((_, i) => 30 + i * (w - 60) / Math.max(1, axes.length - 1));
    const value = (r, i) => (i < labels.length ? r.sample[labels[i]] : r.metric);
    const scales = axes.map((_, i) => axisScale(rows.map((r) => value(r, i)).filter((v) => v !== undefined), y0, y1));
    const ms = rows.map((r) => r.metric);
    const lo = minOf(ms), hi = maxOf(ms);
    const best = rows.reduce((a, b) => ((maximize ? b.metric > a.metric : b.metric < a.metric) ? b : a));
    for (const r of thin(rows, best)) {
      const pts = axes.map((_, i) => {
        const y = scales[i].pos(value(r, i));
        return y === undefined ? null : `${xs[i].toFixed(1)},${y.toFixed(1)}`;
      }).filter((p) => p !== null);
      const q = hi > lo ? (r.metric - lo) / (hi - lo) : 1;
      const good = maximize ? q : 1 - q;
      const line = el("polyline", { class: "pc", points: pts.join(" "),
        stroke: `hsl(${Math.round(220 - 200 * good)},70%,45%)`, "data-trial": r.id,
        "data-values": JSON.stringify(axes.map((_, i) => value(r, i) ?? null)) }, svg);
      el("title", {}, line).textContent = `trial ${r.id}`;
      line.addEventListener("click", () => onClick(r.id));
    }
    axes.forEach((name, i) => {
      el("line", { class: "axis", x1: xs[i], x2: xs[i], y1: y1, y2: y0 }, svg);
      const t = el("text", { class: "axis-name", x: xs[i] - 20, y: h - 6, "data-axis": name }, svg);
      t.textContent = name.length > 14 ? name.slice(0, 13) + "…" : name;
      for (const [v, text] of scales[i].ticks.slice(0, 12)) {
        el("text", { x: xs[i] + 3, y: scales[i].pos(v) + 3 }, svg).textContent = String(text).slice(0, 10);
      }
    });
  }

  // the objective against one label
  function scatter(svg, rows, label, objective, onClick) {
    clear(svg);
    const pts = rows.filter((r) => r.sample[label] !== undefined);
    if (!pts.length) { note(svg, "no succeeded trial with this label"); return; }
    const { w, h } = size(svg);
    const x = axisScale(pts.map((r) => r.sample[label]), 46, w - 10);
    const ys = pts.map((r) => r.metric);
    let lo = minOf(ys), hi = maxOf(ys);
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    const y0 = h - 24, y1 = 10;
    const sy = (v) => y0 - (v - lo) / (hi - lo) * (y0 - y1);
    el("line", { class: "axis", x1: 46, y1: y0, x2: w - 10, y2: y0 }, svg);
    el("line", { class: "axis", x1: 46, y1: y0, x2: 46, y2: y1 }, svg);
    for (const [v, text] of x.ticks.slice(0, 12)) {
      el("text", { x: x.pos(v) - 8, y: h - 8 }, svg).textContent = String(text).slice(0, 10);
    }
    el("text", { x: 2, y: sy(hi) + 3 }, svg).textContent = Charts.fmt(hi);
    el("text", { x: 2, y: sy(lo) + 3 }, svg).textContent = Charts.fmt(lo);
    el("text", { x: 50, y: y1 + 8 }, svg).textContent = objective;
    for (const r of thin(pts)) {
      const c = el("circle", { class: "dot", cx: x.pos(r.sample[label]).toFixed(1),
        cy: sy(r.metric).toFixed(1), r: 3, "data-trial": r.id,
        "data-x": JSON.stringify(r.sample[label]), "data-y": r.metric }, svg);
      el("title", {}, c).textContent = `trial ${r.id}: ${label}=${JSON.stringify(r.sample[label])}, ${objective}=${Charts.fmt(r.metric)}`;
      c.addEventListener("click", () => onClick(r.id));
    }
  }

  // eta²: the share of the metric's variance each label explains (numbers binned in
  // quintiles), as `nasflow plot ID importance` computes it
  function bins(values) {
    const nums = values.filter((v) => isNum(v) && typeof v !== "boolean");
    if (nums.length === values.length && new Set(nums).size > 5) {
      const ordered = nums.slice().sort((a, b) => a - b);
      const edges = [1, 2, 3, 4].map((q) => ordered[Math.min(ordered.length - 1, Math.floor(q * ordered.length / 5))]);
      return nums.map((v) => String(edges.filter((e) => v >= e).length));
    }
    return values.map(key);
  }
  function importanceScores(rows, labels) {
    if (rows.length < 2) return [];
    const ms = rows.map((r) => r.metric);
    const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
    const total = ms.reduce((a, m) => a + (m - mean) ** 2, 0);
    const out = labels.map((label) => {
      const groups = new Map();
      bins(rows.map((r) => r.sample[label] ?? null)).forEach((k, i) => {
        const g = groups.get(k) || [];
        g.push(ms[i]);
        groups.set(k, g);
      });
      let between = 0;
      for (const g of groups.values()) {
        const gm = g.reduce((a, b) => a + b, 0) / g.length;
        between += g.length * (gm - mean) ** 2;
      }
      return [label, total === 0 ? 0 : between / total];
    });
    return out.sort((a, b) => b[1] - a[1]);
  }
  function importance(svg, rows, labels) {
    clear(svg);
    const scores = importanceScores(rows, labels);
    if (!scores.length) { note(svg, "needs two succeeded trials"); return; }
    const { w } = size(svg);
    const bh = 20, x0 = 130;
    svg.setAttribute("viewBox", `0 0 ${w} ${Math.max(60, scores.length * bh + 10)}`);
    scores.forEach(([label, v], i) => {
      const g = el("g", { class: "imp", "data-label": label, "data-value": v }, svg);
      el("text", { x: 2, y: 5 + i * bh + 13 }, g).textContent = label.length > 20 ? label.slice(0, 19) + "…" : label;
      el("rect", { x: x0, y: 5 + i * bh + 3, height: bh - 6, width: Math.max(1, v * (w - x0 - 50)) }, g);
      el("text", { x: x0 + v * (w - x0 - 50) + 4, y: 5 + i * bh + 13 }, g).textContent = v.toFixed(3);
    });
  }

  // the chosen trials as columns, one row per property; curves overlaid below
  function compare(table, trials, names, labels, objValue) {
    const fmtDur = (t) => (t.ended_at && t.started_at ? `${(t.ended_at - t.started_at).toFixed(2)}s` : "–");
    const rows = [
      ["state", (t) => t.state],
      ...names.map((n) => [n, (t) => { const v = objValue(t, n); return v === null || v === undefined ? "–" : Charts.fmt(v); }]),
      ...labels.map((l) => [l, (t) => JSON.stringify((t.sample || {})[l])]),
      ["duration", fmtDur],
      ["attempt", (t) => String(t.attempt)],
      ["error", (t) => (t.error ? `${t.error.type}: ${t.error.message}` : "")],
    ];
    let html = "<thead><tr><th></th>" + trials.map((t) => `<th data-trial="${t.id}">#${t.id}</th>`).join("") + "</tr></thead><tbody>";
    for (const [name, get] of rows) {
      const cells = trials.map((t) => get(t));
      const differ = new Set(cells).size > 1;
      html += `<tr data-row="${esc(name)}"${differ ? ' class="differ"' : ""}><th>${esc(name)}</th>` +
        trials.map((t, i) => `<td data-trial="${t.id}">${esc(cells[i])}</td>`).join("") + "</tr>";
    }
    table.innerHTML = html + "</tbody>";
  }

  function overlay(svg, curves) {
    clear(svg);
    const all = curves.flatMap((c) => c.points);
    if (!all.length) { note(svg, "no intermediate metrics"); return; }
    const s = Charts.frame(svg, all.map((p) => p[0]), all.map((p) => p[1]), { xlabel: "step" });
    curves.forEach((c, i) => {
      if (!c.points.length) return;
      el("path", { class: `line cmp-${i}`, d: Charts.path(c.points, s.sx, s.sy),
        "data-trial": c.id, "data-points": c.points.length }, svg);
      el("text", { class: `cmp-${i}`, x: 50 + i * 60, y: 12 }, svg).textContent = `#${c.id}`;
    });
  }

  return { timeline, parallel, scatter, importance, importanceScores, compare, overlay };
})();
