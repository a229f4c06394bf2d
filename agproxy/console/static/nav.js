// agproxy console: which page shows, from the address's #/name. A page is an object
// { title, wire?, render?, enter?, leave? }: enter runs when it is shown, leave when hidden.
import { $, toast } from "./dom.js";
import { t } from "./i18n.js";

let pages = {};
let current = null;

export function setPages(table) { pages = table; }

export function route() {
  const wanted = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const name = wanted in pages ? wanted : "dashboard";
  for (const other of Object.keys(pages)) $("page-" + other).hidden = other !== name;
  for (const link of document.querySelectorAll(".nav-link")) link.classList.toggle("active", link.dataset.page === name);
  $("page-title").textContent = t(pages[name].title);
  if (current && current !== name) pages[current].leave?.();
  current = name;
  Promise.resolve(pages[name].enter?.()).catch((err) => toast(err.message));
}

// At sign-out: the shown page stops its timers and streams.
// The page shown now (after a language switch it is drawn again).
export const currentPage = () => current;

export function leavePage() {
  if (current) pages[current].leave?.();
  current = null;
}
