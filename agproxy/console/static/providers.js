// agproxy console: the Providers page. Key-based upstreams beside the Google pool: the list
// (keys masked by the gateway, never shown in full once saved), adding one, testing its keys,
// enabling, disabling and removing it. Entries the environment sets are read-only.
import { api } from "./api.js";
import { $, el, showError, toast } from "./dom.js";
import { t } from "./i18n.js";
import { isLocked, renderEnvHint } from "./store.js";

// Where each kind goes when the entry names no base_url (config.py's DEFAULT_PROVIDER_URLS).
const DEFAULT_URLS = {
  gemini_api_key: "https://generativelanguage.googleapis.com",
  openai_compatible: "https://api.openai.com/v1",
  anthropic_api_key: "https://api.anthropic.com",
};
const KIND_LABELS = {
  gemini_api_key: () => t("prov.kind_gemini"),
  openai_compatible: () => t("prov.kind_openai"),
  anthropic_api_key: () => t("prov.kind_anthropic"),
};
const kindLabel = (kind) => KIND_LABELS[kind]?.() ?? kind;

// The last test of each provider, by name: drawn under its row until it is removed.
const results = new Map();
let kinds = Object.keys(DEFAULT_URLS);

// "name=key" (the key not starting with "=", so a base64 key's padding stays a key), or a key.
function parseKeys(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const named = line.match(/^(.*?\S)\s*=\s*([^=\s]\S*)$/);
    return named ? { key: named[2], name: named[1] } : { key: line };
  });
}

// "id" or "id = alias1, alias2".
function parseModels(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [id, aliases = ""] = line.split(/=(.*)/s);
    return { id: id.trim(), aliases: aliases.split(/[\s,]+/).filter(Boolean) };
  });
}

function formBody() {
  const body = { name: $("prov-name").value.trim(), kind: $("prov-kind").value,
    keys: parseKeys($("prov-keys").value), models: parseModels($("prov-models").value) };
  const base = $("prov-base").value.trim();
  if (base) body.base_url = base;
  const proxy = $("prov-proxy").value.trim();
  if (proxy) body.proxy = proxy;
  return body;
}

function kindOptions() {
  const select = $("prov-kind");
  const chosen = select.value || kinds[0];
  select.replaceChildren(...kinds.map((kind) => new Option(kindLabel(kind), kind)));
  select.value = kinds.includes(chosen) ? chosen : kinds[0];
  showDefaultUrl();
}

function showDefaultUrl() {
  $("prov-base").placeholder = DEFAULT_URLS[$("prov-kind").value] || "https://…";
}

const readOnly = (p) => p.source === "environment" || !p.configured;

function stateOf(p) {
  if (!p.enabled) return el("span", { class: "state disabled" }, t("prov.state_disabled"));
  if (!p.serving) return el("span", { class: "state needs_verification" }, t("prov.state_no_key"));
  return el("span", { class: "state enabled" }, t("prov.state_enabled"));
}

function keysCell(p) {
  if (!p.keys.length) return el("td", { class: "prov-keys" }, el("span", { class: "muted" }, t("prov.no_keys")));
  return el("td", { class: "prov-keys" }, ...p.keys.map((k, i) =>
    el("div", { class: "prov-key" }, el("span", {}, p.key_names[i] || k.name || ""), " ", el("span", { class: "mono muted" }, k.key))));
}

function modelsCell(p) {
  if (!p.models.length) {
    return el("td", { class: "prov-models" }, el("span", { class: "muted" }, t("prov.any_model", { name: p.name })));
  }
  return el("td", { class: "prov-models" }, ...p.models.map((m) => el("div", {}, el("span", { class: "mono" }, m.id),
    ...(m.aliases.length ? [" ", el("small", { class: "muted" }, "= " + m.aliases.join(", "))] : []))));
}

function sourceCell(p) {
  if (p.source === "environment") {
    return el("td", { class: "prov-source" }, el("span", { class: "state needs_verification" }, t("prov.source_env")),
      el("small", { class: "muted" }, t("prov.env_note")));
  }
  if (!p.configured) {
    return el("td", { class: "prov-source" }, el("span", { class: "state disabled" }, t("prov.source_zai")),
      el("small", { class: "muted" }, t("prov.zai_note")));
  }
  return el("td", { class: "prov-source" }, el("span", { class: "muted" }, t("prov.source_config")));
}

function providerRow(p) {
  const locked = readOnly(p);
  const button = (label, action, cls = "", disabled = locked) => {
    const b = el("button", { class: "btn small " + cls, type: "button", "data-action": action,
      onclick: () => providerAction(p, action, b) }, label);
    b.disabled = disabled;
    if (locked) b.title = t("prov.read_only");
    return b;
  };
  const kind = el("td", { class: "prov-kind" }, el("div", {}, kindLabel(p.kind)), el("small", { class: "muted mono" }, p.kind));
  if (p.dispatch && p.dispatch !== "off") kind.append(el("small", { class: "muted" }, t("prov.dispatch", { mode: p.dispatch })));
  return el("tr", { class: "prov-row" + (locked ? " read-only" : ""), "data-name": p.name },
    el("td", { class: "prov-name" }, p.name),
    kind,
    el("td", { class: "prov-url mono" }, p.url, p.proxy ? el("small", { class: "muted" }, t("prov.via_proxy", { proxy: p.proxy })) : ""),
    keysCell(p), modelsCell(p),
    el("td", {}, stateOf(p)),
    sourceCell(p),
    el("td", { class: "prov-actions" }, el("div", {},
      button(t("common.test"), "test", "", !p.keys.length),
      p.enabled ? button(t("common.disable"), "disable") : button(t("common.enable"), "enable"),
      button(t("common.remove"), "remove", "danger"))));
}

function resultRow(name, result) {
  const summary = el("div", { class: "prov-test-head " + (result.ok ? "ok-text" : "err-text") },
    result.keys.length ? t("prov.test_summary", { ok: result.keys.filter((k) => k.ok).length, total: result.keys.length })
      : t("prov.test_no_key"));
  const lines = result.keys.map((k) => el("li", { class: k.ok ? "ok" : "bad", "data-key": k.key },
    el("b", {}, k.ok ? t("prov.key_ok") : t("prov.key_failed")), " ", el("span", {}, k.key), " ",
    el("span", { class: "code " + (k.ok ? "c2" : k.status >= 500 ? "c5" : "c4") }, String(k.status ?? "–")), " ",
    el("span", { class: "muted" }, k.ok ? t("prov.models_count", { n: k.count }) : (k.message || "")),
    " ", el("small", { class: "muted" }, t("prov.ms", { n: k.ms }))));
  return el("tr", { class: "prov-test", "data-name": name },
    el("td", { colspan: "8" }, summary, el("ul", { class: "timeline prov-test-keys" }, ...lines)));
}

function render(providers) {
  const rows = [];
  for (const p of providers) {
    rows.push(providerRow(p));
    if (results.has(p.name)) rows.push(resultRow(p.name, results.get(p.name)));
  }
  $("prov-rows").replaceChildren(...rows);
  $("prov-empty").hidden = providers.length > 0;
  $("prov-table").hidden = providers.length === 0;
}

// AGPROXY_PROVIDERS fixes the whole list: nothing can be added here.
function renderForm() {
  $("btn-prov-add").disabled = isLocked("providers");
  renderEnvHint("prov-env", ["providers"]);
}

async function loadProviders() {
  renderForm();
  const data = await api("GET", "/providers");
  if (data.kinds?.length) kinds = data.kinds;
  kindOptions();
  for (const name of results.keys()) if (!data.providers.some((p) => p.name === name)) results.delete(name);
  render(data.providers);
}

async function providerAction(p, action, button) {
  try {
    if (action === "test") {
      button.disabled = true;
      button.textContent = t("prov.testing");
      results.set(p.name, await api("POST", `/providers/${encodeURIComponent(p.name)}/test`));
    } else if (action === "remove") {
      if (!confirm(t("prov.confirm_remove", { name: p.name }))) return;
      await api("DELETE", `/providers/${encodeURIComponent(p.name)}`);
      results.delete(p.name);
      toast(t("prov.removed", { name: p.name }));
    } else {
      await api("PATCH", `/providers/${encodeURIComponent(p.name)}`, { enabled: action === "enable" });
      toast(action === "enable" ? t("prov.enabled", { name: p.name }) : t("prov.disabled", { name: p.name }));
    }
  } catch (err) {
    toast(err.message);
  }
  await loadProviders();
}

async function addProvider(event) {
  event.preventDefault();
  showError("prov-error");
  try {
    const made = await api("POST", "/providers", formBody());
    $("prov-form").reset();
    showDefaultUrl();
    toast(t("prov.added", { name: made.provider.name }));
  } catch (err) {
    showError("prov-error", err.message);
  }
  await loadProviders();
}

function wire() {
  $("prov-form").addEventListener("submit", addProvider);
  $("prov-kind").addEventListener("change", showDefaultUrl);
}

export const providersPage = { title: "nav.providers", wire, enter: loadProviders };
