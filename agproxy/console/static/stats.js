// agproxy console: the Statistics page: tokens and requests over a chosen range, by model,
// by account and by client key, and the same as a CSV file.
import { api, download } from "./api.js";
import { barChart, hbars } from "./charts.js";
import { $, el, toast } from "./dom.js";
import { TZ_OFFSET, compact, ms, num, pad2 } from "./format.js";
import { language, t } from "./i18n.js";

const statsView = { hours: 24, bucket: "hour" };

function bucketLabel(bucket) {
  return (t) => {
    const d = new Date(t * 1000);
    if (bucket === "hour") return `${pad2(d.getHours())}:00`;
    const day = `${d.toLocaleString(language(), { month: "short" })} ${d.getDate()}`;
    return bucket === "week" ? t("stats.week_of", { day }) : day;
  };
}

async function loadStats() {
  const q = `hours=${statsView.hours}&tz_offset=${TZ_OFFSET}`;
  const [usage, summary] = await Promise.all([
    api("GET", `/stats/usage?bucket=${statsView.bucket}&${q}`), api("GET", `/stats/summary?${q}`)]);
  $("st-requests").textContent = num(summary.requests);
  $("st-errors").textContent = t("common.n_failed", { n: num(summary.errors) });
  $("st-input").textContent = num(summary.input_tokens);
  $("st-output").textContent = num(summary.output_tokens);
  $("st-thinking").textContent = summary.thinking_tokens ? t("stats.n_thinking", { n: num(summary.thinking_tokens) }) : "";
  $("st-accounts").textContent = num(summary.accounts);
  $("st-avg").textContent = summary.requests ? t("stats.average", { time: ms(summary.avg_ms) }) : "";
  const label = bucketLabel(statsView.bucket);
  barChart($("chart-tokens"), usage.series, [
    { key: "input_tokens", label: t("mon.f_input"), cls: "input" }, { key: "output_tokens", label: t("mon.f_output"), cls: "output" }], { label });
  barChart($("chart-requests"), usage.series.map((p) => ({ ...p, ok: p.requests - p.errors })), [
    { key: "ok", label: t("stats.answered"), cls: "ok" }, { key: "errors", label: t("stats.failed"), cls: "err" }], { label, height: 170 });
  const tokens = (r) => r.input_tokens + r.output_tokens;
  const breakdown = (rows, key) => rows.map((r) => ({
    name: r[key] || "–", value: tokens(r), sub: r.errors ? t("stats.sub_failed", { n: num(r.requests), failed: num(r.errors) }) : t("stats.sub", { n: num(r.requests) }) }));
  hbars($("by-model"), breakdown(summary.by_model, "model"), { format: compact });
  hbars($("by-account"), breakdown(summary.by_account, "account"), { format: compact });
  hbars($("by-key"), breakdown(summary.by_key.map((r) => (r.key === "-" ? { ...r, key: "" } : r)), "key"), { format: compact });
}

async function exportCsv() {
  const { blob, name } = await download(
    `/stats/export.csv?bucket=${statsView.bucket}&hours=${statsView.hours}&tz_offset=${TZ_OFFSET}`, "agproxy-usage.csv");
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function wire() {
  for (const tab of document.querySelectorAll("#stats-range .tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll("#stats-range .tab")) t.classList.toggle("active", t === tab);
      statsView.hours = Number(tab.dataset.hours);
      statsView.bucket = tab.dataset.bucket;
      loadStats().catch((e) => toast(e.message));
    });
  }
  $("btn-stats-csv").addEventListener("click", () => exportCsv().catch((e) => toast(e.message)));
  // The charts are drawn to the width they have: redraw when it changes.
  window.addEventListener("resize", () => { if (!$("page-stats").hidden) loadStats().catch(() => {}); });
}

export const statsPage = { title: "nav.stats", wire, enter: loadStats };
