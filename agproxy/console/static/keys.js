// agproxy console: the Keys page: client keys with their models, limits, expiry, state and
// usage; create one, rotate, disable or enable, delete. A secret is shown once, in the box
// above the list, and leaves the page when the box is closed or the page is left.
import { api } from "./api.js";
import { $, copy, el, showError, toast } from "./dom.js";
import { TZ_OFFSET, compact, num, pad2 } from "./format.js";

const LIMITS = [["rpm", (v) => `${num(v)} rpm`], ["tpm", (v) => `${num(v)} tpm`],
  ["concurrency", (v) => `${num(v)} at once`], ["daily_tokens", (v) => `${num(v)} tokens/day`],
  ["quota_share", (v) => `${v}% of quota`]];
const FIELDS = ["rpm", "tpm", "concurrency", "daily_tokens", "quota_share"];

function limitsText(key) {
  const parts = LIMITS.filter(([name]) => key[name] !== null).map(([name, show]) => show(key[name]));
  return parts.length ? parts.join(", ") : "none";
}

// 2099-01-31 18:00, in the browser's time zone.
function when(ts) {
  if (!ts) return "never";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function usageCell(u) {
  return el("td", { class: "num usage", title: `${num(u.input_tokens)} tokens in, ${num(u.output_tokens)} out` },
    el("div", {}, `${num(u.requests)} req`), el("small", { class: "muted" }, `${compact(u.input_tokens + u.output_tokens)} tok`));
}

function keyRow(key) {
  const button = (label, action, cls = "") => el("button", { class: "btn small " + cls, type: "button", "data-action": action,
    onclick: () => keyAction(key, action) }, label);
  return el("tr", { class: "key-row", "data-name": key.name },
    el("td", { class: "key-name" }, key.name),
    el("td", { class: "mono" }, key.prefix),
    el("td", { class: "key-models" }, key.models.length ? key.models.join(", ") : el("span", { class: "muted" }, "every model")),
    el("td", { class: "key-limits" }, limitsText(key)),
    el("td", {}, when(key.expires_at)),
    el("td", {}, el("span", { class: "state " + key.state }, key.state)),
    usageCell(key.usage.today), usageCell(key.usage.week),
    el("td", { class: "key-actions" }, key.enabled ? button("Disable", "disable") : button("Enable", "enable"),
      button("Rotate", "rotate"), button("Delete", "delete", "danger")));
}

async function loadKeys() {
  const data = await api("GET", `/keys?tz_offset=${TZ_OFFSET}`);
  $("keys-rows").replaceChildren(...data.keys.map(keyRow));
  $("keys-empty").hidden = data.keys.length > 0;
  $("keys-table").hidden = data.keys.length === 0;
}

// The one place a secret is put on the page; closeSecret takes it off again.
function showSecret(name, secret, verb) {
  $("key-secret-title").textContent = `${verb} key “${name}”`;
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
      if (!confirm(`Delete the key “${key.name}”? Clients using it are refused at once.`)) return;
      await api("DELETE", `/keys/${key.id}`);
      toast(`Deleted ${key.name}`);
    } else if (action === "rotate") {
      if (!confirm(`Rotate the key “${key.name}”? Its current secret stops working at once.`)) return;
      const done = await api("POST", `/keys/${key.id}/rotate`);
      showSecret(key.name, done.secret, "New secret for");
    } else {
      await api("PUT", `/keys/${key.id}`, { enabled: action === "enable" });
      toast(`${key.name}: ${action}d`);
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
    showSecret(made.key.name, made.secret, "Created");
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

export const keysPage = { title: "Keys", wire, enter: loadKeys, leave: closeSecret };
