// agproxy console: the Model mapping page: edit and order the rules, test a model id
// against them before saving, see what is served now and the built-in table.
import { api } from "./api.js";
import { $, el, showError, toast } from "./dom.js";
import { store } from "./store.js";
import { t } from "./i18n.js";

function mappingRow(from = "", to = "") {
  const button = (label, title, onclick) => el("button", { class: "btn small", type: "button", title, onclick }, label);
  const row = el("div", { class: "mapping-row" },
    el("span", { class: "order" },
      button("↑", t("map.up"), () => row.previousElementSibling && row.parentNode.insertBefore(row, row.previousElementSibling)),
      button("↓", t("map.down"), () => row.nextElementSibling && row.parentNode.insertBefore(row.nextElementSibling, row))),
    el("input", { class: "map-from", placeholder: t("map.from_placeholder"), value: from }),
    el("span", { class: "arrow" }, "→"),
    el("input", { class: "map-to", placeholder: t("map.to_placeholder"), value: to }),
    button(t("common.remove"), t("map.remove_title"), () => row.remove()));
  return row;
}

function mappingRules() {
  const rules = {};
  for (const row of document.querySelectorAll(".mapping-row")) {
    const from = row.querySelector(".map-from").value.trim();
    const to = row.querySelector(".map-to").value.trim();
    if (from && to) rules[from] = to;
  }
  return rules;
}

function render() {
  const rules = store.config.config.model_mapping || {};
  $("mapping-rows").replaceChildren(...Object.entries(rules).map(([k, v]) => mappingRow(k, v)));
  if (!Object.keys(rules).length) $("mapping-rows").append(mappingRow());
}

async function save() {
  const rules = mappingRules();
  showError("mapping-error");
  try {
    store.config = await api("PUT", "/config", { model_mapping: Object.keys(rules).length ? rules : null });
    render();
    toast(t("map.saved"));
  } catch (err) {
    showError("mapping-error", err.message);
  }
}

async function loadModels() {
  const models = await api("GET", "/models");
  $("served-models").replaceChildren(...(models.served.length ? models.served.map((m) => el("span", { class: "chip" }, m))
    : [el("span", { class: "muted" }, t("map.none_served"))]));
  $("builtin-table").replaceChildren(...Object.entries(models.builtin).map(([k, v]) => el("tr", {}, el("td", { class: "mono" }, k), el("td", { class: "mono" }, v))));
}

// How the gateway found the model, as nodes: ids are shown as text, never parsed as HTML.
function how(found) {
  const code = (text) => el("code", {}, text ?? "");
  switch (found.source) {
    case "rule": return [t("map.by_rule") + " ", code(found.rule), found.target !== found.model ? " " + t("map.closest", { target: found.target }) : ""];
    case "builtin": return [t("map.by_builtin") + " (", code(found.rule), ")"];
    case "served": return [t("map.served_as_asked")];
    case "family": return [t("map.family")];
    case "claude-family": return [t("map.claude_family")];
    default: return [];
  }
}

async function traceModel() {
  const model = $("trace-model").value.trim();
  if (!model) return;
  const out = $("trace-result");
  try {
    const found = await api("POST", "/models/trace", { model, rules: mappingRules() });
    out.className = "trace " + (found.model ? "ok" : "bad");
    out.replaceChildren(el("code", {}, found.requested), " → ", ...(found.model
      ? [el("code", {}, found.model), " ", ...how(found)] : [t("map.nothing")]));
  } catch (err) {
    out.className = "trace bad";
    out.textContent = err.message;
  }
}

function wire() {
  $("btn-mapping-add").addEventListener("click", () => $("mapping-rows").append(mappingRow()));
  $("btn-mapping-save").addEventListener("click", save);
  $("btn-trace").addEventListener("click", traceModel);
  $("trace-model").addEventListener("keydown", (e) => { if (e.key === "Enter") traceModel(); });
}

// Entering redraws the rules from the saved configuration (unsaved edits are dropped).
export const mappingPage = {
  title: "nav.mapping", wire, render,
  enter() { render(); return loadModels(); },
};
