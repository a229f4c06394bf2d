// agproxy console: the API Proxy page: listener and auth settings, the api key, and
// ready-to-paste client snippets.
import { api } from "./api.js";
import { $, copy, showError, toast } from "./dom.js";
import { onStatus } from "./status.js";
import { isLocked, lockFields, renderEnvHint, store } from "./store.js";
import { t } from "./i18n.js";

const KEY_RULE = 'api_key must start with "sk-" and be at least 10 characters long';
const validKey = (key) => key.startsWith("sk-") && key.length >= 10;

function render() {
  const c = store.config.config;
  $("field-port").value = c.port;
  $("field-lan").checked = c.allow_lan_access;
  $("field-auth-mode").value = c.auth_mode;
  $("field-allowed-ips").value = (c.allowed_ips || []).join(", ");
  $("field-api-key").value = store.apiKey;
  lockFields([["field-lan", "allow_lan_access"], ["field-auth-mode", "auth_mode"],
    ["field-allowed-ips", "allowed_ips"], ["field-api-key", "api_key"]]);
  renderEnvHint("settings-env", ["port", "allow_lan_access", "auth_mode", "allowed_ips", "api_key"]);
  renderLanWarning();
  renderSnippets();
}

function renderLanWarning() {
  $("lan-warning").hidden = !($("field-lan").checked && $("field-auth-mode").value === "off");
}

function renderPort(status) {
  $("field-port").disabled = status.running || isLocked("port");
  $("port-hint").textContent = status.running ? t("proxy.port_running") :
    (isLocked("port") ? t("proxy.port_env", { var: "AGPROXY_PORT" }) : "");
  renderSnippets();
}

function renderSnippets() {
  const host = location.hostname || "127.0.0.1";
  const base = `http://${host}:${store.status ? store.status.port : location.port}`;
  const key = store.apiKey || "<API_KEY>";
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
  renderClientSnippets(base, key);
}

// The same settings `agproxy setup CLIENT` merges into each client's own file.
function renderClientSnippets(base, key) {
  $("snippet-setup").textContent =
`agproxy setup claude-code   # or: codex, gemini-cli, opencode
agproxy setup codex --print  # see first; --undo takes it back`;
  $("snippet-codex").textContent =
`model_provider = "agproxy"

[model_providers.agproxy]
name = "agproxy"
base_url = "${base}/v1"
wire_api = "responses"
supports_websockets = true
http_headers = { Authorization = "Bearer ${key}" }`;
  $("snippet-gemini-cli").textContent =
`GOOGLE_GEMINI_BASE_URL=${base}
GEMINI_API_KEY=${key}`;
  $("snippet-opencode").textContent = JSON.stringify({
    $schema: "https://opencode.ai/config.json",
    provider: { agproxy: { npm: "@ai-sdk/openai-compatible", name: "agproxy",
      options: { baseURL: `${base}/v1`, apiKey: key },
      models: { "gemini-3-flash": {}, "claude-sonnet-4-6": {} } } },
  }, null, 2);
}

// Only what differs from the saved configuration, and nothing the environment fixes.
function changedSettings(key) {
  const c = store.config.config;
  const changes = {};
  const port = Number($("field-port").value);
  if (!$("field-port").disabled && port !== c.port) changes.port = port;
  if ($("field-lan").checked !== c.allow_lan_access) changes.allow_lan_access = $("field-lan").checked;
  if ($("field-auth-mode").value !== c.auth_mode) changes.auth_mode = $("field-auth-mode").value;
  const ips = $("field-allowed-ips").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (ips.join(",") !== (c.allowed_ips || []).join(",")) changes.allowed_ips = ips;
  if (key !== store.apiKey) changes.api_key = key;
  for (const k of Object.keys(changes)) if (isLocked(k)) delete changes[k];
  return changes;
}

async function saveSettings(event) {
  event.preventDefault();
  showError("api-key-error");
  showError("settings-error");
  const key = $("field-api-key").value.trim();
  if (!validKey(key)) { showError("api-key-error", KEY_RULE); return; }
  const changes = changedSettings(key);
  if (!Object.keys(changes).length) { toast(t("proxy.nothing_changed")); return; }
  try {
    store.config = await api("PUT", "/config", changes);
    if (changes.api_key) store.apiKey = key;
    render();
    const later = store.config.apply_at_next_start || [];
    toast(later.length && store.status.running ? t("proxy.saved_later", { settings: later.join(", ") }) : t("common.saved"));
  } catch (err) {
    showError(err.param === "api_key" ? "api-key-error" : "settings-error", err.message);
  }
}

async function regenerateKey() {
  if (!confirm(t("proxy.confirm_regenerate"))) return;
  try {
    store.apiKey = (await api("POST", "/proxy/api-key/generate")).api_key;
    store.config = await api("GET", "/config");
    render();
    toast(t("proxy.key_saved"));
  } catch (err) {
    showError("api-key-error", err.message);
  }
}

function wire() {
  onStatus(renderPort);
  $("settings-form").addEventListener("submit", saveSettings);
  $("field-lan").addEventListener("change", renderLanWarning);
  $("field-auth-mode").addEventListener("change", renderLanWarning);
  $("field-api-key").addEventListener("input", () => { $("api-key-error").hidden = true; });
  $("btn-copy-key").addEventListener("click", () => copy($("field-api-key").value));
  $("btn-regenerate-key").addEventListener("click", regenerateKey);
}

export const proxyPage = { title: "nav.proxy", wire, render };
