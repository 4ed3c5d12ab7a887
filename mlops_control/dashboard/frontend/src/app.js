// The dashboard's pages, drawn from the JSON API and redrawn on every poll. Charts: uPlot.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";

const app = document.getElementById("app");
const POLL_MS = Number(app.dataset.pollMs) || 5000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const charts = new Map(); // chart id -> uPlot, kept across polls so a redraw only sets data

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (x, digits = 3) => (x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(digits));
const pct = (x) => (x === null || x === undefined ? "—" : `${Math.round(x)}%`);
const share = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`);
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "—");
const ago = (t) => {
  if (!t) return "—";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
};
const link = (href, text) => `<a href="${esc(href)}">${esc(text)}</a>`;
const enc = encodeURIComponent;

async function getJson(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function setStatus(text, bad = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = bad ? "bad" : "";
}

function crumbs(parts) {
  document.getElementById("crumbs").innerHTML = parts.map(([h, t]) => (h ? link(h, t) : esc(t))).join(" / ");
}

// --- charts ----------------------------------------------------------------------------------

// Series given as {label: [[t, y], ...]} are aligned on the union of their times (uPlot's layout).
function align(seriesByLabel) {
  const times = [...new Set(Object.values(seriesByLabel).flatMap((pts) => pts.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = Object.values(seriesByLabel).map((pts) => {
    const col = new Array(times.length).fill(null);
    for (const [t, y] of pts) col[index.get(t)] = y;
    return col;
  });
  return [times, ...columns];
}

// Vertical markers (decisions) drawn over the plot, coloured by action.
function markersPlugin(getMarkers) {
  const colour = { promote: "#2ca02c", rollback: "#d62728", step_up: "#1f77b4", hold: "#aaaaaa" };
  return {
    hooks: {
      draw: [(u) => {
        const { ctx, bbox } = u;
        ctx.save();
        for (const m of getMarkers()) {
          const x = Math.round(u.valToPos(m.at, "x", true));
          if (x < bbox.left || x > bbox.left + bbox.width) continue;
          ctx.strokeStyle = colour[m.action] || "#555";
          ctx.lineWidth = m.action === "promote" || m.action === "rollback" ? 3 : 1;
          ctx.setLineDash(m.action === "hold" ? [4, 4] : []);
          ctx.beginPath();
          ctx.moveTo(x, bbox.top);
          ctx.lineTo(x, bbox.top + bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
}

function lineChart(id, title, seriesByLabel, { yLabel = "", markers = null, dashed = [] } = {}) {
  const el = document.getElementById(id);
  if (!el) return;
  const labels = Object.keys(seriesByLabel);
  const data = align(seriesByLabel);
  if (!data[0].length) {
    el.innerHTML = `<p class="empty">${esc(title)}: no data yet</p>`;
    charts.delete(id);
    return;
  }
  const key = `${id}:${labels.join("|")}`;
  const existing = charts.get(id);
  if (existing && existing.key === key && el.contains(existing.plot.root)) {
    existing.markers = markers || [];
    existing.plot.setData(data);
    return;
  }
  el.innerHTML = "";
  const state = { key, markers: markers || [] };
  const opts = {
    title,
    width: Math.max(320, el.clientWidth || 640),
    height: 220,
    scales: { x: { time: true } },
    axes: [{}, { label: yLabel }],
    series: [{}, ...labels.map((l, i) => ({
      label: l,
      stroke: COLORS[i % COLORS.length],
      width: 2,
      dash: dashed.includes(l) ? [6, 4] : undefined,
      spanGaps: true,
    }))],
    plugins: [markersPlugin(() => state.markers)],
  };
  state.plot = new uPlot(opts, data, el);
  charts.set(id, state);
}

function barChart(id, title, bins, seriesByLabel) {
  const el = document.getElementById(id);
  if (!el) return;
  const labels = Object.keys(seriesByLabel);
  const xs = bins.map((_, i) => i);
  const data = [xs, ...labels.map((l) => seriesByLabel[l] || xs.map(() => null))];
  charts.get(id)?.plot.destroy();
  el.innerHTML = "";
  // Two series side by side: the first bar left of each bucket's centre, the second right of it.
  const bars = (i) => uPlot.paths.bars({ size: [0.4, 80], align: labels.length > 1 ? (i === 0 ? -1 : 1) : 0 });
  const plot = new uPlot({
    title,
    width: Math.max(320, el.clientWidth || 640),
    height: 240,
    scales: { x: { time: false, range: [-0.5, bins.length - 0.5] } },
    axes: [{ values: (u, ticks) => ticks.map((t) => bins[t] ?? ""), rotate: -30, size: 60 }, { label: "share of rows" }],
    series: [{}, ...labels.map((l, i) => ({ label: l, stroke: COLORS[i], fill: COLORS[i] + "99", paths: bars(i), points: { show: false } }))],
  }, data, el);
  charts.set(id, { key: id, plot });
}

// --- pages -----------------------------------------------------------------------------------

function driftCell(d) {
  if (!d) return `<span class="muted" data-field="drift">no data</span>`;
  const state = d.drifted.length ? "drifting" : "ok";
  const names = d.drifted.length ? ` (${d.drifted.map(esc).join(", ")})` : "";
  return `<span class="pill ${state}" data-field="drift" data-share="${d.share_drifted}">${state}: ${share(d.share_drifted)} drifted${names}</span>`;
}

function rolloutCell(r) {
  if (!r) return `<span class="muted" data-field="rollout">—</span>`;
  if (!r.in_progress) return `<span class="muted" data-field="rollout">v${esc(r.canary)} ${esc(r.outcome)}d</span>`;
  return `<span class="pill rolling" data-field="rollout" data-percent="${r.canary_percent}">v${esc(r.stable)} → v${esc(r.canary)} at ${pct(r.canary_percent)}</span>`;
}

function qualityCell(q) {
  if (!q) return `<span class="muted" data-field="quality">no labels</span>`;
  const v = q.accuracy ?? q.rmse;
  return `<span data-field="quality" data-value="${v}">${q.accuracy !== null && q.accuracy !== undefined ? "accuracy" : "rmse"} ${num(v)} <small>(v${esc(q.version)}, ${q.labelled ?? "?"} labels)</small></span>`;
}

async function portfolioPage() {
  const doc = await getJson("/api/portfolio");
  crumbs([[null, "portfolio"]]);
  const rows = doc.models.map((m) => `
    <tr data-model="${esc(m.name)}">
      <td>${link(`/models/${enc(m.name)}`, m.name)}</td>
      <td data-field="champion">${m.champion === null ? "—" : `v${m.champion}`} <small>${m.champion_since ? ago(m.champion_since) : ""}</small></td>
      <td data-field="training">${m.training_metric ? `${esc(m.training_metric.name)} ${num(m.training_metric.value)}` : "—"}</td>
      <td>${qualityCell(m.quality)}</td>
      <td>${driftCell(m.drift)}</td>
      <td>${rolloutCell(m.rollout)}</td>
      <td data-field="decision" data-action="${esc(m.last_decision?.action ?? "")}" title="${esc(m.last_decision?.reason ?? "")}">${m.last_decision ? `${esc(m.last_decision.action)} <small>${ago(m.last_decision.at)}</small>` : "—"}</td>
    </tr>`).join("");
  app.innerHTML = `
    <h1>Models <small>${doc.models.length} · source: ${esc(doc.source)}</small></h1>
    <table class="grid" id="portfolio"><thead><tr><th>Model</th><th>Champion</th><th>Training</th>
    <th>Live quality</th><th>Drift</th><th>Rollout</th><th>Last decision</th></tr></thead>
    <tbody>${rows || `<tr><td colspan="7" class="empty">No models yet: register one (mlops demo, or the training pipeline).</td></tr>`}</tbody></table>`;
}

function versionsTable(doc) {
  const rows = doc.versions.slice().reverse().map((v) => `
    <tr${v.champion ? ' class="champion"' : ""}><td>v${v.version}${v.champion ? " ★" : ""}</td><td>${esc(v.created_at)}</td>
    <td>${Object.entries(v.metrics || {}).slice(0, 4).map(([k, x]) => `${esc(k)} ${num(x)}`).join("<br>")}</td>
    <td>${v.run_url ? link(v.run_url, v.run_id) : esc(v.run_id || "—")}</td>
    <td><code>${esc((v.data_fingerprint || "").slice(0, 12))}</code><br><small>${esc(v.data_source)}</small></td>
    <td><code>${esc(v.code_version)}</code></td><td>${esc(v.estimator)}</td></tr>`).join("");
  return `<table class="grid"><thead><tr><th>Version</th><th>Registered</th><th>Metrics</th><th>Run</th>
    <th>Data</th><th>Code</th><th>Estimator</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function rolloutSection(r) {
  if (!r) return `<p class="empty" id="rollout-summary">No rollout recorded.</p>`;
  const last = r.decisions[r.decisions.length - 1];
  const checks = Object.entries(r.checks).map(([name, pts]) => {
    const [, evidence, bound, status] = pts[pts.length - 1];
    return `<tr data-check="${esc(name)}"><td>${esc(name)}</td><td class="${esc(status)}">${esc(status)}</td>
      <td data-field="evidence">${num(evidence)}</td><td data-field="bound">${num(bound)}</td></tr>`;
  }).join("");
  const decisions = r.decisions.slice().reverse().slice(0, 20).map((d) => `
    <tr><td>${when(d.at)}</td><td>${esc(d.action)}</td><td>${pct(d.previous_percent)} → ${pct(d.canary_percent)}</td><td>${esc(d.reason)}</td></tr>`).join("");
  return `
    <div id="rollout-summary" class="summary">
      <span>stable <b>v${esc(r.stable)}</b></span><span>canary <b>v${esc(r.canary)}</b></span>
      <span>canary traffic <b data-field="canary_percent">${pct(r.canary_percent)}</b></span>
      <span>${r.in_progress ? "in progress" : `finished: <b>${esc(r.outcome)}</b>`}</span>
      <span>last decision <b data-field="last_action">${esc(last?.action)}</b> ${last ? ago(last.at) : ""}</span>
    </div>
    <div class="chart" id="chart-share"></div>
    <table class="grid" id="checks"><thead><tr><th>Check</th><th>Status</th><th>Evidence</th><th>Bound</th></tr></thead><tbody>${checks}</tbody></table>
    <div class="charts">${Object.keys(r.checks).map((n) => `<div class="chart" id="chart-check-${esc(n)}"></div>`).join("")}</div>
    <details><summary>Decisions (${r.decisions.length})</summary><table class="grid"><tbody>${decisions}</tbody></table></details>`;
}

function retrainingTable(runs) {
  if (!runs.length) return `<p class="empty">No retraining runs recorded.</p>`;
  return `<table class="grid"><thead><tr><th>When</th><th>Event</th><th>Run</th><th>Version</th><th>Reason</th></tr></thead><tbody>${
    runs.slice().reverse().map((r) => `<tr><td>${when(r.at)}</td><td>${esc(r.event)}</td>
      <td>${r.run_url ? link(r.run_url, r.run_name || r.run_id) : esc(r.run_name || r.run_id || "—")}</td>
      <td>${r.version ? `v${esc(r.version)}` : "—"}</td><td>${esc(Array.isArray(r.reason) ? r.reason.join("; ") : r.reason)}</td></tr>`).join("")}</tbody></table>`;
}

function driftTable(doc) {
  const series = doc.drift.series;
  const threshold = doc.drift.thresholds?.psi;
  const rows = Object.entries(series).map(([f, pts]) => {
    const psi = pts.length ? pts[pts.length - 1][1] : null;
    const over = threshold !== undefined && psi !== null && psi >= threshold;
    return `<tr data-feature="${esc(f)}"><td>${link(`/models/${enc(doc.name)}/features/${enc(f)}`, f)}</td>
      <td data-field="psi" class="${over ? "fail" : ""}">${num(psi)}</td></tr>`;
  }).join("");
  return `<table class="grid" id="drift-latest"><thead><tr><th>Feature</th><th>PSI (latest, v${esc(doc.drift.version ?? "—")})</th></tr></thead><tbody>${rows}</tbody></table>`;
}

async function modelPage(name) {
  const doc = await getJson(`/api/models/${enc(name)}`);
  crumbs([["/", "portfolio"], [null, name]]);
  if (!document.getElementById("model-page") || app.dataset.model !== name) {
    charts.clear();
    app.dataset.model = name;
    app.innerHTML = `<div id="model-page">
      <h1>${esc(name)} <small id="champion"></small></h1>
      <section><h2>Current rollout</h2><div id="rollout"></div></section>
      <section><h2>Champion quality from label feedback</h2><div class="chart" id="chart-quality"></div></section>
      <section><h2>Drift per feature</h2><div class="chart" id="chart-drift"></div><div id="drift"></div></section>
      <section><h2>Versions and lineage</h2><div id="versions"></div></section>
      <section><h2>Retraining runs</h2><div id="retraining"></div></section></div>`;
  }
  document.getElementById("champion").textContent = doc.champion === null ? "no champion" : `champion v${doc.champion}`;
  document.getElementById("rollout").innerHTML = rolloutSection(doc.rollout);
  document.getElementById("drift").innerHTML = driftTable(doc);
  document.getElementById("versions").innerHTML = versionsTable(doc);
  document.getElementById("retraining").innerHTML = retrainingTable(doc.retraining);
  const markers = doc.rollout ? doc.rollout.decisions : [];
  const quality = Object.fromEntries(Object.entries(doc.quality).map(([v, pts]) => [`v${v}`, pts.map((p) => [p[0], p[1] ?? p[2]])]));
  lineChart("chart-quality", "live accuracy (rmse for regression) per version", quality, { markers });
  const drift = { ...doc.drift.series };
  const threshold = doc.drift.thresholds?.psi;
  const times = Object.values(drift).flatMap((pts) => pts.map((p) => p[0]));
  if (threshold !== undefined && times.length) drift[`threshold ${threshold}`] = [[Math.min(...times), threshold], [Math.max(...times), threshold]];
  lineChart("chart-drift", "PSI per feature vs the training reference", drift, { markers, dashed: [`threshold ${threshold}`] });
  if (doc.rollout) {
    const shares = Object.fromEntries(Object.entries(doc.rollout.share).map(([v, pts]) => [`v${v}`, pts.map((p) => [p[0], 100 * p[1]])]));
    lineChart("chart-share", "traffic share per version (% of requests in each analysis window)", shares, { markers: doc.rollout.decisions, yLabel: "%" });
    for (const [n, pts] of Object.entries(doc.rollout.checks)) {
      lineChart(`chart-check-${n}`, `${n}: evidence vs bound`, { evidence: pts.map((p) => [p[0], p[1]]), bound: pts.map((p) => [p[0], p[2]]) },
        { markers: doc.rollout.decisions, dashed: ["bound"] });
    }
  }
}

async function featurePage(model, feature) {
  const doc = await getJson(`/api/models/${enc(model)}/features/${enc(feature)}`);
  crumbs([["/", "portfolio"], [`/models/${enc(model)}`, model], [null, feature]]);
  if (!document.getElementById("feature-page")) {
    charts.clear();
    app.innerHTML = `<div id="feature-page"><h1>${esc(model)} · ${esc(feature)}</h1><div id="feature-summary" class="summary"></div>
      <div class="chart" id="chart-dist"></div><div class="chart" id="chart-psi"></div><section id="slices"></section></div>`;
  }
  const latest = doc.latest || {};
  const threshold = doc.thresholds?.psi;
  document.getElementById("feature-summary").innerHTML = `
    <span>version <b>v${esc(doc.version)}</b></span><span>${esc(doc.kind)}</span>
    <span>PSI <b data-field="psi">${num(latest.psi)}</b>${threshold !== undefined ? ` (threshold ${threshold})` : ""}</span>
    <span>${esc(latest.test || "")} effect <b data-field="effect">${num(latest.effect)}</b></span>
    <span>judged <b data-field="drifted">${latest.drifted === undefined ? "—" : latest.drifted ? "drifted" : "not drifted"}</b></span>
    <span>window rows <b>${doc.rows}</b></span>
    ${doc.moments ? `<span>live mean <b>${num(doc.moments.mean)}</b> ± <b>${num(doc.moments.std)}</b></span>` : ""}`;
  const series = { "training reference": doc.reference };
  if (doc.live) series["live window"] = doc.live;
  barChart("chart-dist", "distribution: live window vs training reference", doc.bins, series);
  const psi = { PSI: doc.psi };
  if (threshold !== undefined && doc.psi.length) psi[`threshold ${threshold}`] = [[doc.psi[0][0], threshold], [doc.psi[doc.psi.length - 1][0], threshold]];
  lineChart("chart-psi", "PSI over time", psi, { dashed: [`threshold ${threshold}`] });
  document.getElementById("slices").innerHTML = sliceSection(doc);
}

// The holdout metrics per category when this feature is the version's slice column; else a line
// naming the slice column, linked to its page.
function sliceSection(doc) {
  const s = doc.slices;
  if (!s) {
    if (doc.slice_error) return `<p class="error" id="slice-note">${esc(doc.slice_error)}</p>`;
    if (!doc.slice_column) return `<p class="muted" id="slice-note">v${esc(doc.version)} has no holdout metrics per slice recorded.</p>`;
    return `<p class="muted" id="slice-note">Holdout metrics per slice of v${esc(doc.version)}: by ${link(`/models/${enc(doc.model)}/features/${enc(doc.slice_column)}`, doc.slice_column)}.</p>`;
  }
  const rows = s.categories.map((c) => `
    <tr data-category="${esc(c.category ?? "")}"><td data-field="category">${c.category === null ? `<span class="muted">missing</span>` : esc(c.category)}</td>
      <td data-field="training_share">${share(c.training_share)}</td><td data-field="live_share">${share(c.live_share)}</td>
      <td data-field="holdout_rows">${c.holdout_rows ?? "—"}</td>
      ${s.shown_metrics.map((m) => `<td data-metric="${esc(m)}">${num(c.metrics[m])}</td>`).join("")}</tr>`).join("");
  return `<h2>Slices <small>holdout metrics of v${esc(doc.version)} per ${esc(s.column)}</small></h2>
    <table class="grid" id="slice-table"><thead><tr><th>${esc(s.column)}</th><th>Training share</th><th>Live share</th>
    <th>Holdout rows</th>${s.shown_metrics.map((m) => `<th>${esc(m)}</th>`).join("")}</tr></thead><tbody>${rows}</tbody></table>`;
}

function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "models" && parts.length === 4 && parts[2] === "features") return () => featurePage(parts[1], parts[3]);
  if (parts[0] === "models" && parts.length === 2) return () => modelPage(parts[1]);
  return portfolioPage;
}

async function tick(render) {
  try {
    await render();
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    setStatus(`error: ${e.message}`, true);
    if (app.textContent.trim() === "Loading…") app.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

const render = route();
tick(render);
setInterval(() => tick(render), POLL_MS);
