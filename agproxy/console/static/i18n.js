// agproxy console: the console in the user's language. One JSON file per language in
// i18n/ (English, en.json, is the source of truth and the fallback for a missing key);
// t("key", { name }) fills {name} placeholders. Elements in console.html carry
// data-i18n (text), data-i18n-html (text with markup), data-i18n-placeholder and
// data-i18n-title; translate() sets them all from the loaded language.

import { languageStrings } from "./api.js";

// The languages offered, by their own names (never translated).
export const LANGUAGES = { en: "English", es: "Español", pt: "Português", fr: "Français", de: "Deutsch", zh: "中文" };
const STORAGE_KEY = "agproxy.lang";

let english = {};
let strings = {};
let current = "en";

export const language = () => current;

// The saved choice, else the first browser language we have (de-AT → de), else English.
export function preferredLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && Object.hasOwn(LANGUAGES, saved)) return saved;
  for (const tag of navigator.languages || [navigator.language]) {
    const code = String(tag || "").toLowerCase().split("-")[0];
    if (Object.hasOwn(LANGUAGES, code)) return code;
  }
  return "en";
}

// Loads a language (and English under it), and translates the page.
export async function useLanguage(code, { remember = false } = {}) {
  if (!Object.hasOwn(LANGUAGES, code)) code = "en";
  if (!Object.keys(english).length) english = await languageStrings("en");
  strings = code === "en" ? english : await languageStrings(code).catch(() => english);
  current = code;
  if (remember) localStorage.setItem(STORAGE_KEY, code);
  document.documentElement.lang = code === "zh" ? "zh-CN" : code;
  translate();
  for (const select of document.querySelectorAll(".lang-select")) select.value = code;
}

export function t(key, params) {
  let text = strings[key] ?? english[key] ?? key;
  for (const [name, value] of Object.entries(params || {})) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

export function translate(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  // Markup from our own language files (same origin, shipped with the package), never data.
  for (const node of root.querySelectorAll("[data-i18n-html]")) node.innerHTML = t(node.dataset.i18nHtml);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  for (const select of root.querySelectorAll(".lang-select")) select.setAttribute("aria-label", t("lang.label"));
  document.title = t("app.title");
}

// Fills the language selectors; onChange(code) runs after a switch.
export function wireLanguageSelects(onChange) {
  for (const select of document.querySelectorAll(".lang-select")) {
    select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => new Option(name, code)));
    select.value = current;
    select.addEventListener("change", async () => {
      await useLanguage(select.value, { remember: true });
      onChange?.(select.value);
    });
  }
}
