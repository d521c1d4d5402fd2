// Small SVG charts for the dashboard: no library, no build step.
// Each function redraws one <svg> (its viewBox gives the size) from plain arrays.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PAD = { l: 42, r: 10, t: 10, b: 24 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function box(svg) {
    const [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
    return { w, h, x0: PAD.l, x1: w - PAD.r, y0: h - PAD.b, y1: PAD.t };
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!isFinite(lo)) return [0, 1];
    if (lo === hi) return [lo - 0.5, hi + 0.5];
    return [lo, hi];
  }

  function fmt(v) {
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : (+v.toFixed(4)).toString();
  }

  // axes with a few ticks; returns scale functions
  function frame(svg, xs, ys, opts) {
    const b = box(svg);
    const [xl, xh] = extent(xs), [yl0, yh0] = extent(ys);
    const logY = opts && opts.logY && yl0 > 0;
    const ty = logY ? Math.log10 : (v) => v;
    const yl = ty(yl0), yh = ty(yh0 === yl0 ? yh0 + 1 : yh0);
    const sx = (v) => b.x0 + (v - xl) / (xh - xl || 1) * (b.x1 - b.x0);
    const sy = (v) => b.y0 - (ty(v) - yl) / (yh - yl || 1) * (b.y0 - b.y1);
    el("line", { class: "axis", x1: b.x0, y1: b.y0, x2: b.x1, y2: b.y0 }, svg);
    el("line", { class: "axis", x1: b.x0, y1: b.y0, x2: b.x0, y2: b.y1 }, svg);
    for (let i = 0; i <= 3; i++) {
      const yv = logY ? Math.pow(10, yl + (yh - yl) * i / 3) : yl0 + (yh0 - yl0) * i / 3;
      el("text", { x: 2, y: sy(yv) + 3 }, svg).textContent = fmt(yv);
      const xv = xl + (xh - xl) * i / 3;
      el("text", { x: sx(xv) - 8, y: b.h - 6 }, svg).textContent = fmt(xv);
    }
    if (opts && opts.xlabel) {
      el("text", { x: b.x1 - 60, y: b.y0 - 4 }, svg).textContent = opts.xlabel;
    }
    return { sx, sy };
  }

  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

  function path(points, sx, sy) {
    let d = "";
    for (let i = 0; i < points.length; i++) {
      d += (i ? "L" : "M") + sx(points[i][0]).toFixed(1) + "," + sy(points[i][1]).toFixed(1);
    }
    return d;
  }

  // metric per ended trial (dots) and the best so far (a step line)
  function history(svg, values, maximize) {
    clear(svg);
    if (!values.length) return;
    const xs = values.map((_, i) => i + 1);
    const s = frame(svg, xs, values, { xlabel: "trials ended" });
    const best = [];
    for (let i = 0; i < values.length; i++) {
      const prev = best.length ? best[best.length - 1][1] : values[i];
      best.push([i + 1, maximize ? Math.max(prev, values[i]) : Math.min(prev, values[i])]);
    }
    // drawing 100k dots as SVG nodes would be slow: thin them to ~2,000
    const step = Math.max(1, Math.floor(values.length / 2000));
    for (let i = 0; i < values.length; i += step) {
      el("circle", { class: "dot", cx: s.sx(i + 1), cy: s.sy(values[i]), r: 2,
        "data-value": values[i] }, svg);
    }
    el("path", { class: "best", d: path(best, s.sx, s.sy), "data-last": best[best.length - 1][1],
      "data-points": best.length }, svg);
  }

  // one trial's intermediate metrics
  function curve(svg, trialId, points, logY) {
    clear(svg);
    if (!points.length) {
      el("text", { x: 150, y: 110 }, svg).textContent = "no intermediate metrics yet";
      return;
    }
    const s = frame(svg, points.map((p) => p[0]), points.map((p) => p[1]),
      { xlabel: "step", logY });
    el("path", { class: "line curve", d: path(points, s.sx, s.sy), "data-trial": trialId,
      "data-points": points.length }, svg);
  }

  // two objectives; `front` is a Set of the non-dominated trial ids
  function pareto(svg, rows, names, front, onClick) {
    clear(svg);
    if (!rows.length) return;
    const s = frame(svg, rows.map((r) => r.x), rows.map((r) => r.y), { xlabel: names[0] });
    el("text", { x: PAD.l + 4, y: PAD.t + 8 }, svg).textContent = names[1];
    const frontRows = rows.filter((r) => front.has(r.id)).sort((a, b) => a.x - b.x);
    el("path", { class: "best", d: path(frontRows.map((r) => [r.x, r.y]), s.sx, s.sy) }, svg);
    for (const r of rows) {
      const c = el("circle", { class: front.has(r.id) ? "front" : "dominated",
        cx: s.sx(r.x), cy: s.sy(r.y), r: front.has(r.id) ? 4 : 3, "data-trial": r.id }, svg);
      el("title", {}, c).textContent = `trial ${r.id}: ${names[0]}=${fmt(r.x)}, ${names[1]}=${fmt(r.y)}`;
      c.addEventListener("click", () => onClick(r.id));
    }
  }

  // indices of the points no other point dominates (every coordinate: larger is better)
  function firstFront(points) {
    const order = points.map((_, i) => i).sort((a, b) => {
      for (let k = 0; k < points[a].length; k++) {
        if (points[a][k] !== points[b][k]) return points[b][k] - points[a][k];
      }
      return 0;
    });
    const front = [];
    for (const i of order) {
      const p = points[i];
      const dominated = front.some((j) => {
        const q = points[j];
        let strictly = false;
        for (let k = 0; k < p.length; k++) {
          if (q[k] < p[k]) return false;
          if (q[k] > p[k]) strictly = true;
        }
        return strictly;
      });
      if (!dominated) front.push(i);
    }
    return front;
  }

  return { history, curve, pareto, firstFront, fmt, frame, path };
})();
