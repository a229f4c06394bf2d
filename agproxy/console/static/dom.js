// agproxy console: small DOM helpers. Styles go through the CSSOM (element.style), which
// the console's Content-Security-Policy (style-src 'self') allows; inline style attributes
// and inline scripts it does not.

import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, ...children) {
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

export function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 2500);
}

export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {  // no clipboard API off localhost over plain http
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast(t("common.copied"));
}

// Shows an error message in a box (hidden when there is none).
export function showError(id, message) {
  $(id).textContent = message || "";
  $(id).hidden = !message;
}
