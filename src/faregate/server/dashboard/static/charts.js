// Small SVG charts: time series (lines, stacked areas, stacked bars), horizontal bars, and
// 100%-stacked share bars. Every label is an SVG text node or a <title> (never parsed as markup).

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = [
  "#2f6fde", "#e8833a", "#23845a", "#c4322b", "#7c4dcc", "#0e9aa7",
  "#b7791f", "#d6457a", "#5b6b82", "#7aa33b", "#9c5b2c", "#3b82c4",
];
const W = 680;
const M = { top: 12, right: 14, bottom: 30, left: 70 };

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, value, attrs = {}) {
  const node = el("text", { x, y, ...attrs }, parent);
  node.textContent = String(value);
  return node;
}

function title(parent, value) {
  el("title", {}, parent).textContent = String(value);
}

export function colorFor(index) {
  return PALETTE[index % PALETTE.length];
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * exp >= v) return m * exp;
  return 10 * exp;
}

function figure(name, svg, legendItems, caption) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.dataset.chart = name;
  if (legendItems && legendItems.length) fig.appendChild(legend(legendItems));
  fig.appendChild(svg);
  if (caption) {
    const cap = document.createElement("figcaption");
    cap.textContent = caption;
    fig.appendChild(cap);
  }
  return fig;
}

export function legend(items) {
  const box = document.createElement("div");
  box.className = "legend";
  items.forEach(({ name, color }) => {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color;
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(name));
    box.appendChild(item);
  });
  return box;
}

function svgRoot(height, label) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", "aria-label": label });
  title(svg, label);
  return svg;
}

function yAxis(svg, height, yMax, format) {
  const g = el("g", { class: "axis" }, svg);
  const plotH = height - M.top - M.bottom;
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const y = M.top + plotH - (plotH * i) / 4;
    el("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "grid-line" }, g);
    text(g, M.left - 6, y + 4, format(v), { "text-anchor": "end" });
  }
  el("line", { x1: M.left, x2: W - M.right, y1: M.top + plotH, y2: M.top + plotH }, g);
}

export function formatTime(ts, bucket) {
  const d = new Date(ts * 1000);
  const day = d.toLocaleDateString("en-GB", { day: "numeric", month: "short" });
  if (bucket === "day") return day;
  const hh = String(d.getHours()).padStart(2, "0");
  return `${day} ${hh}:00`;
}

function noData(name, label, height = 120) {
  const svg = svgRoot(height, label);
  text(svg, W / 2, height / 2, "No data in this range", { "text-anchor": "middle", class: "empty" });
  return figure(name, svg);
}

// series: [{name, points: [[ts, value], ...]}]; kind: "line" | "area" (stacked) | "bars" (stacked)
export function timeSeries(name, { label, series, kind = "line", format = String, bucket = "hour", height = 240, caption }) {
  const stamps = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  if (!stamps.length) return noData(name, label);
  const index = new Map(stamps.map((ts, i) => [ts, i]));
  const values = series.map((s) => {
    const row = new Array(stamps.length).fill(0);
    s.points.forEach(([ts, v]) => { row[index.get(ts)] += Number(v) || 0; });
    return row;
  });
  const stacked = kind !== "line";
  const tops = stamps.map((_, i) => (stacked ? values.reduce((a, row) => a + row[i], 0) : Math.max(0, ...values.map((row) => row[i]))));
  const yMax = niceMax(Math.max(...tops));
  const svg = svgRoot(height, label);
  yAxis(svg, height, yMax, format);
  const plotW = W - M.left - M.right;
  const plotH = height - M.top - M.bottom;
  const band = plotW / stamps.length;
  const xAt = (i) => M.left + band * (i + 0.5);
  const yAt = (v) => M.top + plotH - (plotH * v) / yMax;
  const every = Math.max(1, Math.ceil(stamps.length / 7));
  const xg = el("g", { class: "axis" }, svg);
  stamps.forEach((ts, i) => {
    if (i % every === 0) text(xg, xAt(i), height - M.bottom + 16, formatTime(ts, bucket), { "text-anchor": "middle" });
  });
  const base = new Array(stamps.length).fill(0);
  series.forEach((s, si) => {
    const color = colorFor(si);
    const g = el("g", { class: "series", "data-series": s.name }, svg);
    if (kind === "bars") {
      const bw = Math.max(2, band * 0.7);
      values[si].forEach((v, i) => {
        if (!v) return;
        const y0 = yAt(base[i]);
        const y1 = yAt(base[i] + v);
        const r = el("rect", { x: xAt(i) - bw / 2, y: y1, width: bw, height: Math.max(0.5, y0 - y1), fill: color }, g);
        title(r, `${s.name} · ${formatTime(stamps[i], bucket)}: ${format(v)}`);
        base[i] += v;
      });
      return;
    }
    const lower = base.slice();
    const upper = values[si].map((v, i) => (stacked ? base[i] + v : v));
    const line = upper.map((v, i) => `${i ? "L" : "M"}${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`).join("");
    if (kind === "area") {
      const back = lower.map((v, i) => [i, v]).reverse().map(([i, v]) => `L${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`).join("");
      el("path", { d: `${line}${back}Z`, fill: color, "fill-opacity": 0.35, stroke: "none" }, g);
    }
    el("path", { d: line, fill: "none", stroke: color, "stroke-width": 2 }, g);
    upper.forEach((v, i) => {
      const c = el("circle", { cx: xAt(i), cy: yAt(v), r: stamps.length > 60 ? 1.5 : 3, fill: color }, g);
      title(c, `${s.name} · ${formatTime(stamps[i], bucket)}: ${format(values[si][i])}`);
    });
    if (stacked) upper.forEach((v, i) => { base[i] = v; });
  });
  if (!tops.some((v) => v > 0)) zeroNote(svg, height);
  return figure(name, svg, series.map((s, i) => ({ name: s.name, color: colorFor(i) })), caption);
}

function zeroNote(svg, height) {
  text(svg, (W + M.left) / 2, height / 2, "All zero in this range", { "text-anchor": "middle", class: "empty" });
}

// items: [{label, value, color?, onClick?, tip?}]; one horizontal bar per item, value labelled.
export function hBars(name, { label, items, format = String, max = null, caption }) {
  if (!items.length) return noData(name, label);
  const row = 26;
  const left = 190;
  const height = M.top + items.length * row + 8;
  const svg = svgRoot(height, label);
  const top = max ?? niceMax(Math.max(...items.map((i) => Number(i.value) || 0)));
  const plotW = W - left - 90;
  items.forEach((item, i) => {
    const y = M.top + i * row;
    const g = el("g", { class: "bar", "data-key": item.label }, svg);
    const shown = item.label.length > 28 ? `${item.label.slice(0, 27)}…` : item.label;
    text(g, left - 8, y + row / 2 + 4, shown, { "text-anchor": "end" });
    el("rect", { x: left, y: y + 4, width: plotW, height: row - 8, fill: "#f0f2f5" }, g);
    const v = Math.max(0, Number(item.value) || 0);
    el("rect", {
      x: left, y: y + 4, width: Math.max(v > 0 ? 1 : 0, (plotW * Math.min(v, top)) / top), height: row - 8,
      fill: item.color || colorFor(0),
    }, g);
    title(g, item.tip || `${item.label}: ${format(item.value)}`);
    text(g, left + plotW + 6, y + row / 2 + 4, format(item.value));
    if (item.onClick) {
      g.setAttribute("class", "bar bar-clickable");
      g.setAttribute("tabindex", "0");
      g.setAttribute("role", "button");
      g.addEventListener("click", item.onClick);
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") item.onClick(); });
    }
    if (item.marker != null) {
      const mx = left + (plotW * Math.min(item.marker, top)) / top;
      el("line", { x1: mx, x2: mx, y1: y + 1, y2: y + row - 1, stroke: "#111827", "stroke-width": 2 }, g);
    }
  });
  return figure(name, svg, null, caption);
}

// rows: [{label, parts: {key: value}}]; each row is a bar split into the keys' shares of it.
export function shareBars(name, { label, rows, keys, format = String, caption }) {
  const used = rows.filter((r) => keys.some((k) => Number(r.parts[k]) > 0));
  if (!used.length) return noData(name, label);
  const row = 28;
  const left = 190;
  const height = M.top + used.length * row + 8;
  const svg = svgRoot(height, label);
  const plotW = W - left - 20;
  used.forEach((r, i) => {
    const y = M.top + i * row;
    const g = el("g", { class: "share-row", "data-key": r.label }, svg);
    const shown = r.label.length > 28 ? `${r.label.slice(0, 27)}…` : r.label;
    text(g, left - 8, y + row / 2 + 4, shown, { "text-anchor": "end" });
    const total = keys.reduce((a, k) => a + (Number(r.parts[k]) || 0), 0);
    let x = left;
    keys.forEach((k, ki) => {
      const v = Number(r.parts[k]) || 0;
      if (!v) return;
      const w = (plotW * v) / total;
      const seg = el("rect", { x, y: y + 4, width: w, height: row - 8, fill: colorFor(ki) }, g);
      title(seg, `${r.label} · ${k}: ${format(v)} (${((100 * v) / total).toFixed(1)}%)`);
      if (w > 34) text(g, x + w / 2, y + row / 2 + 4, `${Math.round((100 * v) / total)}%`, { "text-anchor": "middle", class: "on-bar" });
      x += w;
    });
  });
  return figure(name, svg, keys.map((k, i) => ({ name: k, color: colorFor(i) })), caption);
}

// categories: labels on the x axis; series: [{name, values: [per category]}]; stacked columns.
export function stackedColumns(name, { label, categories, series, format = String, height = 240, caption }) {
  if (!categories.length) return noData(name, label);
  const tops = categories.map((_, i) => series.reduce((a, s) => a + (Number(s.values[i]) || 0), 0));
  const yMax = niceMax(Math.max(...tops));
  const svg = svgRoot(height, label);
  yAxis(svg, height, yMax, format);
  const plotW = W - M.left - M.right;
  const plotH = height - M.top - M.bottom;
  const band = plotW / categories.length;
  const bw = Math.min(60, band * 0.6);
  categories.forEach((cat, i) => {
    const cx = M.left + band * (i + 0.5);
    const shown = cat.length > 18 ? `${cat.slice(0, 17)}…` : cat;
    text(svg, cx, height - M.bottom + 16, shown, { "text-anchor": "middle" });
    let acc = 0;
    series.forEach((s, si) => {
      const v = Number(s.values[i]) || 0;
      if (!v) return;
      const y0 = M.top + plotH - (plotH * acc) / yMax;
      const y1 = M.top + plotH - (plotH * (acc + v)) / yMax;
      const r = el("rect", { x: cx - bw / 2, y: y1, width: bw, height: Math.max(0.5, y0 - y1), fill: colorFor(si) }, svg);
      title(r, `${cat} · ${s.name}: ${format(v)}`);
      acc += v;
    });
  });
  if (!tops.some((v) => v > 0)) zeroNote(svg, height);
  return figure(name, svg, series.map((s, i) => ({ name: s.name, color: colorFor(i) })), caption);
}
