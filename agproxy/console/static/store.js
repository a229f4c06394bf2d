// agproxy console: what several pages share, loaded at sign-in: the service status, the
// configuration (with the settings its environment fixes) and the api key.

import { t } from "./i18n.js";

export const store = { status: null, config: null, apiKey: "" };

export const isLocked = (key) => Boolean(store.config && store.config.env_overrides.includes(key));

// Fields whose setting the environment fixes are read-only, and say why on hover.
export function lockFields(pairs) {
  for (const [id, key] of pairs) {
    const field = document.getElementById(id);
    field.disabled = isLocked(key);
    field.title = isLocked(key) ? t("store.env_title", { var: "AGPROXY_" + key.toUpperCase() }) : "";
  }
}

// A visible line under a form naming the settings its environment fixes.
export function renderEnvHint(id, keys) {
  const locked = keys.filter(isLocked);
  const hint = document.getElementById(id);
  hint.hidden = !locked.length;
  hint.textContent = locked.length
    ? t("store.env_hint", { vars: locked.map((k) => "AGPROXY_" + k.toUpperCase()).join(", ") })
    : "";
}
