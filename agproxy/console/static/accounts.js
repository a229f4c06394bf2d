// agproxy console: the Accounts page: add accounts (Google sign-in, a refresh token, an
// import), see their state and quota, enable, disable, delete.
import { api } from "./api.js";
import { $, el, toast } from "./dom.js";
import { ago, until } from "./format.js";
import { refreshStatus } from "./status.js";

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
  const name = { "5h": "5-hour", weekly: "weekly" }[w.window] || w.window;
  const blocked = pct === 0 && w.window === "weekly";
  return el("div", { class: "quota window", "data-bucket": w.bucket_id, "data-window": w.window },
    el("div", { class: "quota-top" }, el("span", {}, name),
      el("span", { class: "muted" }, `${pct}% ${until(w.reset_at)}`,
        blocked ? el("span", { class: "err-text" }, " · not scheduled") : "")), bar);
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
      el("span", { class: "window-group-name" }, g.name), ...g.windows.map(windowBar))));
}

// Google's page where the owner verifies the account: only ever an https:// link.
export function verifyLink(url) {
  if (!url || !/^https:\/\//.test(url)) return null;
  return el("a", { class: "verify-link", href: url, target: "_blank", rel: "noopener noreferrer" },
    "Open Google's verification page ↗");
}

function accountCard(a) {
  const toggle = el("button", { class: "btn small", type: "button", "data-action": a.enabled ? "disable" : "enable",
    onclick: () => accountAction(a, a.enabled ? "disable" : "enable") }, a.enabled ? "Disable" : "Enable");
  const quota = el("button", { class: "btn small", type: "button", "data-action": "quota",
    onclick: () => accountAction(a, "quota") }, "Refresh quota");
  const remove = el("button", { class: "btn small danger", type: "button", "data-action": "remove",
    onclick: () => accountAction(a, "remove") }, "Delete");
  const reset = el("button", { class: "btn small", type: "button", "data-action": "reset",
    title: "Clear its cooldowns and a forbidden state: it is asked again at once",
    onclick: () => accountAction(a, "reset") }, "Reset");
  const card = el("div", { class: "account", "data-email": a.email },
    el("div", { class: "account-head" }, el("span", { class: "account-email" }, a.email),
      el("span", { class: "state " + a.state }, a.state.replace("_", " ")),
      el("span", { class: "muted" }, a.tier || "tier unknown")),
    el("div", { class: "account-actions" }, toggle, quota, reset, remove),
    el("div", { class: "account-meta" }, `project ${a.project_id || "–"} · last used ${ago(a.last_used_at)} · quota fetched ${ago(a.quota_fetched_at)}`));
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
      if (!confirm(`Delete ${account.email}? Its refresh token is forgotten.`)) return;
      await api("DELETE", `/accounts/${account.id}`);
    } else if (action === "quota") {
      const result = await api("POST", `/accounts/${account.id}/quota`);
      if (result.errors[account.id]) throw new Error(result.errors[account.id]);
    } else if (action === "reset") {
      const done = await api("POST", `/accounts/${account.id}/reset`, {});
      toast(`${account.email}: reset, ${done.cooldowns_cleared} cooldown(s) cleared`);
    } else {
      await api("POST", `/accounts/${account.id}/${action}`);
    }
    if (action !== "reset") toast(`${account.email}: ${action === "quota" ? "quota refreshed" : action + "d"}`);
  } catch (err) {
    toast(err.message);
  }
  await Promise.all([loadAccounts(), refreshStatus()]);
}

function resultTable(results) {
  const rows = results.map((r) => el("tr", {}, el("td", {}, String(r.line)), el("td", {}, r.outcome),
    el("td", {}, r.email || "–"), el("td", {}, r.reason || "")));
  return el("table", { class: "results" }, el("tr", {}, ...["line", "result", "email", "reason"].map((h) => el("th", {}, h))), ...rows);
}

async function importAccounts() {
  const box = $("import-result");
  let text = $("import-text").value;
  const file = $("import-file").files[0];
  if (file) text = await file.text();
  if (!text.trim()) { box.replaceChildren(el("p", { class: "error" }, "Choose a file or paste tokens first.")); return; }
  $("btn-import").disabled = true;
  box.replaceChildren(el("p", { class: "muted" }, "Checking tokens…"));
  try {
    const data = await api("POST", "/accounts/import", { text });
    const s = data.summary;
    box.replaceChildren(el("p", { id: "import-summary" }, `${s.added} added, ${s.updated} updated, ${s.duplicate} duplicate, ${s.invalid} invalid`),
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
  out.textContent = "Checking the token…";
  try {
    const data = await api("POST", "/accounts", { refresh_token: token });
    out.textContent = `${data.result}: ${data.account.email}`;
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
  $("oauth-status").textContent = "Waiting for Google…";
  const poll = setInterval(async () => {
    if (oauthState !== data.state) { clearInterval(poll); return; }
    const s = await api("GET", `/accounts/oauth/${data.state}`).catch(() => null);
    if (!s || s.status === "pending" || s.status === "working") return;
    clearInterval(poll);
    $("oauth-status").textContent = s.status === "done" ? `Added ${s.email}` : `Failed: ${s.error}`;
    await Promise.all([loadAccounts(), refreshStatus()]);
  }, 1500);
}

async function submitOAuthCode() {
  if (!oauthState) return;
  try {
    const s = await api("POST", `/accounts/oauth/${oauthState}/code`, { code: $("oauth-paste").value });
    $("oauth-status").textContent = `Added ${s.email}`;
  } catch (err) {
    $("oauth-status").textContent = `Failed: ${err.message}`;
  }
  await Promise.all([loadAccounts(), refreshStatus()]);
}

async function refreshAllQuotas() {
  $("btn-refresh-quota").disabled = true;
  try {
    const r = await api("POST", "/accounts/quota");
    const failed = Object.keys(r.errors).length;
    toast(`Quota refreshed for ${r.refreshed.length} account(s)` + (failed ? `, ${failed} failed` : ""));
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

export const accountsPage = { title: "Accounts", wire, enter: loadAccounts };
