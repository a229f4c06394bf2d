// agproxy console: numbers, durations and times as the pages show them.
import { language, t } from "./i18n.js";

export const TZ_OFFSET = -new Date().getTimezoneOffset() * 60;  // seconds east of UTC, as the API wants
export const pad2 = (n) => String(n).padStart(2, "0");
export const num = (v) => (v || 0).toLocaleString(language());

export function clock(ts) {
  const d = new Date(ts * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function ms(v) {
  if (v === null || v === undefined) return "–";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
}

export function compact(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + "k";
  return String(Math.round(n));
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad2(Math.floor((s % 3600) / 60))}m`;
}

// 3d 4h, 5h 20m, 12m, 40s: a span of time for people, to the unit that matters.
export function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${pad2(m)}m`;
  return m ? `${m}m` : `${s}s`;
}

export function until(ts) {
  if (!ts) return "";
  const s = Math.round(ts - Date.now() / 1000);
  if (s <= 0) return t("fmt.resets_now");
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return t("fmt.resets_in", { time: d >= 2 ? `${d}d` : h ? `${h}h${pad2(m)}m` : `${m}m` });
}

export function ago(ts) {
  if (!ts) return t("fmt.never");
  const s = Math.round(Date.now() / 1000 - ts);
  const time = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
  return t("fmt.ago", { time });
}
