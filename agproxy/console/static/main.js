// agproxy console: the entry module. A small single-page app over the admin API (/api/*),
// served as ES modules straight from the package: no build step.
import { accountsPage } from "./accounts.js";
import { api, onUnauthorized, session, signIn } from "./api.js";
import { dashboardPage } from "./dashboard.js";
import { $, copy } from "./dom.js";
import { preferredLanguage, t, useLanguage, wireLanguageSelects } from "./i18n.js";
import { keysPage } from "./keys.js";
import { carriedLogin, showApp, showLogin } from "./login.js";
import { mappingPage } from "./mapping.js";
import { monitorPage } from "./monitor.js";
import { currentPage, route, setPages } from "./nav.js";
import { providersPage } from "./providers.js";
import { proxyPage } from "./proxy.js";
import { rewritesCard } from "./rewrites.js";
import { setStatus, startPolling, toggleService } from "./status.js";
import { statsPage } from "./stats.js";
import { store } from "./store.js";
import { zaiCard } from "./zai.js";

// Keyed by the name in the address (#/proxy) and in the section's id (page-proxy).
const PAGES = { dashboard: dashboardPage, proxy: proxyPage, accounts: accountsPage, providers: providersPage,
  keys: keysPage, monitor: monitorPage, stats: statsPage, mapping: mappingPage };
const PARTS = [...Object.values(PAGES), zaiCard, rewritesCard];

async function loadAll() {
  let status, key;
  [status, store.config, key] = await Promise.all([api("GET", "/proxy/status"), api("GET", "/config"), api("GET", "/proxy/api-key")]);
  store.status = status;
  store.apiKey = key.api_key;
  for (const part of PARTS) part.render?.();
  setStatus(status);
}

async function tryLogin(password) {
  try {
    await signIn(password);
  } catch (err) {
    showLogin(err.status === 401 ? t("login.wrong") : t("login.unreachable", { error: err.message }));
    return;
  }
  showApp();
  await loadAll();
  route();
  startPolling();
}

// After a language switch: the signed-in console draws its parts and the shown page again.
function redraw() {
  if (!store.config || $("app-view").hidden) return;
  for (const part of PARTS) part.render?.();
  setStatus(store.status);
  if (currentPage()) route();
}

function wire() {
  wireLanguageSelects(redraw);
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); tryLogin($("login-password").value); });
  $("logout").addEventListener("click", (e) => { e.preventDefault(); session.clear(); showLogin(); });
  $("toggle-service").addEventListener("click", toggleService);
  for (const b of document.querySelectorAll("[data-copy]")) b.addEventListener("click", () => copy($(b.dataset.copy).textContent));
  for (const b of document.querySelectorAll("[data-copy-input]")) b.addEventListener("click", () => copy($(b.dataset.copyInput).value));
  for (const part of PARTS) part.wire?.();
  window.addEventListener("hashchange", route);
}

setPages(PAGES);
await useLanguage(preferredLanguage());
onUnauthorized(() => showLogin());
wire();
const saved = session.get() || await carriedLogin();
if (saved) tryLogin(saved); else showLogin();
