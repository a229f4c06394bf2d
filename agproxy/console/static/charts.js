// agproxy console: small SVG charts (no library): stacked bars over time, horizontal bars.
import { el } from "./dom.js";
import { compact } from "./format.js";
import { t } from "./i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

// A "nice" axis maximum and step for values up to `max`.
function niceScale(max, ticks = 4) {
  if (max <= 0) return { top: ticks, step: 1 };
  const raw = max / ticks, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  return { top: step * Math.ceil(max / step), step };
}

// Stacked bars, one per point. series: [{ key, label, cls }] bottom to top; label(t) for the x axis.
export function barChart(container, points, series, { label, height = 220 } = {}) {
  const width = Math.max(container.clientWidth || 600, 320);
  const pad = { l: 48, r: 10, t: 10, b: 26 };
  const plotW = width - pad.l - pad.r, plotH = height - pad.t - pad.b;
  const totals = points.map((p) => series.reduce((sum, s) => sum + (p[s.key] || 0), 0));
  const { top, step } = niceScale(Math.max(0, ...totals));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "bars", role: "img" });
  for (let v = 0; v <= top + 1e-9; v += step) {
    const y = pad.t + plotH - (v / top) * plotH;
    chart.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid-line" }),
      svg("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end", class: "axis" }, compact(v)));
  }
  const slot = plotW / Math.max(points.length, 1), barW = Math.max(1, Math.min(42, slot * 0.72));
  const every = Math.max(1, Math.ceil(points.length / Math.floor(plotW / 64)));
  points.forEach((p, i) => {
    const x = pad.l + i * slot + (slot - barW) / 2;
    let y = pad.t + plotH;
    const group = svg("g", { class: "bar-group", "data-t": p.t });
    const tip = [label(p.t), ...series.map((s) => `${s.label}: ${(p[s.key] || 0).toLocaleString()}`)].join("\n");
    for (const s of series) {
      const h = ((p[s.key] || 0) / top) * plotH;
      if (h <= 0) continue;
      y -= h;
      group.append(svg("rect", { x, y, width: barW, height: h, class: s.cls, rx: Math.min(3, barW / 3) }));
    }
    // A full-height transparent target: the tooltip works on empty and tiny bars too.
    group.append(svg("rect", { x: pad.l + i * slot, y: pad.t, width: slot, height: plotH, class: "hit" }, svg("title", {}, tip)));
    chart.append(group);
    if (i % every === 0) {
      chart.append(svg("text", { x: x + barW / 2, y: height - 8, "text-anchor": "middle", class: "axis" }, label(p.t)));
    }
  });
  container.replaceChildren(chart);
  container.dataset.points = String(points.length);
  container.dataset.total = String(totals.reduce((a, b) => a + b, 0));
}

// Horizontal bars for a breakdown: rows [{ name, value, sub }] with values on one scale.
export function hbars(container, rows, { format = (v) => v.toLocaleString(), empty = t("charts.empty") } = {}) {
  if (!rows.length) {
    container.replaceChildren(el("p", { class: "muted" }, empty));
    return;
  }
  const max = Math.max(...rows.map((r) => r.value), 1);
  container.replaceChildren(...rows.map((r) => el("div", { class: "hbar", "data-name": r.name },
    el("div", { class: "hbar-top" }, el("span", { class: "hbar-name", title: r.name }, r.name),
      el("span", {}, format(r.value), r.sub ? el("small", { class: "muted" }, " " + r.sub) : "")),
    el("div", { class: "bar" + (r.cls ? " " + r.cls : "") }, el("i", { style: `width:${Math.max(0.5, (r.value / max) * 100)}%` })))));
}
