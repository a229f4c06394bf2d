// agproxy console: the sign-in form, and a session carried over from the gateway's old
// port after a port move.
import { exchangeTicket } from "./api.js";
import { $, showError } from "./dom.js";
import { leavePage } from "./nav.js";
import { stopPolling } from "./status.js";

export function showLogin(message) {
  stopPolling();
  leavePage();
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  showError("login-error", message);
}

export function showApp() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
}

// After a port move the old page hands over a single-use ticket (see status.js).
export async function carriedLogin() {
  const match = /^#ticket=([A-Za-z0-9_-]+);(#[\w/-]*)?$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + (match[2] || ""));  // the page it was on
  return exchangeTicket(match[1]);
}
