// Runtime controls of a running experiment (beyond stop and kill): change concurrency,
// max_trials and max_duration, and enqueue a sample. Every change goes to the server's
// /update and /enqueue routes with the page's token, on the experiment's one change path
// (ChangeDesk); the server validates, and a refusal's message is shown here as it came.
// Uses app.js's api(), view and live (loaded after it).
"use strict";

const Controls = (() => {
  const FIELDS = ["concurrency", "max_trials", "max_duration"];
  let filled = null;  // what the form was last filled with (experiment id + config)

  function say(text, ok) {
    const out = $("ctl-result");
    out.textContent = text;
    out.className = ok ? "ctl-ok" : "ctl-error";
  }

  // the form shows the experiment's config; refilled only when that changes, so a value
  // being typed survives pushed re-renders
  function sync(state) {
    $("controls").hidden = state !== "RUNNING";
    const config = (view.exp && view.exp.config) || {};
    const key = JSON.stringify([view.id, FIELDS.map((f) => config[f])]);
    if (key === filled) return;
    if (filled === null || JSON.parse(filled)[0] !== view.id) say("", true);
    filled = key;
    for (const f of FIELDS) $(`ctl-${f}`).value = config[f] ?? "";
  }

  // {field: [old, new]} of an applied update, from its reply or a pushed "change" event
  function applied(result) {
    if (!view.exp) return;
    view.exp.config = { ...(view.exp.config || {}) };
    for (const [f, [, now]] of Object.entries((result && result.changed) || {})) view.exp.config[f] = now;
    sync(view.exp.state);
  }

  // the fields whose input differs from the config: an empty budget is "no limit" (null);
  // a number goes as one, other text as typed ("1h30m" is a duration): the server checks
  // both (concurrency 0 or "abc" are refused there, never read as "no limit" here)
  function changes() {
    const config = view.exp.config || {}, out = {};
    for (const f of FIELDS) {
      const text = $(`ctl-${f}`).value.trim();
      const value = text === "" ? null : (Number.isFinite(Number(text)) ? Number(text) : text);
      if (value !== (config[f] ?? null)) out[f] = value;
    }
    return out;
  }

  async function update() {
    const path = `/api/experiments/${encodeURIComponent(view.id)}/update`;
    try {
      const reply = await api(path, { method: "POST", body: JSON.stringify(changes()) });
      applied(reply);
      say(`updated: ${reply.message}`, true);
    } catch (err) { say(`update refused: ${err.message}`, false); }
  }

  async function enqueue() {
    let sample;
    try { sample = JSON.parse($("ctl-sample").value); } catch (err) {
      say(`enqueue: the sample is not JSON (${err.message}); write {"label": value, ...}`, false);
      return;
    }
    const path = `/api/experiments/${encodeURIComponent(view.id)}/enqueue`;
    try {
      const reply = await api(path, { method: "POST", body: JSON.stringify({ sample }) });
      say(`enqueued: ${reply.message}${reply.queued ? "" : " (already evaluated or queued)"}`, true);
    } catch (err) { say(`enqueue refused: ${err.message}`, false); }
  }

  $("ctl-update").addEventListener("click", update);
  $("ctl-enqueue").addEventListener("click", enqueue);
  // a change made elsewhere (the API, nasflow update) shows in the form too
  live.handlers.push((frame) => {
    if (frame.type !== "events") return;
    for (const e of frame.events) {
      if (e.type === "change" && e.op === "update" && e.experiment === view.id) applied(e.result);
    }
  });
  if (view.exp) sync(view.exp.state);  // the experiment was read before this script ran
  return { sync };
})();
