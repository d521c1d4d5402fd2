// A trial's architecture: its frozen model's modules (parameters, FLOPs) as an indented
// table, and every cell as a graph (its inputs, its nodes, an arc per op). Uses app.js's
// esc (called after app.js is loaded).
"use strict";

const Arch = (() => {
  function count(n) {
    if (n === null || n === undefined) return "–";
    const a = Math.abs(n);
    if (a >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
    if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
    if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
    return String(n);
  }

  // states 0..inputs-1 are the cell's inputs, then its nodes; "out" concatenates outputs
  function cellSvg(c) {
    const states = c.inputs + c.nodes.length, gap = 110, r = 14;
    const x = (i) => 30 + i * gap;
    let span = 1;
    c.nodes.forEach((edges, k) => { for (const e of edges) span = Math.max(span, c.inputs + k - e.from); });
    const w = x(states) + 30, base = 30 + 26 * span, h = base + 30 + 12 * c.outputs.length;
    const y = base;
    let s = `<svg class="cell-graph" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}">`;
    c.nodes.forEach((edges, k) => {
      const to = c.inputs + k;
      edges.forEach((e, i) => {
        const x0 = x(e.from), x1 = x(to), lift = 22 * (to - e.from) + 10 * i;
        const mx = (x0 + x1) / 2, my = y - lift;
        s += `<path class="cell-edge" data-from="${e.from}" data-to="${to}" data-op="${esc(e.op)}" ` +
          `d="M${x0},${y - r} Q${mx},${my - lift * 0.3} ${x1},${y - r}"/>`;
        s += `<text class="cell-op" x="${mx}" y="${my + 4}" text-anchor="middle">${esc(e.op)}</text>`;
      });
    });
    // the outputs, concatenated: dashed arcs below the row
    c.outputs.forEach((o, i) => {
      const x0 = x(o), x1 = x(states), dip = 14 + 12 * i;
      s += `<path class="cell-out" data-from="${o}" d="M${x0},${y + r} Q${(x0 + x1) / 2},${y + r + 2 * dip} ${x1},${y + r}"/>`;
    });
    for (let i = 0; i < states; i++) {
      const name = i < c.inputs ? `in ${i}` : `node ${i}`;
      s += `<g class="cell-node${i < c.inputs ? " cell-input" : ""}" data-state="${i}">` +
        `<circle cx="${x(i)}" cy="${y}" r="${r}"/><text x="${x(i)}" y="${y + r + 12}" text-anchor="middle">${name}</text></g>`;
    }
    s += `<g class="cell-node cell-output"><circle cx="${x(states)}" cy="${y}" r="${r}"/>` +
      `<text x="${x(states)}" y="${y + r + 12}" text-anchor="middle">out</text></g>`;
    return s + "</svg>";
  }

  function render(box, a) {
    let html = `<table class="grid arch"><thead><tr><th>module</th><th>type</th>` +
      `<th class="num">params</th><th class="num">FLOPs</th></tr></thead><tbody>`;
    for (const m of a.modules) {
      const short = m.name ? m.name.split(".").pop() : "(model)";
      html += `<tr class="arch-row" data-module="${esc(m.name)}" data-params="${m.params}"` +
        ` data-flops="${m.flops === null ? "" : m.flops}">` +
        `<td style="padding-left:${0.4 + 1.1 * m.depth}rem" title="${esc(m.name)}">${esc(short)}</td>` +
        `<td>${esc(m.type)}</td><td class="num">${count(m.params)}</td><td class="num">${count(m.flops)}</td></tr>`;
      if (m.cell) html += `<tr class="arch-cell" data-module="${esc(m.name)}"><td colspan="4">${cellSvg(m.cell)}</td></tr>`;
    }
    html += "</tbody></table>";
    if (a.truncated) html += `<p>only the first ${a.modules.length} modules are listed</p>`;
    box.innerHTML = html;
  }

  function summary(a) {
    const flops = a.flops === null ? (a.flops_error ? `FLOPs: ${a.flops_error}` :
      "FLOPs: give an input shape") : `${count(a.flops)} FLOPs on ${JSON.stringify(a.input)}`;
    return `${a.model} · ${count(a.params)} parameters · ${flops}`;
  }

  return { render, summary, count };
})();
