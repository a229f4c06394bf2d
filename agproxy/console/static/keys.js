// agproxy console: the Keys page: client keys with their models, limits, expiry, state and
// usage; create one, rotate, disable or enable, delete. A secret is shown once, in the box
// above the list, and leaves the page when the box is closed or the page is left.
import { api } from "./api.js";
import { $, copy, el, showError, toast } from "./dom.js";
import { TZ_OFFSET, compact, num, pad2 } from "./format.js";
import { t } from "./i18n.js";

const LIMITS = [["rpm", (v) => t("keys.limit_rpm", { n: num(v) })], ["tpm", (v) => t("keys.limit_tpm", { n: num(v) })],
  ["concurrency", (v) => t("keys.limit_concurrency", { n: num(v) })], ["daily_tokens", (v) => t("keys.limit_daily", { n: num(v) })],
  ["quota_share", (v) => t("keys.limit_share", { n: v })]];
const FIELDS = ["rpm", "tpm", "concurrency", "daily_tokens", "quota_share"];

function limitsText(key) {
  const parts = LIMITS.filter(([name]) => key[name] !== null).map(([name, show]) => show(key[name]));
  return parts.length ? parts.join(", ") : t("keys.none");
}

// 2099-01-31 18:00, in the browser's time zone.
function when(ts) {
  if (!ts) return t("fmt.never");
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function usageCell(u) {
  return el("td", { class: "num usage", title: t("keys.usage_title", { in: num(u.input_tokens), out: num(u.output_tokens) }) },
    el("div", {}, t("keys.usage_req", { n: num(u.requests) })), el("small", { class: "muted" }, t("keys.usage_tok", { n: compact(u.input_tokens + u.output_tokens) })));
}

function keyRow(key) {
  const button = (label, action, cls = "") => el("button", { class: "btn small " + cls, type: "button", "data-action": action,
    onclick: () => keyAction(key, action) }, label);
  return el("tr", { class: "key-row", "data-name": key.name },
    el("td", { class: "key-name" }, key.name),
    el("td", { class: "mono" }, key.prefix),
    el("td", { class: "key-models" }, key.models.length ? key.models.join(", ") : el("span", { class: "muted" }, t("keys.every_model"))),
    el("td", { class: "key-limits" }, limitsText(key)),
    el("td", {}, when(key.expires_at)),
    el("td", {}, el("span", { class: "state " + key.state }, { enabled: t("keys.state_enabled"), disabled: t("keys.state_disabled"), expired: t("keys.state_expired") }[key.state] || key.state)),
    usageCell(key.usage.today), usageCell(key.usage.week),
    el("td", { class: "key-actions" }, key.enabled ? button(t("common.disable"), "disable") : button(t("common.enable"), "enable"),
      button(t("keys.rotate"), "rotate"), button(t("common.delete"), "delete", "danger")));
}

async function loadKeys() {
  const data = await api("GET", `/keys?tz_offset=${TZ_OFFSET}`);
  $("keys-rows").replaceChildren(...data.keys.map(keyRow));
  $("keys-empty").hidden = data.keys.length > 0;
  $("keys-table").hidden = data.keys.length === 0;
}

// The one place a secret is put on the page; closeSecret takes it off again.
function showSecret(name, secret, titleKey) {
  $("key-secret-title").textContent = t(titleKey, { name });
  $("key-secret").textContent = secret;
  $("key-secret-box").hidden = false;
  $("key-secret-box").scrollIntoView({ block: "nearest" });
}

function closeSecret() {
  $("key-secret").textContent = "";
  $("key-secret-box").hidden = true;
}

async function keyAction(key, action) {
  try {
    if (action === "delete") {
      if (!confirm(t("keys.confirm_delete", { name: key.name }))) return;
      await api("DELETE", `/keys/${key.id}`);
      toast(t("keys.deleted", { name: key.name }));
    } else if (action === "rotate") {
      if (!confirm(t("keys.confirm_rotate", { name: key.name }))) return;
      const done = await api("POST", `/keys/${key.id}/rotate`);
      showSecret(key.name, done.secret, "keys.rotated_title");
    } else {
      await api("PUT", `/keys/${key.id}`, { enabled: action === "enable" });
      toast(t(action === "enable" ? "keys.enabled" : "keys.disabled", { name: key.name }));
    }
  } catch (err) {
    toast(err.message);
  }
  await loadKeys();
}

// The form as the API takes it: blank fields are left out (no limit, every model, no expiry).
function formBody() {
  const body = { name: $("key-name").value };
  const models = $("key-models").value.split(/[\s,]+/).filter(Boolean);
  if (models.length) body.models = models;
  const expires = $("key-expires").value;
  if (expires) {
    const at = new Date(expires);  // the browser's local time
    body.expires_at = Number.isNaN(at.getTime()) ? expires : at.toISOString();
  }
  for (const name of FIELDS) {
    const value = $("key-" + name.replace("_", "-")).value.trim();
    if (value) body[name] = value;
  }
  return body;
}

async function createKey(event) {
  event.preventDefault();
  showError("key-error");
  try {
    const made = await api("POST", "/keys", formBody());
    $("key-form").reset();
    showSecret(made.key.name, made.secret, "keys.created_named");
  } catch (err) {
    showError("key-error", err.message);
  }
  await loadKeys();
}

function wire() {
  $("key-form").addEventListener("submit", createKey);
  $("btn-key-secret-copy").addEventListener("click", () => copy($("key-secret").textContent));
  $("btn-key-secret-done").addEventListener("click", closeSecret);
}

export const keysPage = { title: "nav.keys", wire, enter: loadKeys, leave: closeSecret };
