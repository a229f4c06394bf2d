// agproxy console: the one place that talks to the gateway. Every call to the admin API
// goes through here, with the signed-in session's password as its bearer token.

const BASE = "/api";
const SESSION_KEY = "agproxy.admin";

export class ApiError extends Error {
  constructor(status, message, param) { super(message); this.status = status; this.param = param; }
}

// The password lives in sessionStorage: per tab and per origin, gone when the tab closes.
export const session = {
  get: () => sessionStorage.getItem(SESSION_KEY) || "",
  set: (password) => sessionStorage.setItem(SESSION_KEY, password),
  clear: () => sessionStorage.removeItem(SESSION_KEY),
};

let unauthorized = () => {};
// What a 401 does (the console shows its login form): set once by main.js.
export function onUnauthorized(handler) { unauthorized = handler; }

function send(method, path, body, signal) {
  const headers = { Authorization: "Bearer " + session.get() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(BASE + path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
}

// The gateway's own message, verbatim; the status text only when the body has none.
async function failure(response) {
  const data = await response.json().catch(() => ({}));
  const err = data.error || {};
  return new ApiError(response.status, err.message || response.statusText, err.param);
}

async function checked(response, { redirect = true } = {}) {
  if (response.ok) return response;
  if (response.status === 401 && redirect) {  // the password changed: a stale one is not kept
    session.clear();
    unauthorized();
  }
  throw await failure(response);
}

// JSON in, JSON out: api("PUT", "/config", { port: 8046 }).
export async function api(method, path, body) {
  const response = await checked(await send(method, path, body));
  return response.json().catch(() => ({}));
}

// Checks a password by reading the status with it; kept only if the gateway accepts it.
export async function signIn(password) {
  session.set(password);
  try {
    return await (await checked(await send("GET", "/proxy/status"), { redirect: false })).json();
  } catch (err) {
    session.clear();
    throw err;
  }
}

// An open response for reading a stream (server-sent events) chunk by chunk.
export async function openStream(path, signal) {
  return checked(await send("GET", path, undefined, signal));
}

// A file answer: its bytes and the name the gateway suggests.
export async function download(path, fallbackName) {
  const response = await checked(await send("GET", path));
  const name = (response.headers.get("content-disposition") || "").match(/filename="([^"]+)"/)?.[1];
  return { blob: await response.blob(), name: name || fallbackName };
}

// After a port move: trade the single-use ticket in the URL for the session (no auth header).
export async function exchangeTicket(ticket) {
  try {
    const response = await fetch("/auth/ticket", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ticket }) });
    return response.ok ? (await response.json()).password : null;
  } catch { return null; }
}

// A language file of the console (i18n/<code>.json): static, same origin, no session needed.
export async function languageStrings(code) {
  const response = await fetch(`/console/i18n/${code}.json`);
  if (!response.ok) throw new Error(`${code}.json: ${response.status}`);
  return response.json();
}
