// agproxy console: the Accounts page: add accounts (Google sign-in, a refresh token, an
// import), see their state and quota, enable, disable, delete.
import { api } from "./api.js";
import { $, el, toast } from "./dom.js";
import { ago, until } from "./format.js";
import { refreshStatus } from "./status.js";
import { t } from "./i18n.js";

// An account's state and an import's outcome, in the console's language (unknown ones as they come).
function accountState(state) {
  const key = { enabled: "acc.state_enabled", disabled: "acc.state_disabled", forbidden: "acc.state_forbidden",
    needs_relogin: "acc.state_needs_relogin", needs_verification: "acc.state_needs_verification", refused: "acc.state_refused" }[state];
  return key ? t(key) : state.replaceAll("_", " ");
}

function outcome(value) {
  const key = { added: "acc.outcome_added", updated: "acc.outcome_updated", duplicate: "acc.outcome_duplicate", invalid: "acc.outcome_invalid" }[value];
  return key ? t(key) : value;
}

function quotaBar(q) {
  const pct = q.remaining_fraction === null ? 0 : Math.round(q.remaining_fraction * 100);
  const bar = el("div", { class: "bar" + (pct === 0 ? " empty" : pct < 20 ? " low" : "") }, el("i", { style: `width:${pct}%` }));
  return el("div", { class: "quota", "data-model": q.model },
    el("div", { class: "quota-top" }, el("span", {}, q.model), el("span", { class: "muted" }, `${pct}% ${until(q.reset_at)}`)), bar);
}

// The 5-hour and weekly windows, one row per model group (Gemini, then Claude and GPT). An
// empty weekly window keeps the account away from the group's models until it resets.
function windowBar(w) {
  const pct = w.remaining_fraction === null ? 0 : Math.round(w.remaining_fraction * 100);
  const bar = el("div", { class: "bar" + (pct === 0 ? " empty" : pct < 20 ? " low" : "") }, el("i", { style: `width:${pct}%` }));
  const name = { "5h": t("acc.window_5h"), weekly: t("acc.window_weekly") }[w.window] || w.window;
  const blocked = pct === 0 && w.window === "weekly";
  return el("div", { class: "quota window", "data-bucket": w.bucket_id, "data-window": w.window },
    el("div", { class: "quota-top" }, el("span", {}, name),
      el("span", { class: "muted" }, `${pct}% ${until(w.reset_at)}`,
        blocked ? el("span", { class: "err-text" }, " · " + t("acc.not_scheduled")) : "")), bar);
}

function windowBars(windows) {
  const groups = new Map();
  const rank = (w) => (w.group === "gemini" ? "0" : "1") + w.group + (w.window === "5h" ? "0" : "1") + w.window;
  for (const w of [...windows].sort((x, y) => rank(x).localeCompare(rank(y)))) {
    if (!groups.has(w.group)) groups.set(w.group, { name: w.group_name, windows: [] });
    groups.get(w.group).windows.push(w);
  }
  return el("div", { class: "windows" }, ...[...groups].map(([group, g]) =>
    el("div", { class: "window-group", "data-group": group },
      el("span", { class: "window-group-name" }, { gemini: t("acc.group_gemini"), "3p": t("acc.group_3p") }[group] || g.name), ...g.windows.map(windowBar))));
}

// Google's page where the owner verifies the account: only ever an https:// link.
export function verifyLink(url) {
  if (!url || !/^https:\/\//.test(url)) return null;
  return el("a", { class: "verify-link", href: url, target: "_blank", rel: "noopener noreferrer" },
    t("acc.verify_link"));
}

function accountCard(a) {
  const toggle = el("button", { class: "btn small", type: "button", "data-action": a.enabled ? "disable" : "enable",
    onclick: () => accountAction(a, a.enabled ? "disable" : "enable") }, t(a.enabled ? "common.disable" : "common.enable"));
  const quota = el("button", { class: "btn small", type: "button", "data-action": "quota",
    onclick: () => accountAction(a, "quota") }, t("acc.refresh_quota"));
  const remove = el("button", { class: "btn small danger", type: "button", "data-action": "remove",
    onclick: () => accountAction(a, "remove") }, t("common.delete"));
  const reset = el("button", { class: "btn small", type: "button", "data-action": "reset",
    title: t("acc.reset_title"),
    onclick: () => accountAction(a, "reset") }, t("common.reset"));
  const card = el("div", { class: "account", "data-email": a.email },
    el("div", { class: "account-head" }, el("span", { class: "account-email" }, a.email),
      el("span", { class: "state " + a.state }, accountState(a.state)),
      el("span", { class: "muted" }, a.tier || t("acc.tier_unknown"))),
    el("div", { class: "account-actions" }, toggle, quota, reset, remove),
    el("div", { class: "account-meta" }, t("acc.meta", { project: a.project_id || "–", used: ago(a.last_used_at), fetched: ago(a.quota_fetched_at) })));
  if (a.status_reason) card.append(el("div", { class: "reason" }, a.status_reason));
  const link = verifyLink(a.status_url);
  if (link) card.append(link);
  if (a.quota_windows.length) card.append(windowBars(a.quota_windows));
  if (a.quotas.length) card.append(el("div", { class: "quotas" }, ...a.quotas.map(quotaBar)));
  return card;
}

async function loadAccounts() {
  const data = await api("GET", "/accounts");
  const list = $("accounts-list");
  list.replaceChildren(...data.accounts.map(accountCard));
  $("accounts-empty").hidden = data.accounts.length > 0;
  $("stat-total").textContent = data.accounts.length;
  $("stat-active").textContent = data.active_accounts;
  $("stat-attention").textContent = data.accounts.filter((a) => a.status !== "ok").length;
}

async function accountAction(account, action) {
  try {
    if (action === "remove") {
      if (!confirm(t("acc.confirm_delete", { email: account.email }))) return;
      await api("DELETE", `/accounts/${account.id}`);
    } else if (action === "quota") {
      const result = await api("POST", `/accounts/${account.id}/quota`);
      if (result.errors[account.id]) throw new Error(result.errors[account.id]);
    } else if (action === "reset") {
      const done = await api("POST", `/accounts/${account.id}/reset`, {});
      toast(t("acc.reset_done", { email: account.email, n: done.cooldowns_cleared }));
    } else {
      await api("POST", `/accounts/${account.id}/${action}`);
    }
    if (action !== "reset") toast(t({ quota: "acc.quota_refreshed", enable: "acc.enabled", disable: "acc.disabled", remove: "acc.deleted" }[action], { email: account.email }));
  } catch (err) {
    toast(err.message);
  }
  await Promise.all([loadAccounts(), refreshStatus()]);
}

function resultTable(results) {
  const rows = results.map((r) => el("tr", {}, el("td", {}, String(r.line)), el("td", {}, outcome(r.outcome)),
    el("td", {}, r.email || "–"), el("td", {}, r.reason || "")));
  return el("table", { class: "results" }, el("tr", {}, ...["line", "result", "email", "reason"].map((h) => el("th", {}, t("acc.col_" + h)))), ...rows);
}

async function importAccounts() {
  const box = $("import-result");
  let text = $("import-text").value;
  const file = $("import-file").files[0];
  if (file) text = await file.text();
  if (!text.trim()) { box.replaceChildren(el("p", { class: "error" }, t("acc.import_empty"))); return; }
  $("btn-import").disabled = true;
  box.replaceChildren(el("p", { class: "muted" }, t("acc.checking_tokens")));
  try {
    const data = await api("POST", "/accounts/import", { text });
    const s = data.summary;
    box.replaceChildren(el("p", { id: "import-summary" }, t("acc.import_summary", s)),
      resultTable(data.results));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error" }, err.message));
  } finally {
    $("btn-import").disabled = false;
  }
  await Promise.all([loadAccounts(), refreshStatus()]);
}

async function addToken() {
  const out = $("add-token-result");
  const token = $("add-token").value.trim();
  if (!token) return;
  out.className = "muted";
  out.textContent = t("acc.checking_token");
  try {
    const data = await api("POST", "/accounts", { refresh_token: token });
    out.textContent = `${outcome(data.result)}: ${data.account.email}`;
    $("add-token").value = "";
  } catch (err) {
    out.className = "error";
    out.textContent = err.message;
  }
  await Promise.all([loadAccounts(), refreshStatus()]);
}

let oauthState = null;
async function startOAuth() {
  const data = await api("POST", "/accounts/oauth/start");
  oauthState = data.state;
  $("oauth-box").hidden = false;
  $("oauth-url").value = data.url;
  $("oauth-open").href = data.url;
  $("oauth-status").textContent = t("acc.waiting");
  const poll = setInterval(async () => {
    if (oauthState !== data.state) { clearInterval(poll); return; }
    const s = await api("GET", `/accounts/oauth/${data.state}`).catch(() => null);
    if (!s || s.status === "pending" || s.status === "working") return;
    clearInterval(poll);
    $("oauth-status").textContent = s.status === "done" ? t("acc.added_email", { email: s.email }) : t("acc.failed", { error: s.error });
    await Promise.all([loadAccounts(), refreshStatus()]);
  }, 1500);
}

async function submitOAuthCode() {
  if (!oauthState) return;
  try {
    const s = await api("POST", `/accounts/oauth/${oauthState}/code`, { code: $("oauth-paste").value });
    $("oauth-status").textContent = t("acc.added_email", { email: s.email });
  } catch (err) {
    $("oauth-status").textContent = t("acc.failed", { error: err.message });
  }
  await Promise.all([loadAccounts(), refreshStatus()]);
}

async function refreshAllQuotas() {
  $("btn-refresh-quota").disabled = true;
  try {
    const r = await api("POST", "/accounts/quota");
    const failed = Object.keys(r.errors).length;
    toast(failed ? t("acc.quota_all_failed", { n: r.refreshed.length, failed }) : t("acc.quota_all", { n: r.refreshed.length }));
  } finally {
    $("btn-refresh-quota").disabled = false;
  }
  await loadAccounts();
}

function wire() {
  for (const tab of document.querySelectorAll(".tab[data-tab]")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab[data-tab]")) t.classList.toggle("active", t === tab);
      for (const body of document.querySelectorAll("[data-tab-body]")) body.hidden = body.dataset.tabBody !== tab.dataset.tab;
    });
  }
  $("btn-import").addEventListener("click", importAccounts);
  $("btn-add-token").addEventListener("click", addToken);
  $("btn-oauth-start").addEventListener("click", () => startOAuth().catch((err) => toast(err.message)));
  $("btn-oauth-submit").addEventListener("click", submitOAuthCode);
  $("btn-refresh-quota").addEventListener("click", refreshAllQuotas);
}

export const accountsPage = { title: "nav.accounts", wire, enter: loadAccounts };
