// agproxy console: the Dashboard: service, accounts needing attention with their
// countdowns, the last hour's traffic and quota, refreshed every few seconds.
import { verifyLink } from "./accounts.js";
import { api } from "./api.js";
import { barChart, hbars } from "./charts.js";
import { $, el, toast } from "./dom.js";
import { clock, compact, duration, num, span, until } from "./format.js";
import { t } from "./i18n.js";

const dashboard = { timer: null, ticker: null, deadlines: [] };

function attentionItem(item) {
  const label = { cooling_down: t("dash.state_cooling_down"), forbidden: t("dash.state_forbidden"), needs_relogin: t("dash.state_needs_relogin"),
    needs_verification: t("dash.state_needs_verification"), refused: t("dash.state_refused") }[item.state] || item.state;
  const node = el("li", { class: "attention-item", "data-email": item.email, "data-state": item.state },
    el("span", { class: "state " + item.state }, label), el("b", {}, item.email));
  if (item.state === "cooling_down") {
    const left = el("span", { class: "countdown" });
    dashboard.deadlines.push({ node: left, at: Date.now() / 1000 + item.seconds_left });
    node.append(el("span", { class: "muted" }, " " + (item.model ? t("dash.cool_for", { model: item.model }) : t("dash.cool_all")) + " "), left, el("span", { class: "muted" }, " " + t("dash.left")));
  } else if (item.reason) {
    node.append(el("div", { class: "reason" }, item.reason));
  }
  const link = verifyLink(item.link);
  if (link) node.append(link);
  if (item.state !== "needs_relogin") {  // a new sign-in is the only cure for that one
    node.append(el("button", { class: "btn small reset", type: "button", "data-action": "reset",
      title: t("dash.reset_title"), onclick: () => reset(item) }, t("common.reset")));
  }
  return node;
}

async function reset(item) {
  try {
    const done = await api("POST", `/accounts/${item.account_id}/reset`, {});
    toast(t("dash.reset_done", { email: item.email, n: done.cooldowns_cleared }));
  } catch (err) {
    toast(err.message);
  }
  await loadDashboard();
}

// When the model's pool can serve again: now, after the soonest cooldown or reset (5-hour
// or weekly) among its accounts, or at no known time.
function recovery(q, now) {
  if (q.recovers_at === null) return t("dash.no_recovery");
  const left = q.recovers_at - now;
  return left < 1 ? t("dash.available_now") : t("dash.recovers_in", { time: span(left) });  // the same instant, a moment later
}

function tickCountdowns() {
  const now = Date.now() / 1000;
  for (const d of dashboard.deadlines) d.node.textContent = duration(d.at - now);
}

async function loadDashboard() {
  const board = await api("GET", "/dashboard");
  const st = board.status, acc = board.accounts, hour = board.last_hour;
  $("dash-proxy").textContent = t(st.running ? "status.running" : "status.stopped");
  $("dash-proxy").className = st.running ? "ok-text" : "off-text";
  $("dash-proxy-sub").textContent = st.running ? t("dash.port", { port: st.port }) : t("dash.start_hint");
  $("dash-serving").textContent = `${acc.active} / ${acc.total}`;
  const off = [["disabled", "dash.n_disabled"], ["forbidden", "dash.n_forbidden"], ["needs_relogin", "dash.n_relogin"]]
    .filter(([k]) => acc[k]).map(([k, key]) => t(key, { n: acc[k] }));
  $("dash-accounts-sub").textContent = off.join(", ") || (acc.total ? t("dash.all_enabled") : t("dash.no_accounts"));
  $("dash-requests").textContent = num(hour.requests);
  $("dash-tokens").textContent = t("dash.tokens_sub", { in: compact(hour.input_tokens), out: compact(hour.output_tokens) });
  $("dash-error-rate").textContent = (hour.error_rate * 100).toFixed(hour.error_rate && hour.error_rate < 0.1 ? 1 : 0) + "%";
  $("dash-error-rate").className = hour.error_rate > 0.05 ? "err-text" : "";
  $("dash-errors").textContent = t("common.n_failed", { n: num(hour.errors) });

  dashboard.deadlines = [];
  $("attention-list").replaceChildren(...board.attention.map(attentionItem));
  $("attention-empty").hidden = board.attention.length > 0;
  tickCountdowns();

  barChart($("dash-chart"), hour.series.map((p) => ({ ...p, ok: p.requests - p.errors })),
    [{ key: "ok", label: t("stats.answered"), cls: "ok" }, { key: "errors", label: t("stats.failed"), cls: "err" }],
    { label: (t) => clock(t).slice(0, 5), height: 180 });

  hbars($("dash-quota"), board.quota.map((q) => ({
    name: q.model, value: Math.round(q.average * 100),
    sub: [t(q.accounts === 1 ? "dash.accounts_one" : "dash.accounts_many", { n: q.accounts }),
      q.exhausted ? t("dash.n_exhausted", { n: q.exhausted }) : "", q.protected ? t("dash.n_protected", { n: q.protected }) : "",
      q.next_reset_at ? until(q.next_reset_at) : ""].filter(Boolean).join(", ") + ` · ${recovery(q, board.now)}`,
    cls: q.average === 0 ? "empty" : q.average < 0.2 ? "low" : "",
  })), { format: (v) => v + "%", empty: "" });
  $("dash-quota-empty").hidden = board.quota.length > 0;

  showProcesses(board.processes);

  $("next-up").replaceChildren(el("tr", {}, el("th", {}, t("mon.model")), el("th", {}, t("mon.account"))),
    ...board.next_up.map((n) => el("tr", { "data-model": n.model }, el("td", {}, n.model),
      el("td", {}, n.email || el("span", { class: "err-text" }, t("dash.none_free"))))));
}

// Every process serving this gateway (workers, other hosts), when they share a Redis.
function showProcesses(processes) {
  $("processes-card").hidden = !processes;
  if (!processes) return;
  const now = Date.now() / 1000;
  $("processes").replaceChildren(
    el("tr", {}, ...["host", "pid", "worker", "listening", "service", "requests", "up"].map((h) => el("th", {}, t("dash.col_" + h)))),
    ...processes.map((p) => el("tr", { "data-pid": String(p.pid), class: p.this_process ? "this-process" : "" },
      el("td", {}, p.host + (p.this_process ? " " + t("dash.this_one") : "")), el("td", {}, String(p.pid)),
      el("td", {}, String(p.worker)), el("td", {}, p.listen),
      el("td", { class: p.running ? "ok-text" : "off-text" }, t(p.running ? "status.running" : "status.stopped")),
      el("td", {}, num(p.requests)), el("td", {}, span(now - p.started_at)))));
}

export const dashboardPage = {
  title: "nav.dashboard",
  enter() {
    clearInterval(dashboard.timer);
    clearInterval(dashboard.ticker);
    dashboard.timer = setInterval(() => loadDashboard().catch(() => {}), 5000);
    dashboard.ticker = setInterval(tickCountdowns, 1000);
    return loadDashboard();
  },
  leave() { clearInterval(dashboard.timer); clearInterval(dashboard.ticker); },
};

