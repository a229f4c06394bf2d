// agproxy console: Dashboard, Monitor, Statistics and Model mapping pages.
"use strict";

const TZ_OFFSET = -new Date().getTimezoneOffset() * 60;  // seconds east of UTC, as the API wants
const pad2 = (n) => String(n).padStart(2, "0");
const clock = (ts) => { const d = new Date(ts * 1000); return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`; };
const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms");
const num = (v) => (v || 0).toLocaleString();

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad2(Math.floor((s % 3600) / 60))}m`;
}

// ---- Dashboard ---------------------------------------------------------------------------------
const dashboard = { timer: null, ticker: null, deadlines: [] };

function attentionItem(item) {
  const label = { cooling_down: "cooling down", forbidden: "forbidden", needs_relogin: "re-login needed" }[item.state] || item.state;
  const node = el("li", { class: "attention-item", "data-email": item.email, "data-state": item.state },
    el("span", { class: "state " + item.state }, label), el("b", {}, item.email));
  if (item.state === "cooling_down") {
    const left = el("span", { class: "countdown" });
    dashboard.deadlines.push({ node: left, at: Date.now() / 1000 + item.seconds_left });
    node.append(el("span", { class: "muted" }, item.model ? ` for ${item.model}, ` : " all models, "), left, el("span", { class: "muted" }, " left"));
  } else if (item.reason) {
    node.append(el("div", { class: "reason" }, item.reason));
  }
  return node;
}

function tickCountdowns() {
  const now = Date.now() / 1000;
  for (const d of dashboard.deadlines) d.node.textContent = duration(d.at - now);
}

async function loadDashboard() {
  const board = await api("GET", "/api/dashboard");
  const st = board.status, acc = board.accounts, hour = board.last_hour;
  $("dash-proxy").textContent = st.running ? "running" : "stopped";
  $("dash-proxy").className = st.running ? "ok-text" : "off-text";
  $("dash-proxy-sub").textContent = st.running ? `port ${st.port}` : "start it at the top right";
  $("dash-serving").textContent = `${acc.active} / ${acc.total}`;
  const off = [["disabled", "disabled"], ["forbidden", "forbidden"], ["needs_relogin", "to re-login"]]
    .filter(([k]) => acc[k]).map(([k, t]) => `${acc[k]} ${t}`);
  $("dash-accounts-sub").textContent = off.join(", ") || (acc.total ? "all enabled" : "no accounts yet");
  $("dash-requests").textContent = num(hour.requests);
  $("dash-tokens").textContent = `${compact(hour.input_tokens)} in · ${compact(hour.output_tokens)} out tokens`;
  $("dash-error-rate").textContent = (hour.error_rate * 100).toFixed(hour.error_rate && hour.error_rate < 0.1 ? 1 : 0) + "%";
  $("dash-error-rate").className = hour.error_rate > 0.05 ? "err-text" : "";
  $("dash-errors").textContent = `${num(hour.errors)} failed`;

  dashboard.deadlines = [];
  $("attention-list").replaceChildren(...board.attention.map(attentionItem));
  $("attention-empty").hidden = board.attention.length > 0;
  tickCountdowns();

  barChart($("dash-chart"), hour.series.map((p) => ({ ...p, ok: p.requests - p.errors })),
    [{ key: "ok", label: "answered", cls: "ok" }, { key: "errors", label: "failed", cls: "err" }],
    { label: (t) => clock(t).slice(0, 5), height: 180 });

  hbars($("dash-quota"), board.quota.map((q) => ({
    name: q.model, value: Math.round(q.average * 100),
    sub: `${q.accounts} account${q.accounts === 1 ? "" : "s"}${q.exhausted ? `, ${q.exhausted} exhausted` : ""}${q.next_reset_at ? ", " + until(q.next_reset_at) : ""}`,
    cls: q.average === 0 ? "empty" : q.average < 0.2 ? "low" : "",
  })), { format: (v) => v + "%", empty: "" });
  $("dash-quota-empty").hidden = board.quota.length > 0;

  $("next-up").replaceChildren(el("tr", {}, el("th", {}, "model"), el("th", {}, "account")),
    ...board.next_up.map((n) => el("tr", { "data-model": n.model }, el("td", {}, n.model),
      el("td", {}, n.email || el("span", { class: "err-text" }, "none free")))));
}

PAGE_HOOKS.dashboard = {
  enter() {
    clearInterval(dashboard.timer);
    clearInterval(dashboard.ticker);
    dashboard.timer = setInterval(() => loadDashboard().catch(() => {}), 5000);
    dashboard.ticker = setInterval(tickCountdowns, 1000);
    return loadDashboard();
  },
  leave() { clearInterval(dashboard.timer); clearInterval(dashboard.ticker); },
};

// ---- Monitor -----------------------------------------------------------------------------------
const MAX_ROWS = 300;
const monitor = { rows: [], paused: false, abort: null, reload: null, retry: null };

function monitorFilters() {
  return {
    status: $("mon-status").value, protocol: $("mon-protocol").value, model: $("mon-model").value.trim(),
    account: $("mon-account").value.trim(), q: $("mon-search").value.trim(), errors_only: $("mon-errors").checked,
  };
}

// The same filters as the API applies, for rows arriving live.
function matches(row, f) {
  if (f.errors_only && row.status < 400) return false;
  if (f.status && (f.status.endsWith("xx") ? String(row.status)[0] !== f.status[0] : String(row.status) !== f.status)) return false;
  if (f.protocol && row.protocol !== f.protocol) return false;
  const has = (value, part) => (value || "").toLowerCase().includes(part.toLowerCase());
  if (f.model && !has(row.requested_model, f.model) && !has(row.routed_model, f.model)) return false;
  if (f.account && !has(row.account, f.account)) return false;
  if (f.q && ![row.path, row.requested_model, row.routed_model, row.account, row.error].some((v) => has(v, f.q))) return false;
  return true;
}

function logRow(row) {
  const model = row.requested_model && row.routed_model && row.requested_model !== row.routed_model
    ? `${row.requested_model} → ${row.routed_model}` : row.routed_model || row.requested_model || "–";
  const tokens = row.input_tokens === null && row.output_tokens === null ? "–" : `${num(row.input_tokens)} → ${num(row.output_tokens)}`;
  const tries = (row.attempts || []).length;
  const tr = el("tr", { class: "log-row" + (row.status >= 400 ? " failed" : ""), "data-id": row.id, onclick: () => showDetail(row.id) },
    el("td", { class: "mono" }, clock(row.started_at)),
    el("td", {}, el("span", { class: "code c" + String(row.status)[0] }, String(row.status))),
    el("td", {}, row.protocol), el("td", { class: "mono path", title: row.path }, `${row.method} ${row.path}`),
    el("td", { class: "model", title: model }, model), el("td", { class: "muted" }, row.account || "–"),
    el("td", { class: "num" }, ms(row.duration_ms)), el("td", { class: "num" }, ms(row.ttfb_ms)),
    el("td", { class: "num" }, tokens), el("td", { class: "num" + (tries > 1 ? " warn-text" : "") }, String(tries || "–")));
  if (row.error) tr.title = row.error;
  return tr;
}

function renderMonitor() {
  $("mon-rows").replaceChildren(...monitor.rows.map(logRow));
  $("mon-empty").hidden = monitor.rows.length > 0;
  $("mon-count").textContent = monitor.rows.length ? `showing ${monitor.rows.length}${monitor.rows.length >= MAX_ROWS ? " newest" : ""}` : "";
}

async function loadLogs() {
  const f = monitorFilters();
  const params = new URLSearchParams({ limit: String(MAX_ROWS) });
  for (const [k, v] of Object.entries(f)) if (v) params.set(k, v === true ? "1" : v);
  monitor.rows = (await api("GET", "/api/logs?" + params)).logs;
  renderMonitor();
}

function addLive(row) {
  if (!matches(row, monitorFilters())) return;
  monitor.rows.unshift(row);
  if (monitor.rows.length > MAX_ROWS) monitor.rows.length = MAX_ROWS;
  const tr = logRow(row);
  tr.classList.add("new");
  $("mon-rows").prepend(tr);
  const extra = $("mon-rows").children[MAX_ROWS];
  if (extra) extra.remove();
  $("mon-empty").hidden = true;
  $("mon-count").textContent = `showing ${monitor.rows.length}`;
}

// Server-sent events read with fetch (EventSource cannot send the admin password).
async function follow() {
  monitor.abort?.abort();
  const abort = new AbortController();
  monitor.abort = abort;
  $("mon-live").className = "live";
  try {
    const response = await fetch("/api/logs/stream", {
      headers: { Authorization: "Bearer " + (sessionStorage.getItem(KEY_STORE) || "") }, signal: abort.signal });
    if (!response.ok) throw new Error(`live view: ${response.status}`);
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    $("mon-live").className = "live on";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (frame.startsWith("data: ") && !monitor.paused) addLive(JSON.parse(frame.slice(6)));
      }
    }
  } catch (err) {
    if (abort.signal.aborted) return;
  }
  if (monitor.abort === abort) {  // dropped (gateway restarting): catch up and reconnect
    $("mon-live").className = "live";
    monitor.retry = setTimeout(() => { loadLogs().catch(() => {}); follow(); }, 2000);
  }
}

async function showDetail(id) {
  const log = await api("GET", "/api/logs/" + encodeURIComponent(id));
  for (const tr of document.querySelectorAll(".log-row")) tr.classList.toggle("selected", tr.dataset.id === id);
  $("detail-title").textContent = `${log.status} ${log.method} ${log.path}`;
  const fields = [["time", new Date(log.started_at * 1000).toLocaleString()], ["protocol", log.protocol],
    ["requested model", log.requested_model], ["routed model", log.routed_model], ["provider", log.provider],
    ["account", log.account], ["duration", ms(log.duration_ms)], ["time to first byte", ms(log.ttfb_ms)],
    ["input tokens", log.input_tokens], ["output tokens", log.output_tokens], ["thinking tokens", log.thinking_tokens],
    ["client", log.client_ip], ["id", log.id]];
  $("detail-fields").replaceChildren(...fields.filter(([, v]) => v !== null && v !== undefined)
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  const attempts = log.attempts || [];
  $("detail-attempts").replaceChildren(...(attempts.length ? attempts.map((a) => el("li", { class: a.outcome === "ok" ? "ok" : "bad" },
    el("span", { class: "mono muted" }, `+${ms(a.at_ms)}`), " ", el("b", {}, a.outcome), " on ", a.account))
    : [el("li", { class: "muted" }, "No upstream call (answered by the gateway).")]));
  $("detail-error-box").hidden = !log.error;
  $("detail-error").textContent = log.error || "";
  const off = "Not captured: turn on “capture bodies” above (monitor_capture_bodies).";
  $("detail-request").textContent = log.request_body ?? off;
  $("detail-response").textContent = log.response_body ?? off;
  $("mon-detail").hidden = false;
}

async function saveMonitorSetting(key, value) {
  try {
    config = await api("PUT", "/api/config", { [key]: value });
    toast(key === "monitor_enabled" ? (value ? "Recording requests" : "Not recording requests") : (value ? "Capturing bodies" : "Not capturing bodies"));
  } catch (err) {
    toast(err.message);
  }
  renderMonitorSettings();
}

function renderMonitorSettings() {
  if (!config) return;
  for (const [id, key] of [["mon-enabled", "monitor_enabled"], ["mon-bodies", "monitor_capture_bodies"]]) {
    $(id).checked = Boolean(config.config[key]);
    $(id).disabled = config.env_overrides.includes(key);
    $(id).parentNode.title = $(id).disabled ? `set by AGPROXY_${key.toUpperCase()}` : "";
  }
}

PAGE_HOOKS.monitor = {
  enter() { renderMonitorSettings(); follow(); return loadLogs(); },
  leave() {
    const abort = monitor.abort;
    monitor.abort = null;
    abort?.abort();
    clearTimeout(monitor.retry);
  },
};

// ---- Statistics --------------------------------------------------------------------------------
const statsView = { hours: 24, bucket: "hour" };

function bucketLabel(bucket) {
  return (t) => {
    const d = new Date(t * 1000);
    if (bucket === "hour") return `${pad2(d.getHours())}:00`;
    const day = `${d.toLocaleString(undefined, { month: "short" })} ${d.getDate()}`;
    return bucket === "week" ? "wk " + day : day;
  };
}

async function loadStats() {
  const q = `hours=${statsView.hours}&tz_offset=${TZ_OFFSET}`;
  const [usage, summary] = await Promise.all([
    api("GET", `/api/stats/usage?bucket=${statsView.bucket}&${q}`), api("GET", `/api/stats/summary?${q}`)]);
  $("st-requests").textContent = num(summary.requests);
  $("st-errors").textContent = `${num(summary.errors)} failed`;
  $("st-input").textContent = num(summary.input_tokens);
  $("st-output").textContent = num(summary.output_tokens);
  $("st-thinking").textContent = summary.thinking_tokens ? `${num(summary.thinking_tokens)} thinking` : "";
  $("st-accounts").textContent = num(summary.accounts);
  $("st-avg").textContent = summary.requests ? `${ms(summary.avg_ms)} average` : "";
  const label = bucketLabel(statsView.bucket);
  barChart($("chart-tokens"), usage.series, [
    { key: "input_tokens", label: "input tokens", cls: "input" }, { key: "output_tokens", label: "output tokens", cls: "output" }], { label });
  barChart($("chart-requests"), usage.series.map((p) => ({ ...p, ok: p.requests - p.errors })), [
    { key: "ok", label: "answered", cls: "ok" }, { key: "errors", label: "failed", cls: "err" }], { label, height: 170 });
  const tokens = (r) => r.input_tokens + r.output_tokens;
  const breakdown = (rows, key) => rows.map((r) => ({
    name: r[key] || "–", value: tokens(r), sub: `tokens · ${num(r.requests)} requests${r.errors ? `, ${num(r.errors)} failed` : ""}` }));
  hbars($("by-model"), breakdown(summary.by_model, "model"), { format: compact });
  hbars($("by-account"), breakdown(summary.by_account, "account"), { format: compact });
}

async function exportCsv() {
  const response = await fetch(`/api/stats/export.csv?bucket=${statsView.bucket}&hours=${statsView.hours}&tz_offset=${TZ_OFFSET}`, {
    headers: { Authorization: "Bearer " + (sessionStorage.getItem(KEY_STORE) || "") } });
  if (!response.ok) { toast(`export failed: ${response.status}`); return; }
  const link = el("a", { href: URL.createObjectURL(await response.blob()),
    download: (response.headers.get("content-disposition") || "").match(/filename="([^"]+)"/)?.[1] || "agproxy-usage.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

PAGE_HOOKS.stats = { enter: () => loadStats() };

// ---- Model mapping -----------------------------------------------------------------------------
async function loadMappingPage() {
  const models = await api("GET", "/api/models");
  $("served-models").replaceChildren(...(models.served.length ? models.served.map((m) => el("span", { class: "chip" }, m))
    : [el("span", { class: "muted" }, "None yet: add an account.")]));
  $("builtin-table").replaceChildren(...Object.entries(models.builtin).map(([k, v]) => el("tr", {}, el("td", { class: "mono" }, k), el("td", { class: "mono" }, v))));
}

async function traceModel() {
  const model = $("trace-model").value.trim();
  if (!model) return;
  const out = $("trace-result");
  try {
    const found = await api("POST", "/api/models/trace", { model, rules: mappingRules() });
    const how = {
      rule: `by rule <code>${escapeHtml(found.rule)}</code>${found.target !== found.model ? ` (→ ${escapeHtml(found.target)}, the closest served)` : ""}`,
      builtin: `by the built-in table (<code>${escapeHtml(found.rule)}</code>)`,
      served: "served as asked", family: "the closest served model of its family",
      "claude-family": "the closest served Claude model",
    }[found.source];
    out.className = "trace " + (found.model ? "ok" : "bad");
    out.innerHTML = found.model
      ? `<code>${escapeHtml(found.requested)}</code> → <code>${escapeHtml(found.model)}</code> ${how}`
      : `<code>${escapeHtml(found.requested)}</code> → nothing serves it: requests get 404`;
  } catch (err) {
    out.className = "trace bad";
    out.textContent = err.message;
  }
}

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

PAGE_HOOKS.mapping = { enter: () => { renderMapping(); return loadMappingPage(); } };

// ---- wiring ------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  let typing = null;
  const refilter = () => { clearTimeout(typing); typing = setTimeout(() => loadLogs().catch((e) => toast(e.message)), 250); };
  for (const id of ["mon-status", "mon-protocol", "mon-errors"]) $(id).addEventListener("change", refilter);
  for (const id of ["mon-model", "mon-account", "mon-search"]) $(id).addEventListener("input", refilter);
  $("btn-mon-pause").addEventListener("click", () => {
    monitor.paused = !monitor.paused;
    $("btn-mon-pause").textContent = monitor.paused ? "Resume" : "Pause";
    $("mon-live").classList.toggle("paused", monitor.paused);
    if (!monitor.paused) loadLogs().catch((e) => toast(e.message));
  });
  $("btn-mon-clear").addEventListener("click", async () => {
    if (!confirm("Delete every recorded request?")) return;
    const { deleted } = await api("POST", "/api/logs/clear");
    monitor.rows = [];
    renderMonitor();
    $("mon-detail").hidden = true;
    toast(`Deleted ${deleted} records`);
  });
  $("btn-detail-close").addEventListener("click", () => { $("mon-detail").hidden = true; });
  $("mon-enabled").addEventListener("change", (e) => saveMonitorSetting("monitor_enabled", e.target.checked));
  $("mon-bodies").addEventListener("change", (e) => saveMonitorSetting("monitor_capture_bodies", e.target.checked));
  for (const tab of document.querySelectorAll("#stats-range .tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll("#stats-range .tab")) t.classList.toggle("active", t === tab);
      statsView.hours = Number(tab.dataset.hours);
      statsView.bucket = tab.dataset.bucket;
      loadStats().catch((e) => toast(e.message));
    });
  }
  $("btn-stats-csv").addEventListener("click", () => exportCsv().catch((e) => toast(e.message)));
  $("btn-trace").addEventListener("click", traceModel);
  $("trace-model").addEventListener("keydown", (e) => { if (e.key === "Enter") traceModel(); });
  window.addEventListener("resize", () => { if (currentPage === "stats") loadStats().catch(() => {}); });
});
