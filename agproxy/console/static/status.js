// agproxy console: the top bar (running or stopped, active accounts) and its Start/Stop
// button, polled every few seconds while signed in.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { store } from "./store.js";
import { t } from "./i18n.js";

const watchers = [];
let pollTimer = null;

// Pages that show something of the status (the proxy page's port field) follow it here.
export function onStatus(watcher) { watchers.push(watcher); }

export function setStatus(status) {
  store.status = status;
  const badge = $("status-badge");
  badge.textContent = t(status.running ? "status.running" : "status.stopped");
  badge.className = "badge " + (status.running ? "running" : "stopped");
  const n = status.active_accounts;
  $("active-accounts").textContent = t(n === 1 ? "status.active_one" : "status.active_many", { n });
  const button = $("toggle-service");
  button.textContent = t(status.running ? "status.stop" : "status.start");
  button.className = "btn " + (status.running ? "stop" : "start");
  for (const watcher of watchers) watcher(status);
}

export async function refreshStatus() {
  try {
    setStatus(await api("GET", "/proxy/status"));
  } catch { /* a failed poll is retried at the next tick */ }
}

export function startPolling() {
  clearInterval(pollTimer);
  pollTimer = setInterval(refreshStatus, 3000);
}

export function stopPolling() { clearInterval(pollTimer); }

export async function toggleService() {
  const button = $("toggle-service");
  const errorBox = $("service-error");
  button.disabled = true;
  errorBox.hidden = true;
  try {
    const previousPort = store.status.port;
    setStatus(await api("POST", store.status.running ? "/proxy/stop" : "/proxy/start"));
    if (store.status.running && store.status.port !== previousPort) await followPortMove(store.status.port);
  } catch (err) {
    errorBox.className = "banner error";
    errorBox.textContent = err.message;  // verbatim, as the gateway said it
    errorBox.hidden = false;
    await refreshStatus();
  } finally {
    button.disabled = false;
  }
}

async function followPortMove(port) {
  if (String(port) === location.port) return;
  const url = `${location.protocol}//${location.hostname}:${port}/`;
  const errorBox = $("service-error");
  errorBox.className = "banner warn";
  errorBox.replaceChildren(t("status.moved", { port }) + " ", el("a", { href: url }, url));
  errorBox.hidden = false;
  // The session is per origin (the port is part of it): a single-use ticket that lives
  // a minute carries it across in the URL fragment; the password itself never leaves.
  const { ticket } = await api("POST", "/console/ticket");
  setTimeout(() => { location.href = `${url}#ticket=${encodeURIComponent(ticket)};${location.hash}`; }, 1500);
}
