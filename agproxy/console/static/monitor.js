// agproxy console: the Monitor page (live requests, filters, details).
import { api, openStream } from "./api.js";
import { $, el, toast } from "./dom.js";
import { clock, ms, num } from "./format.js";
import { store } from "./store.js";
import { language, t } from "./i18n.js";

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
  if (f.q && ![row.path, row.requested_model, row.routed_model, row.account, row.error, row.user_agent].some((v) => has(v, f.q))) return false;
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
  $("mon-count").textContent = monitor.rows.length
    ? t(monitor.rows.length >= MAX_ROWS ? "mon.showing_newest" : "mon.showing", { n: monitor.rows.length }) : "";
}

async function loadLogs() {
  const f = monitorFilters();
  const params = new URLSearchParams({ limit: String(MAX_ROWS) });
  for (const [k, v] of Object.entries(f)) if (v) params.set(k, v === true ? "1" : v);
  monitor.rows = (await api("GET", "/logs?" + params)).logs;
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
  $("mon-count").textContent = t("mon.showing", { n: monitor.rows.length });
}

// Server-sent events read with fetch (EventSource cannot send the admin password).
async function follow() {
  monitor.abort?.abort();
  const abort = new AbortController();
  monitor.abort = abort;
  $("mon-live").className = "live";
  try {
    const response = await openStream("/logs/stream", abort.signal);
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
  } catch {
    if (abort.signal.aborted) return;
  }
  if (monitor.abort === abort) {  // dropped (gateway restarting): catch up and reconnect
    $("mon-live").className = "live";
    monitor.retry = setTimeout(() => { loadLogs().catch(() => {}); follow(); }, 2000);
  }
}

// A retired model's error names the successor the upstream suggested: one click maps it.
const RETIRED = /model (\S+) is no longer available upstream; it suggests ([\w.-]*[\w-])/;

function offerSuccessor(error) {
  const found = RETIRED.exec(error);
  const box = $("detail-successor");
  box.hidden = !found;
  if (!found) return;
  const [, old, successor] = found;
  box.replaceChildren(el("button", { class: "btn primary small", type: "button", onclick: async () => {
    const rules = { ...(store.config.config.model_mapping || {}), [old]: successor };
    try {
      store.config = await api("PUT", "/config", { model_mapping: rules });
      toast(t("mon.mapped", { old, successor }));
    } catch (err) {
      toast(err.message);
    }
  } }, t("mon.map", { old, successor })));
}

async function showDetail(id) {
  const log = await api("GET", "/logs/" + encodeURIComponent(id));
  for (const tr of document.querySelectorAll(".log-row")) tr.classList.toggle("selected", tr.dataset.id === id);
  $("detail-title").textContent = `${log.status} ${log.method} ${log.path}`;
  const fields = [[t("mon.time"), new Date(log.started_at * 1000).toLocaleString(language())], [t("mon.protocol"), log.protocol],
    [t("mon.f_requested"), log.requested_model], [t("mon.f_routed"), log.routed_model], [t("mon.f_provider"), log.provider],
    [t("mon.account"), log.account], [t("mon.f_key"), log.key_name], [t("mon.duration"), ms(log.duration_ms)], [t("mon.f_ttfb"), ms(log.ttfb_ms)],
    [t("mon.f_input"), log.input_tokens], [t("mon.f_output"), log.output_tokens], [t("mon.f_thinking"), log.thinking_tokens],
    [t("mon.f_client"), log.client_ip], [t("mon.f_user_agent"), log.user_agent], ["id", log.id]];
  $("detail-fields").replaceChildren(...fields.filter(([, v]) => v !== null && v !== undefined)
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  const attempts = log.attempts || [];
  $("detail-attempts").replaceChildren(...(attempts.length ? attempts.map((a) => el("li", { class: a.outcome === "ok" ? "ok" : "bad" },
    el("span", { class: "mono muted" }, `+${ms(a.at_ms)}`), " ", el("b", {}, a.outcome), " " + t("mon.on") + " ", a.account))
    : [el("li", { class: "muted" }, t("mon.no_upstream"))]));
  $("detail-error-box").hidden = !log.error;
  $("detail-error").textContent = log.error || "";
  offerSuccessor(log.error || "");
  const off = t("mon.not_captured");
  $("detail-request").textContent = log.request_body ?? off;
  $("detail-response").textContent = log.response_body ?? off;
  $("mon-detail").hidden = false;
}

async function saveMonitorSetting(key, value) {
  try {
    store.config = await api("PUT", "/config", { [key]: value });
    toast(t(key === "monitor_enabled" ? (value ? "mon.recording" : "mon.not_recording") : (value ? "mon.capturing" : "mon.not_capturing")));
  } catch (err) {
    toast(err.message);
  }
  renderMonitorSettings();
}

function renderMonitorSettings() {
  const config = store.config;
  if (!config) return;
  for (const [id, key] of [["mon-enabled", "monitor_enabled"], ["mon-bodies", "monitor_capture_bodies"]]) {
    $(id).checked = Boolean(config.config[key]);
    $(id).disabled = config.env_overrides.includes(key);
    $(id).parentNode.title = $(id).disabled ? t("mon.set_by", { var: "AGPROXY_" + key.toUpperCase() }) : "";
  }
}

function enter() {
  renderMonitorSettings();
  follow();
  return loadLogs();
}

function leave() {
  const abort = monitor.abort;
  monitor.abort = null;
  abort?.abort();
  clearTimeout(monitor.retry);
}

function wire() {
  let typing = null;
  const refilter = () => { clearTimeout(typing); typing = setTimeout(() => loadLogs().catch((e) => toast(e.message)), 250); };
  for (const id of ["mon-status", "mon-protocol", "mon-errors"]) $(id).addEventListener("change", refilter);
  for (const id of ["mon-model", "mon-account", "mon-search"]) $(id).addEventListener("input", refilter);
  $("btn-mon-pause").addEventListener("click", () => {
    monitor.paused = !monitor.paused;
    $("btn-mon-pause").textContent = t(monitor.paused ? "mon.resume" : "mon.pause");
    $("mon-live").classList.toggle("paused", monitor.paused);
    if (!monitor.paused) loadLogs().catch((e) => toast(e.message));
  });
  $("btn-mon-clear").addEventListener("click", async () => {
    if (!confirm(t("mon.confirm_clear"))) return;
    const { deleted } = await api("POST", "/logs/clear");
    monitor.rows = [];
    renderMonitor();
    $("mon-detail").hidden = true;
    toast(t("mon.deleted", { n: deleted }));
  });
  $("btn-detail-close").addEventListener("click", () => { $("mon-detail").hidden = true; });
  $("mon-enabled").addEventListener("change", (e) => saveMonitorSetting("monitor_enabled", e.target.checked));
  $("mon-bodies").addEventListener("change", (e) => saveMonitorSetting("monitor_capture_bodies", e.target.checked));
}

export const monitorPage = { title: "nav.monitor", wire, enter, leave };
