// Small SVG charts written for murmur: line charts with axes, ticks and an optional log scale.
// No dependencies. Every series is one <path class="series"> carrying data-peer and
// data-points, so tests (and people with devtools) can see what was drawn.

const NS = "http://www.w3.org/2000/svg";
const PAD = { left: 52, right: 12, top: 10, bottom: 28 };

export function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

// "Nice" tick values covering [lo, hi], about `count` of them.
function ticks(lo, hi, count, minStep = 0) {
  if (!(hi > lo)) return [lo];
  const raw = Math.max((hi - lo) / count, minStep);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const steps = minStep >= 1 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10]; // whole seconds stay whole
  const step = steps.map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function formatTick(v, log) {
  if (log) return v >= 1e-2 && v < 1e4 ? String(+v.toPrecision(2)) : v.toExponential(0);
  const a = Math.abs(v);
  if (a >= 1000) return (v / 1000).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return String(+v.toPrecision(3));
}

function formatSeconds(s) {
  if (s < 120) return `${Math.round(s)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}`;
}

// Draws `series` ([{name, color, points: [[t, y], ...], mean?: bool}]) into `svg`.
// Options: log (log10 y scale), yMin/yMax (fixed bounds), empty (text when nothing to draw).
export function lineChart(svg, series, opts = {}) {
  const [, , W, H] = svg.getAttribute("viewBox").split(" ").map(Number);
  svg.replaceChildren();
  const log = !!opts.log;
  const usable = series
    .map((s) => ({ ...s, points: s.points.filter(([x, y]) => isFinite(x) && isFinite(y) && (!log || y > 0)) }))
    .filter((s) => s.points.length > 0);
  if (usable.length === 0) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg).textContent =
      opts.empty || "waiting for data…";
    return;
  }
  const xs = usable.flatMap((s) => s.points.map((p) => p[0]));
  const ys = usable.flatMap((s) => s.points.map((p) => (log ? Math.log10(p[1]) : p[1])));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x1 - x0 < 1) x1 = x0 + 1;
  let y0 = opts.yMin !== undefined ? opts.yMin : Math.min(...ys);
  let y1 = opts.yMax !== undefined ? opts.yMax : Math.max(...ys);
  if (log) { y0 = Math.floor(y0); y1 = Math.ceil(y1); }
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);

  const yTicks = log ? Array.from({ length: y1 - y0 + 1 }, (_, i) => y0 + i) : ticks(y0, y1, 5);
  for (const t of yTicks) {
    el("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(t), y2: sy(t), class: "grid-line" }, svg);
    el("text", { x: PAD.left - 6, y: sy(t) + 4, "text-anchor": "end" }, svg).textContent =
      formatTick(log ? Math.pow(10, t) : t, log);
  }
  for (const t of ticks(x0, x1, 6, 1)) {
    el("text", { x: sx(t), y: H - 8, "text-anchor": "middle" }, svg).textContent = formatSeconds(t);
  }
  el("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom, class: "axis" }, svg);
  el("line", { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, class: "axis" }, svg);

  for (const s of usable) {
    const d = s.points
      .map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(log ? Math.log10(y) : y).toFixed(1)}`)
      .join("");
    const path = el("path", { d, class: s.mean ? "mean" : "series", "data-points": s.points.length }, svg);
    if (!s.mean) {
      path.setAttribute("stroke", s.color);
      path.setAttribute("data-peer", s.name);
    }
    el("title", {}, path).textContent = s.label || s.name;
  }
}
