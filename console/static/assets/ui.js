// DOM helpers: h() builds elements (text nodes only: no markup from data),
// table() a table, lineChart() an inline SVG chart.
const SVG = "http://www.w3.org/2000/svg";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "testid") el.setAttribute("data-testid", v);
    else if (k === "value") el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// table builds a table of rows: cols are [header, row => cell] pairs;
// rowAttrs(row) gives each <tr>'s attributes.
export function table(cols, rows, rowAttrs = () => ({})) {
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map(([head]) => h("th", {}, head)))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: cols.length, class: "muted" }, "none"))
      : rows.map((r) => h("tr", rowAttrs(r), cols.map(([, cell]) => h("td", {}, cell(r)))))));
}

export function fmtNum(n) {
  if (n === null || n === undefined || n === "") return "—";
  if (typeof n !== "number") return String(n);
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toLocaleString("en-US", { maximumFractionDigits: 3 });
}

export function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

// download saves a Blob under a file name.
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// lineChart draws series [{name, points: [[t, v], ...]}] as an SVG line
// chart with a time axis; empty series draw an empty frame with a note.
export function lineChart(series, { width = 560, height = 180, unit = "" } = {}) {
  const pad = { l: 48, r: 12, t: 12, b: 24 };
  const all = series.flatMap((x) => x.points);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  svg.append(s("rect", { x: pad.l, y: pad.t, width: width - pad.l - pad.r, height: height - pad.t - pad.b, class: "frame" }));
  if (all.length < 2) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "note" }, "collecting samples…"));
    return svg;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const vmax = Math.max(1e-9, ...all.map((p) => p[1]));
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / vmax) * (height - pad.t - pad.b);
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: y(vmax * f), y2: y(vmax * f), class: "grid" }));
    svg.append(s("text", { x: pad.l - 4, y: y(vmax * f) + 4, "text-anchor": "end", class: "axis" }, fmtNum(+(vmax * f).toPrecision(3)) + unit));
  }
  for (const t of [t0, t1]) {
    svg.append(s("text", { x: x(t), y: height - 6, "text-anchor": t === t0 ? "start" : "end", class: "axis" }, new Date(t).toISOString().slice(11, 19)));
  }
  series.forEach((ser, i) => {
    if (ser.points.length === 0) return;
    const d = ser.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    svg.append(s("path", { d, class: `line c${i % 6}` }, s("title", {}, ser.name)));
  });
  return svg;
}

export function legend(series) {
  return h("p", { class: "legend" }, series.map((ser, i) => h("span", { class: `key c${i % 6}` }, ser.name)));
}
