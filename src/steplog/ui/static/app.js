/* steplog dashboard: runs table, charts of every point (uPlot), live updates through cursors.
   No build step, no dependencies beyond the vendored uPlot. Every text from a run (names, config,
   errors) is set with textContent: never parsed as HTML. */
"use strict";
(() => {
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e; };

// Colour-blind safe palette (Okabe-Ito, then Paul Tol's bright/muted); a run's colour comes from its id.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#AA3377", "#999933",
  "#44AA99", "#EE6677", "#6E7CBA", "#C9A400"];
const HIGHER_BETTER = /(acc|accuracy|f1|auc|precision|recall|reward|score|bleu|rouge|iou|map)\b/i;
const POLL_MS = 1000;
const DEFAULT_SMOOTH = 0.6;    // a modest EMA (TensorBoard's default); the raw curve stays faint behind

const state = { selected: [], explicit: false, metrics: "", x: "step", smooth: 0, zoom: null, log: new Set(),
  group: "", q: "", sort: null, open: null, ranks: new Map() };
let runs = [];                 // rows of /api/runs, newest first
const byId = new Map();
const series = new Map();      // run id -> {metric -> {x, y, nonfinite, raw, count}}, marks, cursor
const panels = new Map();      // metric -> {root, plot (uPlot), runs: [ids]}
const requests = [];           // every API URL fetched (tests read it)
let lastClicked = null;

// ---------- formatting ----------
function slot(id) { let h = 2166136261; for (const c of id) { h ^= c.charCodeAt(0); h = Math.imul(h, 16777619); }
  return (h >>> 0) % PALETTE.length; }
let colours = new Map();
function assignColours() {  // from the run id; charted runs that would share a colour take the next free one
  colours = new Map(); const used = new Set();
  for (const id of [...state.selected].sort()) { let k = slot(id);
    while (used.has(k) && used.size < PALETTE.length) k = (k + 1) % PALETTE.length; used.add(k); colours.set(id, PALETTE[k]); } }
function colour(id) { return colours.get(id) || PALETTE[slot(id)]; }
function abbrev(n) { if (n === null || n === undefined) return ""; const a = Math.abs(n);
  for (const [d, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (a >= d) return +(n / d).toPrecision(3) + s;
  return String(+n.toFixed(2)); }
function num(v) { if (v === null || v === undefined) return ""; if (typeof v !== "number") return String(v);
  if (!isFinite(v)) return String(v); const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5)); }
function duration(s) { if (s === null || s === undefined) return ""; s = Math.round(s);
  if (s < 60) return s + "s"; if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0");
  return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0"); }
function ago(t) { if (!t) return ""; const s = Date.now() / 1000 - t;
  return s < 90 ? Math.max(0, Math.round(s)) + "s ago" : s < 5400 ? Math.round(s / 60) + "m ago" :
    s < 86400 * 2 ? Math.round(s / 3600) + "h ago" : new Date(t * 1000).toISOString().slice(0, 10); }
function flatten(obj, prefix = "", out = {}) { for (const [k, v] of Object.entries(obj || {})) {
  if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, prefix + k + ".", out);
  else out[prefix + k] = Array.isArray(v) ? JSON.stringify(v) : v; } return out; }

// ---------- URL: the view ----------
function readURL() {
  const p = new URLSearchParams(location.search);
  if (p.has("runs")) { state.selected = p.get("runs").split(",").filter(Boolean); state.explicit = true; }
  state.metrics = p.get("metrics") || ""; state.x = ["step", "wallclock", "time"].includes(p.get("x")) ? p.get("x") : "step";
  state.smooth = p.has("smooth") ? Math.min(0.99, Math.max(0, parseFloat(p.get("smooth")) || 0)) : DEFAULT_SMOOTH;
  const lo = parseFloat(p.get("from")), hi = parseFloat(p.get("to"));
  state.zoom = isFinite(lo) && isFinite(hi) && lo < hi ? [lo, hi] : null;
  state.log = new Set((p.get("log") || "").split(",").filter(Boolean));
  state.group = p.get("group") || ""; state.q = p.get("q") || ""; state.open = p.get("run") || null;
  state.ranks = new Map((p.get("ranks") || "").split(",").map((t) => t.split(":")).filter(([m, r]) => m && /^(all|\d+)$/.test(r || ""))
    .map(([m, r]) => [m, r === "all" ? "all" : +r]));
  const sort = (p.get("sort") || "").split(":"); state.sort = sort[0] ? { key: sort[0], dir: sort[1] === "asc" ? 1 : -1 } : null;
}
function writeURL() {
  const p = new URLSearchParams();
  if (state.explicit) p.set("runs", state.selected.join(","));
  if (state.metrics) p.set("metrics", state.metrics); if (state.x !== "step") p.set("x", state.x);
  if (state.smooth !== DEFAULT_SMOOTH) p.set("smooth", state.smooth); if (state.zoom) { p.set("from", state.zoom[0]); p.set("to", state.zoom[1]); }
  if (state.log.size) p.set("log", [...state.log].join(",")); if (state.group) p.set("group", state.group);
  if (state.q) p.set("q", state.q); if (state.sort) p.set("sort", state.sort.key + ":" + (state.sort.dir > 0 ? "asc" : "desc"));
  if (state.open) p.set("run", state.open);
  if (state.ranks.size) p.set("ranks", [...state.ranks].map(([m, r]) => m + ":" + r).join(","));
  const q = p.toString().replace(/%2C/g, ",").replace(/%3A/g, ":"); history.replaceState(null, "", q ? "?" + q : location.pathname);
}

async function api(path, params) {
  const url = path + (params ? "?" + params.toString() : ""); requests.push(url);
  const r = await fetch(url); const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText); return body;
}

// ---------- runs table ----------
function mainMetric() {
  const names = new Set(); for (const r of runs) for (const m of Object.keys(r.metrics || {})) names.add(m);
  const all = [...names].sort(); const wanted = all.filter(metricShown);
  const pool = wanted.length ? wanted : all;
  return pool.filter((m) => /loss/i.test(m)).sort((a, b) => a.length - b.length)[0] || pool[0] || null;
}
function best(r, m) { const s = (r.metrics || {})[m]; if (!s) return null; return HIGHER_BETTER.test(m) ? s.max : s.min; }
function configColumns() {
  const values = new Map();
  for (const r of runs) for (const [k, v] of Object.entries(r.flat)) { if (!values.has(k)) values.set(k, new Set()); values.get(k).add(JSON.stringify(v)); }
  const keys = [...values.keys()].sort();
  const differ = keys.filter((k) => values.get(k).size > 1 || runs.some((r) => !(k in r.flat)));
  return [...differ, ...keys.filter((k) => !differ.includes(k))].map((k) => ({ key: "config." + k, differ: differ.includes(k) }));
}
function columns() {
  const m = mainMetric();
  const cols = [{ key: "name", label: "name" }, { key: "status", label: "status" }];  // the main metric next: in view at once
  if (m) cols.push({ key: "m.last", label: m + " last", num: true, metric: m, tip: `last logged value of ${m}` },
    { key: "m.best", label: m + " best", num: true, metric: m, tip: `${HIGHER_BETTER.test(m) ? "highest" : "lowest"} value of ${m}` });
  cols.push({ key: "steps", label: "steps", num: true }, { key: "start", label: "started", num: true },
    { key: "duration", label: "duration", num: true, tip: "wallclock time of training (a resume continues it)" });
  for (const c of configColumns()) cols.push({ key: c.key, label: c.key.slice(7), num: false, cfg: !c.differ });
  return cols;
}
function value(r, col) {
  if (col.key === "m.last") return ((r.metrics || {})[col.metric] || {}).last ?? null;
  if (col.key === "m.best") return best(r, col.metric);
  if (col.key.startsWith("config.")) return r.flat[col.key.slice(7)] ?? null;
  return r[col.key] ?? null;
}
function matches(r, q) {
  for (const tok of q.trim().split(/\s+/).filter(Boolean)) {
    const st = /^status:(\w+)$/i.exec(tok);
    if (st) { if (!r.status.startsWith(st[1].toLowerCase())) return false; continue; }
    const cmp = /^([^<>=!]+)(>=|<=|!=|=|>|<)(.*)$/.exec(tok);
    if (cmp) { const key = cmp[1].replace(/^config\./, ""); let v = key in r.flat ? r.flat[key] : r[key];
      if (v === undefined && r.metrics && r.metrics[key]) v = r.metrics[key].last;
      if (v === undefined || v === null) return false;
      const want = cmp[3], n = parseFloat(want), isNum = typeof v === "number" && isFinite(n);
      const a = isNum ? v : String(v), b = isNum ? n : want;
      const ok = { ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b, "=": a == b, "!=": a != b }[cmp[2]];
      if (!ok) return false; continue; }
    const t = tok.toLowerCase(); if (!String(r.name || "").toLowerCase().includes(t) && !r.id.includes(t)) return false;
  }
  return true;
}
function shownRuns() {
  let rows = runs.filter((r) => matches(r, state.q));
  if (state.sort) { const col = columns().find((c) => c.key === state.sort.key);
    if (col) rows = rows.slice().sort((a, b) => { const x = value(a, col), y = value(b, col);
      if (x === y) return 0; if (x === null) return 1; if (y === null) return -1; return (x < y ? -1 : 1) * state.sort.dir; }); }
  return rows;
}
function renderTable() {
  assignColours(); const cols = columns(), rows = shownRuns(), head = $("runs-head"), body = $("runs-body");
  head.replaceChildren(); const all = el("th"); const box = el("input"); box.type = "checkbox"; box.title = "select all shown";
  box.checked = rows.length > 0 && rows.every((r) => state.selected.includes(r.id));
  box.addEventListener("click", (e) => { e.stopPropagation(); select(rows.map((r) => r.id), box.checked); });
  all.append(box); head.append(all, el("th"));
  for (const c of cols) { const th = el("th", (c.num ? "num " : "") + (c.cfg ? "cfg" : ""), c.label); th.dataset.key = c.key;
    th.title = (c.tip ? c.tip + "; " : c.cfg ? "config value, the same in every run shown; " : c.key.startsWith("config.") ? "config value; " : "") + "click to sort";
    if (state.sort && state.sort.key === c.key) th.classList.add(state.sort.dir > 0 ? "sorted-asc" : "sorted-desc");
    th.addEventListener("click", () => { state.sort = state.sort && state.sort.key === c.key ?
      (state.sort.dir < 0 ? { key: c.key, dir: 1 } : null) : { key: c.key, dir: -1 }; writeURL(); renderTable(); });
    head.append(th); }
  // The first rows at once, the rest in chunks after: a table of thousands of runs never delays the charts.
  const mine = ++tableGeneration; body.replaceChildren(...rows.slice(0, FIRST_ROWS).map((r) => tableRow(r, cols, rows)));
  const more = (from) => { if (mine !== tableGeneration || from >= rows.length) return;
    body.append(...rows.slice(from, from + 250).map((r) => tableRow(r, cols, rows))); setTimeout(() => more(from + 250), 0); };
  afterFirstCharts.then(() => setTimeout(() => more(FIRST_ROWS), 0));
  $("runs-foot").textContent = `${rows.length} of ${runs.length} runs shown, ${state.selected.length} charted`;
}
let tableGeneration = 0, chartsDrawn;
const afterFirstCharts = new Promise((resolve) => { chartsDrawn = resolve; });
const FIRST_ROWS = 60;
function tableRow(r, cols, rows) {
  const tr = el("tr"); tr.dataset.id = r.id; const on = state.selected.includes(r.id); if (on) tr.classList.add("selected");
  const cb = el("input"); cb.type = "checkbox"; cb.checked = on; const td0 = el("td"); td0.append(cb);
  const sw = el("span", "swatch"); sw.style.background = colour(r.id); const td1 = el("td"); td1.append(sw); tr.append(td0, td1);
  for (const c of cols) { const v = value(r, c); let td;
    if (c.key === "name") { td = el("td", "name"); const a = el("a", "run-link", r.name || r.id); a.href = "?run=" + encodeURIComponent(r.id);
      a.title = (r.name || "") + "\n" + r.id; a.addEventListener("click", (e) => { e.preventDefault(); e.stopPropagation(); openRun(r.id); });
      td.append(a); }
    else if (c.key === "status") { td = statusCell(r); }
    else if (c.key === "start") { td = el("td", "num", ago(v)); if (v) td.title = new Date(v * 1000).toISOString(); }
    else if (c.key === "duration") td = el("td", "num", duration(v));
    else if (c.key === "steps") { td = el("td", "num", abbrev(v)); td.title = v ?? ""; }
    else { td = el("td", (c.num || typeof v === "number" ? "num " : "") + (c.key.startsWith("config.") ? "cfg" : ""),
      typeof v === "number" ? num(v) : v); if (typeof v === "number") td.title = String(v); }
    tr.append(td); }
  tr.addEventListener("click", (e) => {
    if (e.shiftKey && lastClicked) { const ids = rows.map((x) => x.id); const a = ids.indexOf(lastClicked), b = ids.indexOf(r.id);
      if (a >= 0 && b >= 0) { select(ids.slice(Math.min(a, b), Math.max(a, b) + 1), true); lastClicked = r.id; return; } }
    lastClicked = r.id; select([r.id], !state.selected.includes(r.id)); });
  return tr;
}
function statusCell(r) {  // the run's status; for several ranks, how many and any rank that crashed or failed
  const td = el("td", "status " + r.status, r.status); const tips = r.error ? [r.error] : [];
  if (r.ranks) { const ranks = Object.entries(r.ranks); td.append(el("span", "ranks", ` ×${ranks.length}`));
    const bad = ranks.filter(([, st]) => st === "crashed" || st === "failed");
    if (bad.length) { const st = bad[0][1]; td.append(el("span", "rank-bad status " + st, ` ⚠ r${bad.map(([k]) => k).join(",")}`)); }
    tips.push(`${ranks.length} ranks\n` + ranks.map(([k, st]) => `rank ${k}: ${st}`).join("\n")); }
  if (tips.length) td.title = tips.join("\n"); return td;
}
function select(ids, on) {
  const set = new Set(state.selected); for (const id of ids) on ? set.add(id) : set.delete(id);
  state.selected = runs.map((r) => r.id).filter((id) => set.has(id)); state.explicit = true; writeURL();
  renderTable(); rebuildCharts(); loadAll();
}

// ---------- charts ----------
function metricShown(m) { const f = state.metrics.trim().toLowerCase(); if (!f) return true;
  return f.split(/[,|]/).map((s) => s.trim()).filter(Boolean).some((s) => m.toLowerCase().includes(s)); }
function chartedMetrics() {
  const names = new Set(); for (const id of state.selected) for (const m of Object.keys((byId.get(id) || {}).metrics || {})) names.add(m);
  const kind = (m) => (/loss/i.test(m) ? 0 : HIGHER_BETTER.test(m) ? 1 : 2);  // losses first, then scores, then the rest
  return [...names].filter(metricShown).sort((a, b) => kind(a) - kind(b) || (a < b ? -1 : a > b ? 1 : 0));
}
let widthCache = 0;
function panelWidth() { return widthCache || (widthCache = measureWidth()); }
function measureWidth() { const pane = $("charts"); const cols = Math.max(1, Math.floor((pane.clientWidth + 10) / 370));
  return Math.max(300, Math.floor((pane.clientWidth - 10 * (cols - 1)) / cols) - 14); }
function rebuildCharts() {
  const metrics = chartedMetrics(); const box = $("charts");
  for (const [m, p] of panels) if (!metrics.includes(m)) { p.plot && p.plot.destroy(); p.root.remove(); panels.delete(m); }
  for (const m of metrics) if (!panels.has(m)) { const p = makePanel(m); panels.set(m, p); watch(p); }
  box.replaceChildren(...metrics.map((m) => panels.get(m).root));
  $("empty").hidden = metrics.length > 0;
  const logged = state.selected.some((id) => Object.keys((byId.get(id) || {}).metrics || {}).length);
  $("empty").textContent = !runs.length ? "No runs in this root yet: start one with steplog.init(root=...), or try steplog demo." :
    !state.selected.length ? "Tick runs in the table to chart them." :
    !logged ? "The charted runs have logged no metrics yet." : `No metric matches "${state.metrics}": clear the metric filter.`;
  for (const m of metrics) draw(m);
}
function makePanel(m) {
  const root = el("div", "panel"); root.dataset.metric = m; const head = el("div", "panel-head");
  const tools = el("div", "panel-tools"); const info = el("span", "pts"); const log = el("button", state.log.has(m) ? "on" : "", "log");
  log.title = "logarithmic y axis"; log.addEventListener("click", () => { state.log.has(m) ? state.log.delete(m) : state.log.add(m);
    log.classList.toggle("on"); writeURL(); const p = panels.get(m); p.plot && p.plot.destroy(); p.plot = null; draw(m); });
  const pick = el("select", "rank-pick"); pick.title = "which rank of a multi-process run this chart shows";
  pick.addEventListener("change", () => { const v = pick.value === "all" ? "all" : +pick.value;
    v === 0 ? state.ranks.delete(m) : state.ranks.set(m, v); writeURL(); draw(m); loadMissing(); });
  tools.append(info, pick, log); head.append(el("span", "panel-title", m), tools); const holder = el("div", "plot"), legendBox = el("div", "legend"); root.append(head, holder, legendBox);
  return { root, holder, info, pick, legend: legendBox, plot: null, key: "" };
}
function ema(ys, alpha) {  // debiased exponential moving average (as TensorBoard), skipping gaps
  const out = new Array(ys.length); let last = 0, n = 0;
  for (let i = 0; i < ys.length; i++) { const v = ys[i]; if (v === null || v === undefined || !isFinite(v)) { out[i] = null; continue; }
    last = last * alpha + (1 - alpha) * v; n++; out[i] = last / (1 - Math.pow(alpha, n)); }
  return out;
}
function groupColour(g) {  // the same colour for a group in every panel: its rank among the charted runs' groups
  const all = [...new Set(state.selected.map(groupOf))].sort(); return PALETTE[Math.max(0, all.indexOf(g)) % PALETTE.length]; }
function groupOf(id) { if (!state.group) return null; const r = byId.get(id); const v = r ? r.flat[state.group] : undefined;
  return state.group + "=" + (v === undefined ? "(none)" : JSON.stringify(v)); }
// ---------- ranks: a panel shows rank 0 (the default), one rank, or every rank overlaid ----------
function runRanks(id) { const r = byId.get(id); return r && r.ranks ? Object.keys(r.ranks).map(Number) : [0]; }
function lineKey(id, rank) { return rank ? id + "@" + rank : id; }
function panelLines(m) {  // the (run, rank) lines panel m draws
  const mode = state.ranks.get(m) ?? 0, out = [];
  for (const id of state.selected) { const have = runRanks(id);
    for (const rank of mode === "all" ? have : have.includes(mode) ? [mode] : []) out.push({ key: lineKey(id, rank), id, rank }); }
  return out;
}
function multiRank() { return state.selected.some((id) => runRanks(id).length > 1); }
function wantedLines() {  // every (run, rank) some panel needs, rank 0 of each charted run first
  const seen = new Map(); for (const id of state.selected) seen.set(id, { key: id, id, rank: 0 });
  for (const m of chartedMetrics()) for (const l of panelLines(m)) seen.set(l.key, l);
  return [...seen.values()];
}
function lineLabel(l, m) { const name = (byId.get(l.id) || {}).name || l.id;
  return (state.ranks.get(m) ?? 0) !== 0 || l.rank ? `${name} · rank ${l.rank}` : name; }
function lineColour(l, m) {  // the run's colour; ranks of one charted run overlaid get a colour each
  if (state.ranks.get(m) === "all" && state.selected.length === 1) return PALETTE[(slot(l.id) + l.rank) % PALETTE.length];
  return colour(l.id);
}
function lineDash(l, m) { return state.ranks.get(m) === "all" && state.selected.length > 1 && l.rank ? [[6, 3], [2, 3], [8, 3, 2, 3]][(l.rank - 1) % 3] : undefined; }

function plotData(m) {
  const ids = panelLines(m).filter((l) => series.has(l.key) && series.get(l.key).metrics[m]);
  const tables = [], specs = [], nullModes = [];
  for (const l of ids) { const id = l.id, s = series.get(l.key).metrics[m]; let ys = Array.from(s.y, (v) => (v === null || Number.isNaN(v) ? null : v));
    if (state.log.has(m)) ys = ys.map((v) => (v !== null && v > 0 ? v : null));
    const cols = [Array.from(s.x), ys]; if (state.smooth > 0) cols.push(ema(ys, state.smooth));
    tables.push(cols); nullModes.push(cols.slice(1).map(() => 1)); specs.push({ id, line: l, smooth: state.smooth > 0, count: s.x.length }); }
  if (!tables.length) return { ids, data: [[]], specs };
  const data = tables.length === 1 ? tables[0] : uPlot.join(tables, nullModes);
  return state.group ? { ids, ...grouped(data, specs) } : { ids, data, specs };
}
function grouped(data, specs) {  // one mean line per group with a min-max band, from each run's last value so far
  const groups = new Map(); let col = 1;
  specs.forEach((s) => { const g = groupOf(s.id); if (!groups.has(g)) groups.set(g, []); groups.get(g).push(col); col += s.smooth ? 2 : 1; });
  const out = [data[0]], gspecs = [];
  for (const [g, cols] of groups) { const n = data[0].length, mean = new Array(n), lo = new Array(n), hi = new Array(n);
    const last = cols.map(() => null), first = cols.map((c) => data[c].findIndex((v) => v !== null && v !== undefined)),
      end = cols.map((c) => { for (let i = n - 1; i >= 0; i--) if (data[c][i] !== null && data[c][i] !== undefined) return i; return -1; });
    for (let i = 0; i < n; i++) { let s = 0, k = 0, a = Infinity, b = -Infinity;
      cols.forEach((c, j) => { const v = data[c][i]; if (v !== null && v !== undefined) last[j] = v;
        if (i >= first[j] && i <= end[j] && last[j] !== null) { s += last[j]; k++; a = Math.min(a, last[j]); b = Math.max(b, last[j]); } });
      mean[i] = k ? s / k : null; lo[i] = k ? a : null; hi[i] = k ? b : null; }
    out.push(hi, lo, state.smooth > 0 ? ema(mean, state.smooth) : mean); gspecs.push({ group: g, count: cols.length }); }
  return { data: out, specs: gspecs };
}
function seriesOpts(m, specs) {
  const css = getComputedStyle(document.documentElement); const out = [{}]; const bands = [];
  if (state.group) specs.forEach((s) => { const c = groupColour(s.group); const base = out.length;
    out.push({ label: s.group + " max", stroke: "transparent", points: { show: false } },
      { label: s.group + " min", stroke: "transparent", points: { show: false } },
      { label: `${s.group} (${s.count} runs)`, stroke: c, width: 1.5, points: { show: false }, spanGaps: true, _colour: c });
    bands.push({ series: [base, base + 1], fill: c + "2e" }); });
  else specs.forEach((s) => { const c = lineColour(s.line, m), name = lineLabel(s.line, m), dash = lineDash(s.line, m);
    out.push({ label: name, stroke: s.smooth ? c + "40" : c, width: s.smooth ? 1 : 1.5, _run: s.line.key, _label: name, _colour: c, _raw: true,
      dash, points: { show: s.count <= 60, size: 4, fill: c } });
    if (s.smooth) out.push({ label: name + " (smoothed)", stroke: c, width: 1.75, dash, points: { show: false }, spanGaps: true,
      _run: s.line.key, _label: name, _colour: c, _smooth: true }); });
  return { series: out, bands, grid: css.getPropertyValue("--line").trim(), text: css.getPropertyValue("--muted").trim() };
}
function xValues(u, splits) { if (state.x === "wallclock") return splits.map(duration);
  if (state.x === "step") return splits.map(abbrev); return null; }
function draw(m) {
  const p = panels.get(m); if (!p || !onScreen.has(m)) return; const { ids, data, specs } = plotData(m); const width = panelWidth();
  const key = [ids.map((l) => l.key).join(","), state.smooth > 0, state.group, state.x, width, state.log.has(m), state.ranks.get(m)].join("|");
  if (p.plot && p.key === key) { p.plot.setData(data, !state.zoom); if (state.zoom) p.plot.setScale("x", { min: state.zoom[0], max: state.zoom[1] }); }
  else { if (p.plot) p.plot.destroy(); p.key = key; p.plot = makePlot(m, data, specs, width); p.holder.replaceChildren(p.plot.root);
    if (state.zoom) p.plot.setScale("x", { min: state.zoom[0], max: state.zoom[1] }); }
  legend(p, m, ids); rankOptions(p, m);
  let count = 0, raw = true; for (const l of ids) { const s = series.get(l.key).metrics[m]; count += s.count; raw = raw && s.raw; }
  p.info.textContent = ids.length ? `${abbrev(count)} pts${raw ? "" : " (min/max per px)"}` : "";
  p.info.title = raw ? "every logged point is drawn" : "each pixel keeps its bucket's first, min, max and last point; zoom for every point";
}
function rankOptions(p, m) {  // rank 0, each rank, all ranks: only where a charted run has several
  const ranks = [...new Set(state.selected.flatMap(runRanks))].sort((a, b) => a - b), want = ["0", ...ranks.filter(Boolean).map(String), "all"];
  p.pick.hidden = !state.selected.some((id) => runRanks(id).length > 1 && m in ((byId.get(id) || {}).metrics || {}));
  if (p.pick.hidden) return;
  if ([...p.pick.options].map((o) => o.value).join() !== want.join())
    p.pick.replaceChildren(...want.map((v) => new Option(v === "all" ? "all ranks" : "rank " + v, v)));
  p.pick.value = String(state.ranks.get(m) ?? 0);
}
function legend(p, m, ids) {  // the charted runs (or groups) of this panel, in their colours
  const items = state.group ? [...new Set(ids.map((l) => groupOf(l.id)))].map((g) => [groupColour(g), g]) :
    ids.map((l) => [lineColour(l, m), lineLabel(l, m)]);
  p.legend.replaceChildren(...items.map(([c, label]) => { const item = el("span", "item"); const sw = el("span", "swatch");
    sw.style.background = c; item.append(sw, el("span", "", label)); return item; }));
}
function makePlot(m, data, specs, width) {
  const o = seriesOpts(m, specs);
  const axis = { stroke: o.text, grid: { stroke: o.grid, width: 1 }, ticks: { stroke: o.grid, width: 1 } };
  const opts = { width, height: 230, legend: { show: false }, series: o.series, bands: o.bands,
    scales: { x: { time: state.x === "time" }, y: state.log.has(m) ? { distr: 3 } : {} },
    axes: [{ ...axis, values: state.x === "time" ? undefined : xValues }, { ...axis, size: 58, values: (u, s) => s.map(num) }],
    cursor: { y: false, drag: { x: true, y: false, setScale: false }, sync: { key: "steplog-x" }, points: { size: 5 },
      bind: { dblclick: () => () => { resetZoom(); return null; } } },
    hooks: { setSelect: [(u) => { if (u.select.width > 3) zoomTo(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
      u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false); }], setCursor: [(u) => tooltip(u, m)], draw: [(u) => markers(u, m)] } };
  const plot = new uPlot(opts, data, document.createElement("div")); plot.over.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  return plot;
}
function markers(u, m) {  // NaN/inf at the top edge in the run's colour; resumes as ticks on the x axis
  const ctx = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height, dpr = devicePixelRatio || 1; ctx.save();
  for (const l of panelLines(m)) { const s = series.get(l.key); if (!s || !s.metrics[m]) continue; ctx.fillStyle = lineColour(l, m);
    for (const [x] of s.metrics[m].nonfinite) { const px = u.valToPos(x, "x", true); if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath(); ctx.moveTo(px - 4 * dpr, top); ctx.lineTo(px + 4 * dpr, top); ctx.lineTo(px, top + 7 * dpr); ctx.fill(); }
    ctx.strokeStyle = lineColour(l, m); ctx.lineWidth = 2 * dpr;
    for (const mk of s.marks || []) { const px = u.valToPos(mk.x, "x", true); if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath(); ctx.moveTo(px, bottom); ctx.lineTo(px, bottom - 9 * dpr); ctx.stroke(); } }
  ctx.restore();
}
function near(arr, i) { if (arr[i] !== null && arr[i] !== undefined) return i;
  for (let d = 1; d < 200; d++) { if (arr[i - d] !== null && arr[i - d] !== undefined) return i - d; if (arr[i + d] !== null && arr[i + d] !== undefined) return i + d; }
  return -1; }
function tooltip(u, m) {
  const tip = $("tooltip"), i = u.cursor.idx; if (i === null || i === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
  const x = u.data[0][i], rows = new Map();  // one row per run (or group): exact raw value, smoothed beside it
  u.series.forEach((s, k) => { if (k === 0 || s.stroke === "transparent") return; const j = near(u.data[k], i); if (j < 0) return;
    const key = s._run || s.label, row = rows.get(key) || { colour: s._colour, label: s._label || s.label };
    if (s._smooth) row.smooth = u.data[k][j]; else { row.value = u.data[k][j]; row.at = u.data[0][j]; } rows.set(key, row); });
  for (const l of panelLines(m)) { const s = series.get(l.key); if (!s || !s.metrics[m]) continue;
    for (const [nx, code] of s.metrics[m].nonfinite) if (Math.abs(u.valToPos(nx, "x") - u.cursor.left) < 5)
      rows.set(l.key + code, { colour: lineColour(l, m), label: lineLabel(l, m), value: code, at: nx }); }
  const sortKey = (r) => { const v = state.smooth > 0 && r.smooth !== undefined ? r.smooth : r.value; return typeof v === "number" ? v : Infinity; };
  const t = el("table");
  for (const r of [...rows.values()].sort((a, b) => sortKey(b) - sortKey(a))) { const tr = el("tr"); const sw = el("span", "swatch");
    sw.style.background = r.colour; const td = el("td"); td.append(sw);
    tr.append(td, el("td", "", r.label), el("td", "v", r.value === undefined ? "" : String(r.value)));
    if (state.smooth > 0) tr.append(el("td", "muted", r.smooth === undefined ? "" : "~" + num(r.smooth)));
    tr.append(el("td", "muted", r.at !== undefined && r.at !== x ? "@" + fmtX(r.at) : "")); t.append(tr); }
  tip.replaceChildren(el("div", "tt-head", `${m}  ·  ${state.x} ${fmtX(x)}`), t); tip.hidden = false;
  const box = u.over.getBoundingClientRect(), cx = box.left + u.cursor.left;
  const left = u.cursor.left > box.width / 2 ? cx - tip.offsetWidth - 14 : cx + 14;  // away from the data ahead
  tip.style.left = Math.max(4, Math.min(left, innerWidth - tip.offsetWidth - 8)) + "px";
  tip.style.top = box.top + u.cursor.top + 14 + "px";
}
function fmtX(x) { return state.x === "time" ? new Date(x * 1000).toISOString().replace("T", " ").slice(0, 19) :
  state.x === "wallclock" ? duration(x) + ` (${+x.toFixed(2)}s)` : String(x); }

// ---------- data loading ----------
function seriesParams(id, metrics, cursor, rank) {
  const p = new URLSearchParams({ run: id, x: state.x, width: String(panelWidth()) }); if (rank) p.set("rank", rank);
  for (const m of metrics) p.append("metric", m);
  if (cursor !== undefined && cursor !== null) p.set("cursor", cursor);
  else if (state.zoom) { p.set("from", state.zoom[0]); p.set("to", state.zoom[1]); }
  return p;
}
// ---------- only the panels on screen (and a row beyond) are fetched and drawn: a run of 500 metrics stays quick ----------
const onScreen = new Set();
let observer = null;
function firstScreen() {  // before the panels exist: as many as fit, and a row more
  const cols = Math.max(1, Math.floor(($("charts").clientWidth + 10) / 370)), rows = Math.ceil($("charts-pane").clientHeight / 280) + 1;
  for (const m of chartedMetrics().slice(0, cols * rows)) onScreen.add(m);
}
function watch(p) {
  if (!observer) observer = new IntersectionObserver((entries) => { let more = false;
    for (const e of entries) { const m = e.target.dataset.metric;
      if (e.isIntersecting) { more = more || !onScreen.has(m); onScreen.add(m); } else onScreen.delete(m); }
    if (more) { for (const m of panels.keys()) draw(m); loadMissing(); } }, { root: $("charts-pane"), rootMargin: "300px 0px" });
  observer.observe(p.root);
}
function lineMetrics(l) { const have = (byId.get(l.id) || {}).metrics || {}; return chartedMetrics().filter((m) => m in have && onScreen.has(m)); }
async function loadRun(l) {
  const metrics = lineMetrics(l); if (!metrics.length) { series.delete(l.key); return; }
  const body = await api("/api/series", seriesParams(l.id, metrics, null, l.rank));
  series.set(l.key, { metrics: body.series, marks: body.marks, cursor: body.cursor, status: body.status, nmetrics: metrics.length });
}
let loading = null;
function loadMissing() {  // lines a panel shown now needs that were never fetched (a rank chosen, a filter widened, a scroll)
  const todo = wantedLines().filter((l) => { const s = series.get(l.key); return lineMetrics(l).some((m) => !s || !s.metrics[m]); });
  if (!todo.length) return;
  Promise.all(todo.map((l) => loadRun(l).catch((e) => cannotLoad(l, e)))).then(() => { for (const m of panels.keys()) draw(m); window.steplog.loads++; });
}
function fetchLines() { return Promise.all(wantedLines().map((l) => loadRun(l).catch((e) => cannotLoad(l, e)))); }
function cannotLoad(l, e) { notice(`Cannot load ${(byId.get(l.id) || {}).name || l.id}${l.rank ? " rank " + l.rank : ""}: ${e.message}`); }
async function loadAll(fetching) {
  const mine = loading = Symbol();
  await (fetching || fetchLines());
  if (mine !== loading) return; for (const m of panels.keys()) draw(m); window.steplog.loads++;
}
async function liveTick(l) {  // only the points logged since the cursor travel
  const s = series.get(l.key), metrics = s ? Object.keys(s.metrics) : [];
  if (!s || s.cursor === null || lineMetrics(l).some((m) => !s.metrics[m])) return loadRun(l);
  const body = await api("/api/series", seriesParams(l.id, metrics, s.cursor, l.rank));
  if (body.reset) return loadRun(l);
  let refetch = false;
  for (const [m, add] of Object.entries(body.series)) { if (!add.x.length) continue; const old = s.metrics[m];
    if (!old || (old.x.length && add.x[0] <= old.x[old.x.length - 1])) { refetch = true; continue; }
    old.x = old.x.concat(add.x); old.y = old.y.concat(add.y); old.nonfinite = old.nonfinite.concat(add.nonfinite);
    old.count += add.count; old.raw = old.raw && add.raw; if (old.x.length > 8 * panelWidth()) refetch = true; }
  s.cursor = body.cursor; s.status = body.status; s.marks = body.marks;
  if (refetch) return loadRun(l);
}

// ---------- live ----------
let ticks = 0;
async function poll() {
  ticks++;
  try { if (ticks % 2 === 0) { try { await refreshRuns(); unreachable = null; } catch (e) { unreachable = e; } }
    const live = wantedLines().filter((l) => { const r = byId.get(l.id), s = series.get(l.key);
      return (r && r.status === "running") || (s && s.status === "running"); });
    const nlive = new Set(live.map((l) => l.id)).size; $("live").textContent = nlive ? `live: ${nlive} running` : ""; $("live").classList.toggle("on", live.length > 0);
    if (live.length) { await Promise.all(live.map((l) => liveTick(l).catch((e) => console.warn(e))));
      const before = panels.size; rebuildChartsIfNeeded(); if (panels.size === before) for (const m of panels.keys()) draw(m); }
  } finally { offline(unreachable); setTimeout(poll, POLL_MS); }
}
let unreachable = null;  // the error of the last runs-table poll, until one succeeds
function offline(e) {  // the server stopped or failed: say so where the live status shows, keep retrying
  const live = $("live"); live.classList.toggle("error", !!e);
  if (e) { live.textContent = "server unreachable: retrying"; live.title = String(e.message || e); } else live.title = "live updates";
}
function rebuildChartsIfNeeded() { const want = chartedMetrics().join("\n"); if (want !== [...panels.keys()].join("\n")) rebuildCharts(); }
async function refreshRuns() {
  const body = await api("/api/runs"); const before = runs.map((r) => r.id + r.status + r.steps).join();
  setRuns(body.runs); if (runs.map((r) => r.id + r.status + r.steps).join() !== before) { renderTable(); refreshGroups(); }
}
function setRuns(list) { runs = list; byId.clear(); for (const r of runs) { r.flat = flatten(r.config); byId.set(r.id, r); } window.steplog.runs = runs; }
function refreshGroups() { const sel = $("group"); const keys = configColumns().map((c) => c.key.slice(7));
  const have = [...sel.options].map((o) => o.value).slice(1); if (have.join() === keys.join()) return;
  sel.replaceChildren(new Option("none", ""), ...keys.map((k) => new Option(k, k))); sel.value = state.group; }

// ---------- zoom ----------
function zoomTo(lo, hi) { if (!(hi > lo)) return; state.zoom = [lo, hi]; writeURL(); zoomInfo(); loadAll(); }
function resetZoom() { if (!state.zoom) return; state.zoom = null; writeURL(); zoomInfo(); loadAll(); }
function zoomInfo() { $("zoom-info").textContent = state.zoom ? `zoom ${fmtX(state.zoom[0])} – ${fmtX(state.zoom[1])} · double-click to reset` : "drag to zoom"; }

// ---------- a run's page ----------
function kv(pairs) { const t = el("table", "kv"); for (const [k, v] of pairs) { const tr = el("tr"); tr.append(el("td", "", k), el("td", "", v)); t.append(tr); } return t; }
async function openRun(id) {
  state.open = id; writeURL(); const page = $("run-page"), body = $("run-body"); page.hidden = false; body.replaceChildren(el("p", "muted", "loading…"));
  let info; try { info = await api("/api/run", new URLSearchParams({ run: id })); }
  catch (e) { body.replaceChildren(el("p", "error-box", String(e.message))); return; }
  const head = el("h2", "", info.name || info.run_id), sub = el("div", "muted", info.run_id + "  ·  ");
  sub.append(el("span", "status " + info.status, info.status)); body.replaceChildren(head, sub);
  if (info.error) body.append(el("h3", "", "error"), el("div", "error-box", info.error));
  if (info.notes) body.append(el("h3", "", "notes"), el("div", "", info.notes));
  body.append(el("h3", "", "run"), kv([["started", info.start_time ? new Date(info.start_time * 1000).toISOString() : ""],
    ["duration", duration(info.duration_s)], ["steps", info.num_steps], ["step range", `${info.first_step ?? ""} – ${info.last_step ?? ""}`],
    ["compacted", info.compacted ? "yes" : "no"]]));
  body.append(el("h3", "", "config"), kv(Object.entries(flatten(info.config)).map(([k, v]) => [k, JSON.stringify(v)])));
  const meta = info.meta || {}; body.append(el("h3", "", "meta"), kv(Object.entries(meta).map(([k, v]) =>
    [k, k === "git_dirty" ? (v ? "dirty" : "clean") : Array.isArray(v) ? v.join(" ") : typeof v === "object" ? JSON.stringify(v) : v])));
  if (info.ranks && info.ranks.length) body.append(el("h3", "", `ranks (${info.ranks.length} of world size ${info.world_size})`), rankTable(info.ranks));
  body.append(el("h3", "", `segments (${info.segments.length})`), segTable(info.segments), el("h3", "", "summary"), sumTable(info.summary));
}
function grid(headers, rows) { const t = el("table", "grid"); const h = el("tr"); for (const x of headers) h.append(el("th", "", x)); t.append(h);
  for (const r of rows) { const tr = el("tr"); r.forEach((v, i) => tr.append(el("td", i ? "num" : "", v))); t.append(tr); } return t; }
function segTable(segs) { return grid(["segment", "start step", "first", "last", "rows", "superseded", "started", "status"],
  segs.map((s) => [s.segment, s.start_step ?? "", s.first_step ?? "", s.last_step ?? "", s.rows ?? "", s.superseded_rows ?? "",
    s.start_time ? new Date(s.start_time * 1000).toISOString().slice(0, 19) : "", s.status || "(none)"])); }
function rankTable(ranks) { const t = grid(["rank", "status", "host", "pid", "device", "steps", "last step", "segments", "restart"],
  ranks.map((r) => [r.rank, r.status, r.host ?? "", r.pid ?? "", r.device ?? "", r.steps ?? "", r.last_step ?? "", r.segments ?? "", r.restart ?? ""]));
  t.classList.add("ranks-table"); [...t.rows].slice(1).forEach((tr, i) => { tr.cells[1].className = "status " + ranks[i].status; }); return t; }
function sumTable(summary) { return grid(["metric", "count", "NaN", "min", "max", "mean", "last", "step of min"],
  Object.entries(summary || {}).map(([m, s]) => [m, s.count, s.nan_count, num(s.min), num(s.max), num(s.mean), num(s.last), s.step_of_min ?? ""])); }
function closeRun() { state.open = null; writeURL(); $("run-page").hidden = true; }

function notice(text) { const n = $("notice"); n.textContent = text; n.hidden = false; }

// ---------- start ----------
function bind() {
  const f = $("filter"); f.value = state.q; f.addEventListener("input", () => { state.q = f.value; writeURL(); renderTable(); });
  const mf = $("metric-filter"); mf.value = state.metrics;
  mf.addEventListener("input", () => { state.metrics = mf.value; writeURL(); rebuildCharts(); renderTable(); loadMissing(); });
  const xs = $("xaxis"); xs.value = state.x; xs.addEventListener("change", () => { state.x = xs.value; state.zoom = null; writeURL(); zoomInfo(); rebuildCharts(); loadAll(); });
  const sm = $("smooth"); sm.value = state.smooth; $("smooth-value").textContent = state.smooth;
  sm.addEventListener("input", () => { state.smooth = +sm.value; $("smooth-value").textContent = sm.value; writeURL(); for (const m of panels.keys()) draw(m); });
  const g = $("group"); g.addEventListener("change", () => { state.group = g.value; writeURL(); for (const m of panels.keys()) draw(m); });
  $("run-close").addEventListener("click", closeRun); $("run-page").addEventListener("click", (e) => { if (e.target.id === "run-page") closeRun(); });
  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (e.key === "/" && !typing) { e.preventDefault(); f.focus(); }
    if (e.key === "m" && !typing && !e.ctrlKey && !e.metaKey) { e.preventDefault(); mf.focus(); }
    if (e.key === "Escape") { if (!$("run-page").hidden) closeRun();
      else if (document.activeElement === f) { f.value = ""; state.q = ""; writeURL(); renderTable(); }
      else if (document.activeElement === mf) { mf.value = ""; state.metrics = ""; writeURL(); rebuildCharts(); renderTable(); loadMissing(); } } });
  let resize; addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(() => { widthCache = 0; for (const m of panels.keys()) draw(m); }, 150); });
}
async function start() {
  window.steplog = { state, series, panels, requests, loads: 0, runs: [],
    data: (m) => { const p = panels.get(m); return p && p.plot ? p.plot.data : null; },
    plot: (m) => { const p = panels.get(m); return p ? p.plot : null; } };
  readURL(); bind(); zoomInfo();
  const timing = window.steplog.timing = { start: performance.now() };
  let body; try { body = await api("/api/runs"); }
  catch (e) { notice(`Cannot read the runs: ${e.message}`); window.steplog.ready = true; setTimeout(() => location.reload(), 5000); return; }
  $("root").textContent = body.root; $("root").title = body.root; setRuns(body.runs);
  timing.runs = performance.now();
  if (!state.explicit) state.selected = runs.slice(0, 10).map((r) => r.id);
  const unknown = state.selected.filter((id) => !byId.has(id)); state.selected = state.selected.filter((id) => byId.has(id));
  if (unknown.length) notice(`Not in this root (left out): ${unknown.join(", ")}`);
  refreshGroups(); $("group").value = state.group; renderTable(); timing.table = performance.now();
  firstScreen(); const fetching = fetchLines();  // the series travel while the panels are built
  rebuildCharts(); timing.charts = performance.now(); await loadAll(fetching); timing.data = performance.now();
  if (state.open) openRun(state.open);
  window.steplog.ready = true; chartsDrawn(); setTimeout(poll, POLL_MS);
}
start();
})();
