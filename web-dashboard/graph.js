// The topology: peers on a circle (sorted by id, so the picture is stable), an edge for each
// connection a peer announced, each peer coloured by its accuracy.

import { el } from "./chart.js";

// Red (low) to green (high) through amber, for accuracies in [lo, 1].
export function accuracyColour(a, lo = 0.5) {
  const t = Math.max(0, Math.min(1, (a - lo) / (1 - lo)));
  const hue = 10 + t * 120;
  return `hsl(${hue.toFixed(0)}, 65%, 45%)`;
}

export function topology(svg, peers, shortId) {
  const [, , W, H] = svg.getAttribute("viewBox").split(" ").map(Number);
  svg.replaceChildren();
  if (peers.length === 0) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg).textContent = "no peers yet";
    return;
  }
  const ids = peers.map((p) => p.peer_id).sort();
  const r = Math.min(W, H) / 2 - 34;
  const pos = new Map(ids.map((id, i) => {
    const a = (2 * Math.PI * i) / ids.length - Math.PI / 2;
    return [id, [W / 2 + r * Math.cos(a) * 1.6, H / 2 + r * Math.sin(a)]];
  }));
  const seen = new Set();
  for (const p of peers) {
    for (const n of p.neighbours) {
      const key = [p.peer_id, n].sort().join(" ");
      if (!pos.has(n) || seen.has(key)) continue;
      seen.add(key);
      const [[x1, y1], [x2, y2]] = [pos.get(p.peer_id), pos.get(n)];
      el("line", { x1, y1, x2, y2, class: "edge", "data-edge": key }, svg);
    }
  }
  for (const p of peers) {
    const [x, y] = pos.get(p.peer_id);
    const g = el("g", { class: p.is_self ? "node self" : "node", "data-peer": p.peer_id }, svg);
    el("circle", { cx: x, cy: y, r: 11, fill: accuracyColour(p.accuracy) }, g);
    el("text", { x, y: y + 25, "text-anchor": "middle" }, g).textContent = shortId(p.peer_id);
    el("title", {}, g).textContent = `${p.peer_id}\naccuracy ${(p.accuracy * 100).toFixed(1)}%`;
  }
}
