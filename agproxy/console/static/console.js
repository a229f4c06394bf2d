// agproxy console: a small single-page app over the admin API (/api/*).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "agproxy.admin";
const KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long';
let status = null;
let config = null;
let apiKey = "";
let pollTimer = null;

// ---- admin API ---------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, message, param) { super(message); this.status = status; this.param = param; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(KEY_STORE) || "") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = data.error || {};
    if (response.status === 401 && path !== "/api/proxy/status") showLogin();
    throw new ApiError(response.status, err.message || response.statusText, err.param);
  }
  return data;
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 2500);
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("Copied");
}

// ---- login ---------------------------------------------------------------------------------
function showLogin(message) {
  clearInterval(pollTimer);
  if (currentPage) PAGE_HOOKS[currentPage]?.leave?.();
  currentPage = null;
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
}

async function tryLogin(password) {
  sessionStorage.setItem(KEY_STORE, password);
  try {
    await api("GET", "/api/proxy/status");
  } catch (err) {
    sessionStorage.removeItem(KEY_STORE);
    showLogin(err.status === 401 ? "Wrong password." : "Cannot reach the gateway: " + err.message);
    return;
  }
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  await loadAll();
  route();
  pollTimer = setInterval(refreshStatus, 3000);
}

// ---- status and the Start/Stop button ---------------------------------------------------------
function renderStatus() {
  const badge = $("status-badge");
  badge.textContent = status.running ? "running" : "stopped";
  badge.className = "badge " + (status.running ? "running" : "stopped");
  const n = status.active_accounts;
  $("active-accounts").textContent = `${n} active account${n === 1 ? "" : "s"}`;
  const button = $("toggle-service");
  button.textContent = status.running ? "Stop" : "Start";
  button.className = "btn " + (status.running ? "stop" : "start");
  const port = $("field-port");
  port.disabled = status.running || isLocked("port");
  $("port-hint").textContent = status.running ? "Stop the service to change the port." :
    (isLocked("port") ? "Set by AGPROXY_PORT." : "");
  renderSnippets();
}

async function refreshStatus() {
  try {
    status = await api("GET", "/api/proxy/status");
    renderStatus();
  } catch { /* a failed poll is retried at the next tick */ }
}

async function toggleService() {
  const button = $("toggle-service");
  const errorBox = $("service-error");
  button.disabled = true;
  errorBox.hidden = true;
  try {
    const previousPort = status.port;
    status = await api("POST", status.running ? "/api/proxy/stop" : "/api/proxy/start");
    renderStatus();
    if (status.running && status.port !== previousPort && String(status.port) !== location.port) {
      const url = `${location.protocol}//${location.hostname}:${status.port}/`;
      errorBox.className = "banner warn";
      errorBox.replaceChildren(`The gateway moved to port ${status.port}: `, el("a", { href: url }, url));
      errorBox.hidden = false;
      // The session is per origin (the port is part of it): a single-use ticket that lives
      // a minute carries it across in the URL fragment; the password itself never leaves.
      const { ticket } = await api("POST", "/api/console/ticket");
      setTimeout(() => { location.href = `${url}#ticket=${encodeURIComponent(ticket)};${location.hash}`; }, 1500);
    }
  } catch (err) {
    errorBox.className = "banner error";
    errorBox.textContent = err.message;  // verbatim, as the gateway said it
    errorBox.hidden = false;
    await refreshStatus();
  } finally {
    button.disabled = false;
  }
}

// ---- API Proxy page ----------------------------------------------------------------------------
function isLocked(key) { return Boolean(config && config.env_overrides.includes(key)); }

// A visible line under a form naming the settings its environment fixes.
function renderEnvHint(id, keys) {
  const locked = keys.filter(isLocked);
  $(id).hidden = !locked.length;
  $(id).textContent = locked.length
    ? `Set by the environment, read-only here: ${locked.map((k) => "AGPROXY_" + k.toUpperCase()).join(", ")}.`
    : "";
}

function renderConfig() {
  const c = config.config;
  $("field-port").value = c.port;
  $("field-lan").checked = c.allow_lan_access;
  $("field-auth-mode").value = c.auth_mode;
  $("field-allowed-ips").value = (c.allowed_ips || []).join(", ");
  $("field-api-key").value = apiKey;
  for (const [id, key] of [["field-lan", "allow_lan_access"], ["field-auth-mode", "auth_mode"], ["field-allowed-ips", "allowed_ips"], ["field-api-key", "api_key"]]) {
    $(id).disabled = isLocked(key);
    $(id).title = isLocked(key) ? `Set by the environment variable AGPROXY_${key.toUpperCase()}` : "";
  }
  renderEnvHint("settings-env", ["port", "allow_lan_access", "auth_mode", "allowed_ips", "api_key"]);
  renderLanWarning();
}

function renderLanWarning() {
  $("lan-warning").hidden = !($("field-lan").checked && $("field-auth-mode").value === "off");
}

function renderSnippets() {
  const host = location.hostname || "127.0.0.1";
  const base = `http://${host}:${status ? status.port : location.port}`;
  const key = apiKey || "<API_KEY>";
  $("snippet-curl").textContent = `curl -sS ${base}/healthz -H "Authorization: Bearer ${key}"`;
  $("snippet-openai").textContent =
`import openai

client = openai.OpenAI(
    api_key="${key}",
    base_url="${base}/v1",
)

resp = client.chat.completions.create(
    model="gemini-3-flash",
    messages=[{"role": "user", "content": "Hello, please introduce yourself"}],
)

print(resp.choices[0].message.content)`;
  $("snippet-claude").textContent =
`export ANTHROPIC_API_KEY="${key}"
export ANTHROPIC_BASE_URL="${base}"
claude`;
  $("snippet-gemini").textContent =
`from google import genai

client = genai.Client(
    api_key="${key}",
    http_options={"base_url": "${base}"},
)
resp = client.models.generate_content(model="gemini-3-flash", contents="Hello")
print(resp.text)`;
}

function validKey(key) { return key.startsWith("sk-") && key.length >= 10; }

async function saveSettings(event) {
  event.preventDefault();
  const keyError = $("api-key-error");
  const settingsError = $("settings-error");
  keyError.hidden = settingsError.hidden = true;
  const key = $("field-api-key").value.trim();
  if (!validKey(key)) {
    keyError.textContent = KEY_RULE;
    keyError.hidden = false;
    return;
  }
  const c = config.config;
  const changes = {};
  const port = Number($("field-port").value);
  if (!$("field-port").disabled && port !== c.port) changes.port = port;
  if ($("field-lan").checked !== c.allow_lan_access) changes.allow_lan_access = $("field-lan").checked;
  if ($("field-auth-mode").value !== c.auth_mode) changes.auth_mode = $("field-auth-mode").value;
  const ips = $("field-allowed-ips").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (ips.join(",") !== (c.allowed_ips || []).join(",")) changes.allowed_ips = ips;
  if (key !== apiKey) changes.api_key = key;
  for (const k of Object.keys(changes)) if (isLocked(k)) delete changes[k];
  if (!Object.keys(changes).length) { toast("Nothing changed"); return; }
  try {
    config = await api("PUT", "/api/config", changes);
    if (changes.api_key) apiKey = key;
    renderConfig();
    renderSnippets();
    const later = config.apply_at_next_start || [];
    toast(later.length && status.running ? `Saved; ${later.join(" and ")} apply at the next start` : "Saved");
  } catch (err) {
    const box = err.param === "api_key" ? keyError : settingsError;
    box.textContent = err.message;
    box.hidden = false;
  }
}

async function regenerateKey() {
  if (!confirm("Generate a new api key? Clients using the old one will get 401.")) return;
  try {
    apiKey = (await api("POST", "/api/proxy/api-key/generate")).api_key;
    config = await api("GET", "/api/config");
    renderConfig();
    renderSnippets();
    toast("New api key saved");
  } catch (err) {
    $("api-key-error").textContent = err.message;
    $("api-key-error").hidden = false;
  }
}

// ---- z.ai ------------------------------------------------------------------------------------
function renderZai() {
  const c = config.config;
  $("zai-mode").value = c.zai_dispatch_mode;
  $("zai-base").value = c.zai_base_url;
  $("zai-key").placeholder = c.zai_api_key ? `set (${c.zai_api_key})` : "not set";
  $("zai-key").value = "";
  $("zai-opus").value = c.zai_models.opus || "";
  $("zai-sonnet").value = c.zai_models.sonnet || "";
  $("zai-haiku").value = c.zai_models.haiku || "";
  for (const [id, key] of [["zai-mode", "zai_dispatch_mode"], ["zai-base", "zai_base_url"], ["zai-key", "zai_api_key"]]) {
    $(id).disabled = isLocked(key);
    $(id).title = isLocked(key) ? `Set by the environment variable AGPROXY_${key.toUpperCase()}` : "";
  }
  renderEnvHint("zai-env", ["zai_dispatch_mode", "zai_base_url", "zai_api_key"]);
}

async function saveZai() {
  const changes = {
    zai_dispatch_mode: $("zai-mode").value, zai_base_url: $("zai-base").value.trim(),
    zai_models: { opus: $("zai-opus").value.trim(), sonnet: $("zai-sonnet").value.trim(), haiku: $("zai-haiku").value.trim() },
  };
  if ($("zai-key").value.trim()) changes.zai_api_key = $("zai-key").value.trim();
  for (const k of Object.keys(changes)) if (isLocked(k)) delete changes[k];
  $("zai-error").hidden = true;
  try {
    config = await api("PUT", "/api/config", changes);
    renderZai();
    toast("z.ai settings saved");
  } catch (err) {
    $("zai-error").textContent = err.message;
    $("zai-error").hidden = false;
  }
}

// ---- small DOM and time helpers ---------------------------------------------------------------
function until(ts) {
  if (!ts) return "";
  const s = Math.round(ts - Date.now() / 1000);
  if (s <= 0) return "resets now";
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  if (d >= 2) return `resets in ${d}d`;
  return "resets in " + (h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m`);
}

function ago(ts) {
  if (!ts) return "never";
  const s = Math.round(Date.now() / 1000 - ts);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;  // CSSOM: allowed by the console's CSP
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

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

// ---- navigation ------------------------------------------------------------------------------
const PAGES = { dashboard: "Dashboard", proxy: "API Proxy", accounts: "Accounts", monitor: "Monitor",
  stats: "Statistics", mapping: "Model mapping" };
// Pages defined in pages.js register { enter, leave } here: enter when shown, leave when hidden.
const PAGE_HOOKS = { accounts: { enter: () => loadAccounts() } };
let currentPage = null;

function route() {
  const wanted = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const page = wanted in PAGES ? wanted : "dashboard";
  for (const name of Object.keys(PAGES)) $("page-" + name).hidden = name !== page;
  for (const link of document.querySelectorAll(".nav-link")) link.classList.toggle("active", link.dataset.page === page);
  $("page-title").textContent = PAGES[page];
  if (currentPage && currentPage !== page) PAGE_HOOKS[currentPage]?.leave?.();
  currentPage = page;
  Promise.resolve(PAGE_HOOKS[page]?.enter?.()).catch((err) => toast(err.message));
}

async function loadAll() {
  [status, config, { api_key: apiKey }] = await Promise.all([
    api("GET", "/api/proxy/status"), api("GET", "/api/config"), api("GET", "/api/proxy/api-key")]);
  renderConfig();
  renderMapping();
  renderZai();
  renderStatus();
}

function wire() {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); tryLogin($("login-password").value); });
  $("logout").addEventListener("click", (e) => { e.preventDefault(); sessionStorage.removeItem(KEY_STORE); showLogin(); });
  $("toggle-service").addEventListener("click", toggleService);
  $("settings-form").addEventListener("submit", saveSettings);
  $("field-lan").addEventListener("change", renderLanWarning);
  $("field-auth-mode").addEventListener("change", renderLanWarning);
  $("field-api-key").addEventListener("input", () => { $("api-key-error").hidden = true; });
  $("btn-copy-key").addEventListener("click", () => copy($("field-api-key").value));
  $("btn-regenerate-key").addEventListener("click", regenerateKey);
  for (const b of document.querySelectorAll("[data-copy]")) b.addEventListener("click", () => copy($(b.dataset.copy).textContent));
  for (const b of document.querySelectorAll("[data-copy-input]")) b.addEventListener("click", () => copy($(b.dataset.copyInput).value));
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
  $("btn-mapping-add").addEventListener("click", () => $("mapping-rows").append(mappingRow()));
  $("btn-mapping-save").addEventListener("click", saveMapping);
  $("btn-zai-save").addEventListener("click", saveZai);
  window.addEventListener("hashchange", route);
}

// After a port move the old page hands over a single-use ticket (see toggleService).
async function carriedLogin() {
  const match = /^#ticket=([A-Za-z0-9_-]+);(#[\w/-]*)?$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + (match[2] || ""));  // the page it was on
  try {
    const response = await fetch("/auth/ticket", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ticket: match[1] }),
    });
    return response.ok ? (await response.json()).password : null;
  } catch { return null; }
}

// Start once every script (charts.js, pages.js) has registered its pages.
document.addEventListener("DOMContentLoaded", async () => {
  wire();
  const saved = sessionStorage.getItem(KEY_STORE) || await carriedLogin();
  if (saved) tryLogin(saved); else showLogin();
});
