// agproxy console: the prompt rewrites card (on the Model mapping page): edit the find →
// replace rules, and test them on a system prompt before saving.
import { api } from "./api.js";
import { $, el, showError, toast } from "./dom.js";
import { store } from "./store.js";
import { t } from "./i18n.js";

function rewriteRow(find = "", replace = "") {
  const row = el("div", { class: "rewrite-row" },
    el("input", { class: "rewrite-find", placeholder: t("rw.find_placeholder"), value: find }),
    el("span", { class: "arrow" }, "→"),
    el("input", { class: "rewrite-replace", placeholder: t("rw.replace_placeholder"), value: replace }),
    el("button", { class: "btn small", type: "button", title: t("rw.remove_title"), onclick: () => row.remove() }, t("common.remove")));
  return row;
}

function editedRules() {
  return [...document.querySelectorAll(".rewrite-row")]
    .map((row) => ({ find: row.querySelector(".rewrite-find").value, replace: row.querySelector(".rewrite-replace").value }))
    .filter((rule) => rule.find);
}

function render() {
  const rules = store.config.config.prompt_rewrites || [];
  $("rewrite-rows").replaceChildren(...rules.map((r) => rewriteRow(r.find, r.replace)));
  if (!rules.length) $("rewrite-rows").append(rewriteRow());
}

async function save() {
  showError("rewrite-error");
  try {
    store.config = await api("PUT", "/config", { prompt_rewrites: editedRules() });
    render();
    toast(t("rw.saved"));
  } catch (err) {
    showError("rewrite-error", err.message);
  }
}

async function test() {
  const out = $("rewrite-result");
  try {
    const found = await api("POST", "/prompt-rewrites/test", { text: $("rewrite-sample").value, rules: editedRules() });
    out.className = "trace " + (found.matched.length ? "ok" : "");
    out.textContent = found.text;
    $("rewrite-matched").textContent = found.matched.length
      ? t("rw.applied", { n: found.matched.length }) : t("rw.none");
  } catch (err) {
    out.className = "trace bad";
    out.textContent = err.message;
  }
}

function wire() {
  $("btn-rewrite-add").addEventListener("click", () => $("rewrite-rows").append(rewriteRow()));
  $("btn-rewrite-save").addEventListener("click", save);
  $("btn-rewrite-test").addEventListener("click", test);
}

export const rewritesCard = { wire, render };
