// agproxy console: Dashboard, Statistics and Model mapping pages.
"use strict";

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
    sub: `${q.accounts} account${q.accounts === 1 ? "" : "s"}${q.exhausted ? `, ${q.exhausted} exhausted` : ""}${q.protected ? `, ${q.protected} protected` : ""}${q.next_reset_at ? ", " + until(q.next_reset_at) : ""}`,
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
function mappingRow(from = "", to = "") {
  const button = (label, title, onclick) => el("button", { class: "btn small", type: "button", title, onclick }, label);
  const row = el("div", { class: "mapping-row" },
    el("span", { class: "order" },
      button("↑", "Move up", () => row.previousElementSibling && row.parentNode.insertBefore(row, row.previousElementSibling)),
      button("↓", "Move down", () => row.nextElementSibling && row.parentNode.insertBefore(row.nextElementSibling, row))),
    el("input", { class: "map-from", placeholder: "requested id, e.g. gpt-4*", value: from }),
    el("span", { class: "arrow" }, "→"),
    el("input", { class: "map-to", placeholder: "served model, e.g. gemini-3-flash", value: to }),
    button("Remove", "Remove this rule", () => row.remove()));
  return row;
}

function mappingRules() {
  const rules = {};
  for (const row of document.querySelectorAll(".mapping-row")) {
    const from = row.querySelector(".map-from").value.trim();
    const to = row.querySelector(".map-to").value.trim();
    if (from && to) rules[from] = to;
  }
  return rules;
}

function renderMapping() {
  const rules = config.config.model_mapping || {};
  $("mapping-rows").replaceChildren(...Object.entries(rules).map(([k, v]) => mappingRow(k, v)));
  if (!Object.keys(rules).length) $("mapping-rows").append(mappingRow());
}

async function saveMapping() {
  const rules = mappingRules();
  $("mapping-error").hidden = true;
  try {
    config = await api("PUT", "/api/config", { model_mapping: Object.keys(rules).length ? rules : null });
    renderMapping();
    toast("Mapping saved");
  } catch (err) {
    $("mapping-error").textContent = err.message;
    $("mapping-error").hidden = false;
  }
}

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
