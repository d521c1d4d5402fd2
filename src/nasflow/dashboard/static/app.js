// The nasflow dashboard page: REST for what is stored, a WebSocket for what happens now.
// Nothing here polls: a running experiment's events are pushed (see docs/dashboard.md).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("nasflow-token") || "";
if (params.get("token")) sessionStorage.setItem("nasflow-token", params.get("token"));

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;",
  ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// --- talking to the server -------------------------------------------------------------

function showError(text) {
  const s = $("status");
  s.textContent = text;
  s.hidden = !text;
}

async function api(path, opts) {
  const res = await fetch(path, { ...(opts || {}),
    headers: { "X-Nasflow-Token": token, "Content-Type": "application/json" } });
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const why = (body && body.error) || res.statusText;
    throw new Error(`${res.status}: ${why}`);
  }
  return body;
}

const live = {
  ws: null,
  wanted: new Set(),
  settled: new Set(),   // experiments found not running when subscribed
  handlers: [],
  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      $("conn").textContent = "live";
      $("conn").classList.add("live");
      for (const id of this.wanted) ws.send(JSON.stringify({ subscribe: id }));
    };
    ws.onclose = (ev) => {
      $("conn").textContent = "offline";
      $("conn").classList.remove("live");
      if (ev.code === 4401 || ev.code === 4403) {
        showError(ev.reason || "the server refused this page's token");
        return;
      }
      // the server went away (restart, sleep): reconnect once, after a pause
      setTimeout(() => this.connect(), 2000);
    };
    ws.onmessage = (ev) => {
      const frame = JSON.parse(ev.data);
      for (const h of this.handlers) h(frame);
    };
  },
  subscribe(id) {
    this.wanted.add(id);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ subscribe: id }));
    }
  },
};

// --- the experiments list --------------------------------------------------------------

function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : "–"; }
function fmtDur(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
}
function fmtNum(v) { return v === null || v === undefined ? "–" : Charts.fmt(v); }
function badge(state) { return `<span class="st st-${esc(state)}">${esc(state)}</span>`; }

let listTimer = null;
function refreshListSoon() {
  // many trials ending together: one re-read
  if (listTimer) return;
  listTimer = setTimeout(() => { listTimer = null; if (route().view === "list") showList(); }, 250);
}

async function showList() {
  const { experiments } = await api("/api/experiments");
  const body = $("experiments").querySelector("tbody");
  body.innerHTML = "";
  $("no-experiments").hidden = experiments.length > 0;
  for (const e of experiments.slice().reverse()) {
    const total = e.total_trials, max = e.max_trials;
    const pct = max ? Math.min(100, 100 * total / max) : 0;
    const tr = document.createElement("tr");
    tr.className = "exp-row";
    tr.dataset.id = e.id;
    tr.innerHTML = `<td><b>${esc(e.name)}</b><br><code>${esc(e.id)}</code></td>
      <td class="state">${badge(e.state)}</td>
      <td class="progress"><span class="bar"><span style="width:${pct}%"></span></span>${total}${max ? " / " + max : ""}</td>
      <td>${fmtNum(e.best)}${e.best_trial !== null ? ` <small>(#${e.best_trial})</small>` : ""}</td>
      <td>${fmtTime(e.started_at)}</td><td>${fmtDur(e.duration)}</td>`;
    tr.addEventListener("click", () => { location.hash = `#/experiments/${e.id}`; });
    body.appendChild(tr);
    if (e.state === "RUNNING") live.subscribe(e.id);
  }
}

// --- one experiment ----------------------------------------------------------------------

const view = {
  id: null, exp: null, trials: new Map(), order: [], names: [], labels: [],
  sortKey: "id", sortDir: 1, selected: null, curve: [],
  added: [],     // trials pushed since the table was last sorted
  sortedAt: 0,
  compare: [],   // ids of the trials compared side by side (2-4), in the order ticked
  chartsAt: 0,
  chartsGap: 300,  // ms between chart redraws while events stream in (see drawCharts)
  progress: [],  // the strategy's progress reports, [time, step, values] (one-shot epochs)
};
const MAX_COMPARE = 4;

function objectiveNames() { return Object.keys(view.exp.objective || { default: "maximize" }); }
function maximize(name) { return (view.exp.objective || {})[name || view.names[0]] !== "minimize"; }

function objValue(t, name) {
  if (t.metrics && typeof t.metrics === "object" && name in t.metrics) return t.metrics[name];
  return view.names.length === 1 ? t.metric : null;
}

// the compact form of /trials (one array per trial, samples dictionary-coded): 100k
// trials parse fast; a text met again (the same sample, the same metric) is parsed once
function fromRows({ columns, rows, dictionaries }) {
  const at = Object.fromEntries(columns.map((c, i) => [c, i]));
  const seen = new Map();
  const parse = (text) => {
    if (text === null || text === undefined) return null;
    let v = seen.get(text);
    if (v === undefined) { v = JSON.parse(text); seen.set(text, v); }
    return v;
  };
  const samples = ((dictionaries || {}).sample || []).map(parse);
  const out = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i], s = r[at.sample];
    out[i] = { id: r[at.id], state: r[at.state], metric: r[at.metric],
      metrics: parse(r[at.metrics]), sample: (typeof s === "number" ? samples[s] : parse(s)) || {},
      submitted_at: r[at.submitted_at], started_at: r[at.started_at], ended_at: r[at.ended_at],
      attempt: r[at.attempt],
      error: r[at.error_type] ? { type: r[at.error_type], message: r[at.error_message] || "" } : null };
  }
  return out;
}

async function showExperiment(id) {
  if (view.id !== id) view.compare = [];
  view.id = id;
  view.trials = new Map();
  view.added = [];
  view.selected = null;
  $("detail").hidden = true;
  live.subscribe(id);
  const [exp, table, reports] = await Promise.all([
    api(`/api/experiments/${encodeURIComponent(id)}`),
    api(`/api/experiments/${encodeURIComponent(id)}/trials?format=rows`),
    api(`/api/experiments/${encodeURIComponent(id)}/progress`)]);
  const trials = fromRows(table);
  view.progress = reports.progress;
  view.exp = exp;
  view.names = objectiveNames();
  view.labels = exp.labels || [...new Set(trials.flatMap((t) => Object.keys(t.sample || {})))];
  for (const t of trials) view.trials.set(t.id, t);
  $("exp-title").textContent = exp.name;
  $("crumb").textContent = exp.id;
  const sel = $("scatter-label"), wanted = sel.value;
  sel.innerHTML = view.labels.map((l) => `<option>${esc(l)}</option>`).join("");
  if (view.labels.includes(wanted)) sel.value = wanted;
  renderHead();
  setState(exp.state);
  renderTable(true);
  renderCounts();
  // the table first (it paints now), the charts in the next task; the marks are read by
  // benchmarks/dashboard_speed.py
  performance.mark("nasflow:table-rendered");
  setTimeout(() => {
    if (view.id !== id || !view.exp) return;
    drawCharts();
    renderCompare();
    performance.mark("nasflow:experiment-rendered");
  }, 0);
}

function setState(state) {
  view.exp.state = state;
  const b = $("exp-state");
  b.className = `badge st st-${state}`;
  b.textContent = state;
  $("stop").hidden = state !== "RUNNING";
  if (typeof Controls !== "undefined") Controls.sync(state);  // controls.js
}

function renderCounts() {
  const counts = {};
  for (const t of view.trials.values()) counts[t.state] = (counts[t.state] || 0) + 1;
  $("counts").innerHTML = Object.entries(counts).map(([s, n]) => `${badge(s)} ${n}`).join(" ") || "no trials yet";
}

function renderOverview() {
  const counts = {};
  for (const t of view.trials.values()) counts[t.state] = (counts[t.state] || 0) + 1;
  $("counts").innerHTML = Object.entries(counts).map(([s, n]) => `${badge(s)} ${n}`).join(" ") || "no trials yet";
  const max = (view.exp.config || {}).max_trials;
  const pct = max ? Math.min(100, 100 * view.trials.size / max) : 0;
  $("progress").innerHTML = `<span class="bar"><span style="width:${pct}%"></span></span>` +
    `${view.trials.size}${max ? " / " + max + " trials (budget)" : " trials"}`;
  const ended = [...view.trials.values()].filter((t) => t.state === "SUCCEEDED" && t.metric !== null)
    .sort((a, b) => (a.ended_at || 0) - (b.ended_at || 0) || a.id - b.id);
  const mx = maximize();
  let best = null;
  for (const t of ended) if (best === null || (mx ? t.metric > best.metric : t.metric < best.metric)) best = t;
  $("best").innerHTML = best ? `<b>${fmtNum(best.metric)}</b> ${esc(view.names[0])} (trial #${best.id})` : "no succeeded trial yet";
  Charts.history($("history"), ended.map((t) => t.metric), mx);
  renderPareto();
  renderAnalysis(ended, mx);
  renderOneShot();
}

function renderOneShot() {
  const entries = view.progress;
  $("oneshot-card").hidden = entries.length === 0;
  if (!entries.length) return;
  $("oneshot-summary").textContent = OneShot.summary(entries);
  const keys = OneShot.numericKeys(entries), labels = OneShot.labels(entries);
  const pick = (sel, options, prefer) => {
    const wanted = sel.value;
    if ([...sel.options].map((o) => o.value).join() !== options.join()) {
      sel.innerHTML = options.map((o) => `<option>${esc(o)}</option>`).join("");
    }
    sel.value = options.includes(wanted) ? wanted : (options.find(prefer) || options[0] || "");
  };
  pick($("epoch-metric"), keys, (k) => k.startsWith("val_"));
  pick($("probs-label"), labels, () => false);
  OneShot.epochs($("epochs"), entries, $("epoch-metric").value);
  OneShot.probs($("probs"), entries, $("probs-label").value);
}

function succeededRows() {
  const rows = [];
  for (const t of view.trials.values()) {
    if (t.state !== "SUCCEEDED") continue;
    const m = objValue(t, view.names[0]);
    if (typeof m === "number") rows.push({ id: t.id, sample: t.sample || {}, metric: m });
  }
  return rows.sort((a, b) => a.id - b.id);
}

function renderAnalysis(ended, mx) {
  const trials = [...view.trials.values()];
  Views.timeline($("timeline"), trials);
  const rows = succeededRows();
  Views.parallel($("parallel"), rows, view.labels, view.names[0], mx, selectTrial);
  Views.scatter($("scatter"), rows, $("scatter-label").value, view.names[0], selectTrial);
  Views.importance($("importance"), rows, view.labels);
}

async function renderCompare() {
  const ids = view.compare.filter((id) => view.trials.has(id));
  $("compare-card").hidden = ids.length === 0;
  $("compare-ids").textContent = ids.map((id) => `#${id}`).join(" ");
  if (!ids.length) return;
  Views.compare($("compare"), ids.map((id) => view.trials.get(id)), view.names, view.labels, objValue);
  const details = await Promise.all(ids.map((id) =>
    api(`/api/experiments/${encodeURIComponent(view.id)}/trials/${id}`).catch(() => null)));
  if (ids.join() !== view.compare.filter((id) => view.trials.has(id)).join()) return;  // changed meanwhile
  Views.overlay($("compare-curves"), details.filter(Boolean).map((t) => ({ id: t.id,
    points: t.intermediates.map(([st, v]) => [st, typeof v === "object" && v !== null ? v[view.names[0]] ?? Object.values(v)[0] : v]) })));
}

function toggleCompare(id, on) {
  view.compare = view.compare.filter((x) => x !== id);
  if (on) {
    view.compare.push(id);
    if (view.compare.length > MAX_COMPARE) view.compare.shift();  // the oldest goes
  }
  renderTable(false);
  renderCompare();
}

function paretoRows() {
  const [a, b] = view.names;
  const rows = [];
  for (const t of view.trials.values()) {
    if (t.state !== "SUCCEEDED") continue;
    const x = objValue(t, a), y = objValue(t, b);
    if (typeof x === "number" && typeof y === "number") rows.push({ id: t.id, x, y });
  }
  return rows;
}

function renderPareto() {
  const multi = view.names.length >= 2;
  $("pareto-card").hidden = !multi;
  if (!multi) return;
  const names = view.names;
  const succeeded = [...view.trials.values()].filter((t) => t.state === "SUCCEEDED" &&
    names.every((n) => typeof objValue(t, n) === "number"));
  const points = succeeded.map((t) => names.map((n) => (maximize(n) ? 1 : -1) * objValue(t, n)));
  const front = new Set(Charts.firstFront(points).map((i) => succeeded[i].id));
  Charts.pareto($("pareto"), paretoRows(), names.slice(0, 2), front, selectTrial);
}

let chartTimer = null;
let sortTimer = null;
function renderAll(fromEvents) {
  setState(view.exp.state);
  // pushed events: the rows in view follow every frame, but the table is re-sorted at
  // most every 300 ms (a 10,000-row sort every frame ate the CPU the search runs on);
  // new trials are appended meanwhile, which is their place in the default order, where
  // no re-sort is needed at all
  const stable = view.sortKey === "id" && view.sortDir === 1 && !tableFilter();
  const sortWait = fromEvents ? view.sortedAt + 300 - performance.now() : 0;
  if (!fromEvents || (!stable && sortWait <= 0)) resortTable();
  else {
    appendAdded();
    renderTable(false);
    if (!stable && !sortTimer) sortTimer = setTimeout(() => { sortTimer = null; if (view.exp) resortTable(); }, sortWait);
  }
  // the charts are redrawn at most every view.chartsGap ms while events stream in (the
  // table and the counts every frame): a 100k-trial parallel plot must not eat every frame
  const wait = fromEvents ? view.chartsAt + view.chartsGap - performance.now() : 0;
  if (wait <= 0) { drawCharts(); return; }
  if (!chartTimer) {
    chartTimer = setTimeout(() => { chartTimer = null; if (view.exp) drawCharts(); }, wait);
  }
  renderCounts();
}

// Charts cost what they cost (~50 ms each for 10,000 trials): while events stream in,
// they get at most a tenth of the page's time: the next redraw waits 300 ms, or ten
// times as long as this one took. Measured: a B1 watched live spent 2.3 s of 7 s in them.
const CHART_SHARE = 0.1;
function drawCharts() {
  const t0 = performance.now();
  view.chartsAt = t0;
  renderOverview();
  view.chartsGap = Math.max(300, (performance.now() - t0) / CHART_SHARE);
}

let frameQueued = false;
function renderSoon() {
  // many events in one frame: one redraw per animation frame
  if (frameQueued) return;
  frameQueued = true;
  requestAnimationFrame(() => { frameQueued = false; renderAll(true); });
}

function resortTable() {
  view.sortedAt = performance.now();
  view.added = [];
  renderTable(true);
}

function appendAdded() {
  if (!view.added.length) return;
  const keep = tableFilter();
  for (const t of view.added) if (!keep || keep(t)) view.order.push(t);
  view.added = [];
}

async function selectTrial(id) {
  view.selected = id;
  renderTable(false);
  const t = await api(`/api/experiments/${encodeURIComponent(view.id)}/trials/${id}`);
  if (view.selected !== id) return;
  view.curve = t.intermediates.map(([s, v]) => [s, typeof v === "object" && v !== null ? v[view.names[0]] ?? Object.values(v)[0] : v]);
  $("detail").hidden = false;
  $("detail-id").textContent = `#${id}`;
  $("curve-title").textContent = `(trial #${id})`;
  drawCurve();
  renderDetail(t);
  loadArchitecture(id);
}

// the trial's frozen model (modules, parameters, FLOPs; cells as graphs), read once per
// trial and input shape
async function loadArchitecture(id) {
  const input = $("arch-input").value.trim();
  const key = `${view.id}/${id}/${input}`;
  if (view.archKey === key) return;
  view.archKey = key;
  $("arch-summary").textContent = "";
  $("arch-body").textContent = "reading…";
  const q = input ? `?input=${encodeURIComponent(input)}` : "";
  try {
    const a = await api(`/api/experiments/${encodeURIComponent(view.id)}/trials/${id}/architecture${q}`);
    if (view.archKey !== key) return;
    $("arch-summary").textContent = Arch.summary(a);
    Arch.render($("arch-body"), a);
  } catch (err) {
    if (view.archKey !== key) return;
    view.archKey = null;  // read it again next time (it may be fixed by then)
    $("arch-body").textContent = `no architecture: ${err.message}`;
  }
}

function drawCurve() {
  const logY = view.curve.length > 1 && view.curve.every((p) => p[1] > 0) &&
    view.curve.reduce((m, p) => Math.max(m, p[1]), -Infinity) /
    view.curve.reduce((m, p) => Math.min(m, p[1]), Infinity) > 100;
  Charts.curve($("curve"), view.selected, view.curve, logY);
}

function renderDetail(t) {
  const rows = [["state", badge(t.state)], ["attempt", t.attempt],
    ["metric", fmtNum(t.metric)], ["metrics", esc(JSON.stringify(t.metrics))],
    ["started", fmtTime(t.started_at)], ["ended", fmtTime(t.ended_at)],
    ...Object.entries(t.sample).map(([k, v]) => [esc(k), esc(JSON.stringify(v))])];
  let html = "<dl>" + rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("") + "</dl>";
  if (t.error) html += `<h2>error</h2><pre>${esc(t.error.type)}: ${esc(t.error.message)}\n${esc(t.error.traceback || "")}</pre>`;
  const c = t.checkpoint;
  if (c) html += `<h2>checkpoint</h2><p class="ckpt"><code title="${esc(c.path)}">${esc(c.name)}</code> ` +
    `${Arch.count(c.size)} bytes, ${fmtTime(c.modified)}</p>`;
  for (const [name, text] of Object.entries(t.logs || {})) {
    if (text) html += `<h2>${esc(name)}</h2><pre class="log" data-log="${esc(name)}">${esc(text.slice(-4000))}</pre>`;
  }
  $("detail-body").innerHTML = html;
  $("kill").hidden = t.state !== "RUNNING";
  followLogs(t);
}

// a running trial's stdout/stderr are files with no event per line printed: while the
// trial shown runs, its detail (logs, checkpoint) is read again every 2 s
let logTimer = null;
function followLogs(t) {
  clearTimeout(logTimer);
  if (t.state !== "RUNNING") return;
  const id = t.id, exp = view.id;
  logTimer = setTimeout(async () => {
    if (view.selected !== id || view.id !== exp || $("detail").hidden) return;
    try {
      const fresh = await api(`/api/experiments/${encodeURIComponent(exp)}/trials/${id}`);
      if (view.selected === id && view.id === exp) renderDetail(fresh);
    } catch (err) { /* the next event or click reads it again */ }
  }, 2000);
}

// --- pushed events -----------------------------------------------------------------------

function applyEvent(e) {
  let t = view.trials.get(e.trial_id);
  switch (e.type) {
    case "trial_submitted": {
      const fresh = { id: e.trial_id, state: "WAITING", sample: e.sample, metric: null,
        metrics: null, submitted_at: e.time, started_at: null, ended_at: null,
        attempt: e.attempt, error: null };
      if (t) Object.assign(t, fresh);  // a retry: the row already in the table
      else { view.trials.set(e.trial_id, fresh); view.added.push(fresh); }
      return;
    }
    case "progress":
      view.progress.push([e.time, e.step, e.values]);
      return;
    case "experiment_state":
    case "experiment_finished":
      view.exp.state = e.state;
      return;
    default:
  }
  if (e.trial_id === undefined) return;
  if (!t) {
    // it was submitted before this page subscribed and after its snapshot was read
    t = { id: e.trial_id, state: "WAITING", sample: {}, metric: null, metrics: null,
      submitted_at: null, started_at: null, ended_at: null, attempt: 0, error: null };
    view.trials.set(e.trial_id, t);
    view.added.push(t);
    api(`/api/experiments/${encodeURIComponent(view.id)}/trials/${e.trial_id}`)
      .then((full) => { Object.assign(t, full, { state: t.state === "WAITING" ? full.state : t.state }); renderSoon(); })
      .catch(() => {});
  }
  if (e.type === "trial_started") { t.state = "RUNNING"; t.started_at = e.time; }
  else if (e.type === "final") { t.metric = e.metric; t.metrics = e.value; }
  else if (e.type === "trial_ended") { t.state = e.state; t.ended_at = e.time; t.error = e.error; }
  else if (e.type === "intermediate" && e.trial_id === view.selected) {
    const v = typeof e.value === "object" && e.value !== null ? e.value[view.names[0]] ?? e.metric : e.value;
    view.curve.push([e.step, v]);
  }
}

live.handlers.push((frame) => {
  const r = route();
  if (frame.type === "resync") {
    if (r.view === "experiment") showExperiment(r.id); else refreshListSoon();
    return;
  }
  if (frame.type === "error") { showError(frame.error); return; }
  if (frame.type === "subscribed" && !frame.live && !live.settled.has(frame.experiment)) {
    // it ended between the page's read and the subscription: read it again, once
    live.settled.add(frame.experiment);
    if (r.view === "list") refreshListSoon();
    else if (view.exp && view.id === frame.experiment && view.exp.state === "RUNNING") showExperiment(view.id);
    return;
  }
  if (frame.type !== "events") return;
  let curveChanged = false, compareChanged = false;
  for (const e of frame.events) {
    if (r.view === "list") {
      if (e.type === "trial_ended" || e.type === "trial_submitted" || e.type === "experiment_finished" ||
        e.type === "experiments_changed") refreshListSoon();
      continue;
    }
    if (e.experiment !== view.id || !view.exp) continue;
    if (e.type === "intermediate" && e.trial_id === view.selected) curveChanged = true;
    if (e.type === "trial_ended" && e.trial_id === view.selected) {
      selectTrial(e.trial_id);
    }
    applyEvent(e);
    if (e.type === "trial_ended" && view.compare.includes(e.trial_id)) compareChanged = true;
  }
  if (r.view === "experiment" && view.exp) {
    renderSoon();
    if (curveChanged) drawCurve();
    if (compareChanged) renderCompare();
  }
});

// --- controls ------------------------------------------------------------------------------

$("stop").addEventListener("click", async () => {
  if (!confirm(`Stop experiment ${view.id}? Running trials are canceled; it can be resumed.`)) return;
  try {
    await api(`/api/experiments/${encodeURIComponent(view.id)}/stop`, { method: "POST", body: "{}" });
    $("stop").textContent = "Stopping…";
  } catch (err) { showError(`stop failed: ${err.message}`); }
});

$("kill").addEventListener("click", async () => {
  const id = view.selected;
  try {
    await api(`/api/experiments/${encodeURIComponent(view.id)}/trials/${id}/kill`, { method: "POST", body: "{}" });
  } catch (err) { showError(`kill failed: ${err.message}`); }
});

$("scatter-label").addEventListener("change", () => renderOverview());
$("arch-input").addEventListener("change", () => { if (view.selected !== null) loadArchitecture(view.selected); });
$("epoch-metric").addEventListener("change", () => renderOneShot());
$("probs-label").addEventListener("change", () => renderOneShot());
$("compare-clear").addEventListener("click", () => { view.compare = []; renderTable(false); renderCompare(); });
$("trials-body").addEventListener("click", (ev) => {
  if (ev.target.classList.contains("cmp")) {
    toggleCompare(Number(ev.target.dataset.trial), ev.target.checked);
    return;
  }
  const row = ev.target.closest(".trow");
  if (row) selectTrial(Number(row.dataset.trial));
});

// --- routing -------------------------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/experiments\/([A-Za-z0-9_-]+)/);
  return m ? { view: "experiment", id: m[1] } : { view: "list" };
}

async function navigate() {
  const r = route();
  $("list-view").hidden = r.view !== "list";
  $("exp-view").hidden = r.view !== "experiment";
  try {
    showError("");
    if (r.view === "list") { $("crumb").textContent = ""; await showList(); }
    else await showExperiment(r.id);
  } catch (err) {
    showError(`cannot load: ${err.message}`);
    $("list-view").hidden = true;
    $("exp-view").hidden = true;
  }
}

window.addEventListener("hashchange", navigate);
initTable();
live.connect();
navigate();
