// The trials table of one experiment: columns, filters (state, a label's value, a metric
// range, text), sorting and the virtualised body (only the rows in view are in the DOM).
// Uses app.js's globals (view, objValue, esc, badge, fmtNum, fmtDur); loaded before it.
"use strict";

const ROW_H = 26;          // px; the trials table renders only the rows in view
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED", "EARLY_STOPPED", "TIMEOUT"]);
const TRIAL_STATES = ["WAITING", "RUNNING", ...TERMINAL];
const labelKey = (v) => JSON.stringify(v === undefined ? null : v);

function columns() {
  return [
    { key: "cmp", title: "⇄", get: (t) => (view.compare.includes(t.id) ? 0 : 1),
      html: (t) => `<input type="checkbox" class="cmp" data-trial="${t.id}" title="compare"${view.compare.includes(t.id) ? " checked" : ""}>` },
    { key: "id", title: "trial", get: (t) => t.id },
    { key: "state", title: "state", get: (t) => t.state, html: (t) => badge(t.state) },
    ...view.names.map((n) => ({ key: "m:" + n, title: n, get: (t) => objValue(t, n),
      html: (t) => fmtNum(objValue(t, n)) })),
    ...view.labels.map((l) => ({ key: "l:" + l, title: l,
      get: (t) => (t.sample || {})[l], html: (t) => esc(JSON.stringify((t.sample || {})[l])) })),
    { key: "duration", title: "duration",
      get: (t) => (t.ended_at && t.started_at ? t.ended_at - t.started_at : null),
      html: (t) => fmtDur(t.ended_at && t.started_at ? t.ended_at - t.started_at : null) },
  ];
}

function renderHead() {
  const head = $("trials-head");
  head.innerHTML = "";
  for (const c of columns()) {
    const d = document.createElement("div");
    d.textContent = c.title + (view.sortKey === c.key ? (view.sortDir > 0 ? " ▲" : " ▼") : "");
    d.dataset.key = c.key;
    d.addEventListener("click", () => {
      view.sortDir = view.sortKey === c.key ? -view.sortDir : 1;
      view.sortKey = c.key;
      renderHead();
      renderTable(true);
    });
    head.appendChild(d);
  }
  const sel = $("state-filter");
  if (sel.options.length === 1) {
    for (const s of TRIAL_STATES) sel.add(new Option(s, s));
  }
  fillFilters();
}

// --- filters -------------------------------------------------------------------------------

function refill(sel, options, first) {
  // keep the user's choice when it is still offered (a re-read of the experiment)
  const wanted = sel.value;
  sel.innerHTML = "";
  if (first) sel.add(new Option(first, ""));
  for (const [value, text] of options) sel.add(new Option(text, value));
  if ([...sel.options].some((o) => o.value === wanted)) sel.value = wanted;
}

function fillFilters() {
  refill($("label-filter"), view.labels.map((l) => [l, l]), "any label");
  refill($("metric-filter"), view.names.map((n) => [n, n]), null);
  fillLabelValues();
}

// the values the chosen label takes among the trials, numbers in numeric order
function fillLabelValues() {
  const label = $("label-filter").value, sel = $("label-value");
  sel.hidden = !label;
  if (!label) { sel.innerHTML = ""; return; }
  const seen = new Map();
  for (const t of view.trials.values()) {
    const v = (t.sample || {})[label];
    const k = labelKey(v);
    if (!seen.has(k)) seen.set(k, v);
  }
  const values = [...seen.entries()].sort(([ka, a], [kb, b]) =>
    (typeof a === "number" && typeof b === "number" ? a - b : ka < kb ? -1 : ka > kb ? 1 : 0));
  const keys = values.map(([k]) => k);
  // the same values as offered: leave the menu alone (rebuilding it while it opens would
  // drop the option being picked)
  if (keys.join("\n") === [...sel.options].slice(1).map((o) => o.value).join("\n")) return;
  refill(sel, keys.map((k) => [k, k]), "any value");
}

function bound(id) {
  const text = $(id).value.trim();
  const v = text === "" ? NaN : Number(text);
  return Number.isFinite(v) ? v : null;
}

// one predicate for every filter set in the toolbar (null: none is)
function tableFilter() {
  const state = $("state-filter").value;
  const q = $("search").value.trim().toLowerCase();
  const label = $("label-filter").value, value = label ? $("label-value").value : "";
  const objective = $("metric-filter").value || view.names[0];
  const lo = bound("metric-min"), hi = bound("metric-max");
  if (!state && !q && !value && lo === null && hi === null) return null;
  return (t) => {
    if (state && t.state !== state) return false;
    if (value && labelKey((t.sample || {})[label]) !== value) return false;
    if (lo !== null || hi !== null) {
      const m = objValue(t, objective);
      if (typeof m !== "number" || (lo !== null && m < lo) || (hi !== null && m > hi)) return false;
    }
    return !q || `#${t.id} ${JSON.stringify(t.sample)} ${t.state} ${t.error ? t.error.message : ""}`
      .toLowerCase().includes(q);
  };
}

function filtered() {
  const keep = tableFilter();
  if (!keep && view.sortKey === "id" && view.sortDir === 1) {
    // the default order: trials arrive by id (the store's order), so there is usually
    // nothing to sort (a 100,000-trial page's first render)
    const all = [...view.trials.values()];
    let sorted = true;
    for (let i = 1; i < all.length && sorted; i++) sorted = all[i - 1].id < all[i].id;
    return sorted ? all : all.sort((a, b) => a.id - b.id);
  }
  const col = columns().find((c) => c.key === view.sortKey) || columns()[0];
  // decorate, sort, undecorate: each key is read once, not twice per comparison (100k
  // rows sort in a fraction of the time)
  const keyed = [];
  for (const t of view.trials.values()) {
    if (keep && !keep(t)) continue;
    let k = col.get(t);
    if (k !== null && k !== undefined && typeof k === "object") k = JSON.stringify(k);
    keyed.push({ k, id: t.id, t });
  }
  const dir = view.sortDir;
  keyed.sort((a, b) => {
    const x = a.k, y = b.k;
    if (x === y) return a.id - b.id;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  return keyed.map((e) => e.t);
}

function renderTable(resort) {
  if (resort) view.order = filtered();
  const scroll = $("trials-scroll"), body = $("trials-body");
  body.style.height = `${view.order.length * ROW_H}px`;
  const first = Math.max(0, Math.floor(scroll.scrollTop / ROW_H) - 5);
  const last = Math.min(view.order.length, first + Math.ceil(scroll.clientHeight / ROW_H) + 10);
  const cols = columns();
  let html = "";
  for (let i = first; i < last; i++) {
    const t = view.order[i];
    html += `<div class="trow${t.id === view.selected ? " selected" : ""}" data-trial="${t.id}"` +
      ` style="top:${i * ROW_H}px">` +
      cols.map((c) => `<div class="cell-${c.key.replace(/[^a-z0-9]/gi, "_")}">${c.html ? c.html(t) : esc(c.get(t))}</div>`).join("") +
      "</div>";
  }
  body.innerHTML = html;
  $("shown").textContent = `${view.order.length} of ${view.trials.size}`;
}

// called once by app.js (which defines `$`) before it shows anything
function initTable() {
  $("trials-scroll").addEventListener("scroll", () => renderTable(false));
  for (const id of ["state-filter", "label-value", "metric-filter"]) {
    $(id).addEventListener("change", () => renderTable(true));
  }
  $("label-filter").addEventListener("change", () => { fillLabelValues(); renderTable(true); });
  // new values that pushed trials brought: offered when the menu is opened
  $("label-value").addEventListener("focus", fillLabelValues);
  for (const id of ["search", "metric-min", "metric-max"]) {
    $(id).addEventListener("input", () => renderTable(true));
  }
}
