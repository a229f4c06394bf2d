// agproxy console: the z.ai provider card on the API Proxy page.
import { api } from "./api.js";
import { $, showError, toast } from "./dom.js";
import { isLocked, lockFields, renderEnvHint, store } from "./store.js";
import { t } from "./i18n.js";

function render() {
  const c = store.config.config;
  $("zai-mode").value = c.zai_dispatch_mode;
  $("zai-base").value = c.zai_base_url;
  $("zai-key").placeholder = c.zai_api_key ? t("zai.key_set", { key: c.zai_api_key }) : t("zai.key_unset");
  $("zai-key").value = "";
  $("zai-opus").value = c.zai_models.opus || "";
  $("zai-sonnet").value = c.zai_models.sonnet || "";
  $("zai-haiku").value = c.zai_models.haiku || "";
  lockFields([["zai-mode", "zai_dispatch_mode"], ["zai-base", "zai_base_url"], ["zai-key", "zai_api_key"]]);
  renderEnvHint("zai-env", ["zai_dispatch_mode", "zai_base_url", "zai_api_key"]);
}

async function save() {
  const value = (id) => $(id).value.trim();
  const changes = {
    zai_dispatch_mode: $("zai-mode").value, zai_base_url: value("zai-base"),
    zai_models: { opus: value("zai-opus"), sonnet: value("zai-sonnet"), haiku: value("zai-haiku") },
  };
  if (value("zai-key")) changes.zai_api_key = value("zai-key");  // blank: keep the saved key
  for (const k of Object.keys(changes)) if (isLocked(k)) delete changes[k];
  showError("zai-error");
  try {
    store.config = await api("PUT", "/config", changes);
    render();
    toast(t("zai.saved"));
  } catch (err) {
    showError("zai-error", err.message);
  }
}

function wire() { $("btn-zai-save").addEventListener("click", save); }

// A card of the proxy page, not a page of its own: no title, nothing to do on entering.
export const zaiCard = { wire, render };
