// The murmur dashboard: loads the history and the network view from this node's API, then
// follows its event stream (/api/events) and polls for new history points. When the node
// cannot be reached the page says "reconnecting" and keeps trying.

import { lineChart } from "./chart.js";
import { topology } from "./graph.js";

const PALETTE = ["#2d6cdf", "#e0622b", "#1f9d55", "#9b4dca", "#c43d3d", "#0f9fb3", "#c77800",
  "#5a6b8c", "#d14f96", "#6b8e23", "#8c564b", "#17becf"];
const MAX_POINTS = 1800;
const POLL_MS = 2000;

const state = {
  self: null,
  network: null,
  status: null,          // /api/status: this node's counters (CPU shares, bytes per merge)
  history: [],           // HistoryPoint[] from /api/history (t = this node's uptime)
  live: new Map(),       // peer id -> [[t, accuracy, loss]] from announce events after the history
  averagings: [],
  sort: { key: "accuracy", asc: false },
  online: false,
};

const $ = (id) => document.getElementById(id);
const shortId = (id) => (id && id.length > 10 ? "…" + id.slice(-6) : id || "");
const pct = (a) => (a * 100).toFixed(1) + "%";
// A CPU share (0..1) as a percentage; "–" when the peer did not report one.
const share = (a) => (typeof a === "number" && isFinite(a) ? pct(Math.min(Math.max(a, 0), 1)) : "–");
// Bytes fetched per merge: the API's figure, else bytes in over merges (as announced).
const perMerge = (p) => p.bytes_per_merge ?? (p.merges > 0 ? p.bytes_received / p.merges : null);

function colours() {
  const ids = new Set();
  for (const p of state.history) for (const id of Object.keys(p.peers)) ids.add(id);
  for (const p of state.network?.peers || []) ids.add(p.peer_id);
  return new Map([...ids].sort().map((id, i) => [id, PALETTE[i % PALETTE.length]]));
}

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

function setOnline(online) {
  state.online = online;
  const pill = $("conn");
  pill.className = "pill " + (online ? "live" : "reconnecting");
  pill.textContent = online ? "live" : "reconnecting…";
  document.body.classList.toggle("offline", !online);
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// ---- charts ----------------------------------------------------------------------------

function drawCharts() {
  const col = colours();
  const per = new Map(); // id -> [[t, acc, loss]]
  const mean = { acc: [], loss: [] };
  for (const p of state.history) {
    const vals = Object.entries(p.peers);
    for (const [id, v] of vals) {
      if (!per.has(id)) per.set(id, []);
      per.get(id).push([p.t, v.accuracy, v.loss]);
    }
    if (vals.length) {
      mean.acc.push([p.t, vals.reduce((s, [, v]) => s + v.accuracy, 0) / vals.length]);
      mean.loss.push([p.t, vals.reduce((s, [, v]) => s + v.loss, 0) / vals.length]);
    }
  }
  for (const [id, pts] of state.live) {
    if (!per.has(id)) per.set(id, []);
    per.get(id).push(...pts);
  }
  const series = (k) => [...per.entries()].sort().map(([id, pts]) => ({
    name: id, label: `${shortId(id)}`, color: col.get(id) || "#888",
    points: pts.map((p) => [p[0], p[k]]),
  }));
  lineChart($("accuracy-chart"), [...series(1), { name: "mean", mean: true, points: mean.acc }],
    { yMax: 1, empty: "waiting for the first evaluations…" });
  lineChart($("loss-chart"), [...series(2), { name: "mean", mean: true, points: mean.loss }],
    { yMin: 0, empty: "waiting for the first evaluations…" });
  const cd = state.history.filter((p) => p.consensus_distance > 0).map((p) => [p.t, p.consensus_distance]);
  lineChart($("consensus-chart"), [{ name: "consensus distance", color: "#2d6cdf", points: cd }],
    { log: true, empty: "needs two models or more…" });
}

// ---- peers, topology, summary ----------------------------------------------------------

function drawPeers() {
  const net = state.network;
  if (!net) return;
  const col = colours();
  const { key, asc } = state.sort;
  const value = (p) => (key === "bytes_per_merge" ? perMerge(p) : p[key]);
  const rows = [...net.peers].sort((a, b) => {
    const [x, y] = [value(a), value(b)];
    // Strings by code unit, not locale: peer ids are case-sensitive base58. Unknown values
    // (no bytes per merge before a merge) come after every known one ascending, before
    // them descending.
    const c = x == null || y == null ? (x == null) - (y == null)
      : typeof x === "string" ? (x < y ? -1 : x > y ? 1 : 0) : x - y;
    return asc ? c : -c;
  });
  const body = $("peers").querySelector("tbody");
  body.replaceChildren(...rows.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.peer = p.peer_id;
    const cells = [
      `<span class="swatch" style="background:${col.get(p.peer_id) || "#888"}"></span>` +
        `<span class="mono" title="${p.peer_id}">${shortId(p.peer_id)}</span>${p.is_self ? " <span class=muted>(this node)</span>" : ""}`,
      p.version, pct(p.accuracy), p.loss.toFixed(3), p.samples.toLocaleString(),
      p.is_self ? "now" : `${p.last_seen_secs.toFixed(1)} s ago`,
      bytes(p.bytes_received), bytes(p.bytes_sent), p.merges,
      share(p.train_share), share(p.comm_share),
      perMerge(p) == null ? "–" : bytes(perMerge(p)),
      p.is_self ? "–" : (p.connection ?? "not connected"),
    ];
    const keys = ["peer_id", "version", "accuracy", "loss", "samples", "last_seen_secs",
      "bytes_received", "bytes_sent", "merges", "train_share", "comm_share", "bytes_per_merge",
      "connection"];
    const text = new Set(["peer_id", "connection"]);
    tr.innerHTML = cells.map((c, i) =>
      `<td data-col="${keys[i]}"${text.has(keys[i]) ? "" : ' class="num"'}>${c}</td>`).join("");
    return tr;
  }));
  for (const th of $("peers").querySelectorAll("th")) {
    th.classList.toggle("sorted", th.dataset.key === key);
    th.classList.toggle("asc", th.dataset.key === key && asc);
  }
  topology($("topology"), net.peers, shortId);

  const accs = net.peers.map((p) => p.accuracy);
  $("sum-peers").textContent = net.peers.length;
  $("sum-acc").textContent = accs.length ? pct(accs.reduce((a, b) => a + b, 0) / accs.length) : "–";
  $("sum-min").textContent = accs.length ? pct(Math.min(...accs)) : "–";
  $("sum-cd").textContent = net.consensus_distance == null ? "–" : net.consensus_distance.toExponential(2);
  const me = net.peers.find((p) => p.is_self);
  $("sum-merges").textContent = me ? me.merges : "–";
  drawCpu();
  const last = state.history[state.history.length - 1];
  $("sum-rate").textContent = last ? `${bytes(last.bytes_in_rate)}/s · ${bytes(last.bytes_out_rate)}/s` : "–";
  $("network").textContent = `network ${net.network_id}`;
  $("node").textContent = `node ${shortId(net.peer_id)}`;
}

// This node's CPU shares (since start, and over the last 30 s) and bytes per merge.
function drawCpu() {
  const c = state.status?.counters;
  const card = (id, total, recent) => {
    $(id).textContent = c ? share(total) : "–";
    $(id + "-recent").textContent = c ? `last 30 s: ${share(recent)}` : "";
  };
  card("sum-train", c?.train_share, c?.train_share_recent);
  card("sum-comm", c?.comm_share, c?.comm_share_recent);
  $("sum-bpm").textContent = c?.bytes_per_merge == null ? "–" : bytes(c.bytes_per_merge);
  const reach = state.status?.reach;
  $("sum-reach").textContent = reach ? reach.reachability : "–";
  $("sum-relays").textContent = !reach ? "" : reach.reservations.length
    ? `reserved on ${reach.reservations.map(shortId).join(", ")}`
    : reach.relay_serving ? "serving as a relay" : "no relay reservation";
}

function drawAveragings() {
  const body = $("averagings").querySelector("tbody");
  const rows = [...state.averagings].reverse().slice(0, 8);
  if (rows.length === 0) {
    body.innerHTML = `<tr><td colspan="7" class="muted">no averaging yet</td></tr>`;
    return;
  }
  body.replaceChildren(...rows.map((a) => {
    const tr = document.createElement("tr");
    const cls = a.outcome === "merged" || a.outcome === "adopted" ? "ok" : "bad";
    const fetched = a.models.reduce((s, m) => s + m.chunks_fetched, 0);
    const reused = a.models.reduce((s, m) => s + m.chunks_reused, 0);
    const sources = new Set(a.models.flatMap((m) => Object.keys(m.sources)));
    tr.innerHTML = [
      `${a.at_secs.toFixed(0)} s`,
      `${a.kind} · <span class="${cls}">${a.outcome}</span>`,
      a.models.map((m) => `<span class="mono" title="${m.error || m.peer_id}">${shortId(m.peer_id)}</span>`).join(", "),
      `<span class="num">${fetched}</span>`, `<span class="num">${reused}</span>`,
      `${sources.size} peer${sources.size === 1 ? "" : "s"}`, `${a.millis} ms`,
    ].map((c, i) => `<td${i === 3 || i === 4 || i === 6 ? ' class="num"' : ""}>${c}</td>`).join("");
    return tr;
  }));
}

// ---- data --------------------------------------------------------------------------------

async function refreshNetwork() {
  const [net, status] = await Promise.all([getJson("/api/network"), getJson("/api/status")]);
  state.network = net;
  state.status = status;
  state.averagings = status.averagings || [];
  drawPeers();
  drawAveragings();
}

async function pollHistory() {
  const last = state.history.length ? state.history[state.history.length - 1].t : null;
  const h = await getJson(last === null ? "/api/history" : `/api/history?since=${last}`);
  if (last !== null && h.points.length && h.points[0].t < last) state.history = []; // node restarted
  state.history.push(...h.points);
  if (state.history.length > MAX_POINTS) state.history.splice(0, state.history.length - MAX_POINTS);
  // Live points older than the newest history point are now part of it.
  const newest = state.history.length ? state.history[state.history.length - 1].t : 0;
  for (const [id, pts] of state.live) state.live.set(id, pts.filter((p) => p[0] > newest));
  drawCharts();
}

async function tick() {
  try {
    await Promise.all([pollHistory(), refreshNetwork()]);
    if (!state.online) setOnline(true);
  } catch (e) {
    setOnline(false);
  }
}

function follow() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => setOnline(true));
  source.addEventListener("error", () => setOnline(false)); // the browser reconnects by itself
  source.addEventListener("announce", (m) => {
    const e = JSON.parse(m.data);
    if (!state.live.has(e.peer_id)) state.live.set(e.peer_id, []);
    state.live.get(e.peer_id).push([e.at_secs, e.accuracy, e.loss]);
    const p = state.network?.peers.find((q) => q.peer_id === e.peer_id);
    if (p) Object.assign(p, { version: e.version, accuracy: e.accuracy, loss: e.loss, samples: e.samples, last_seen_secs: 0 });
    scheduleDraw();
  });
  source.addEventListener("averaging", (m) => {
    state.averagings.push(JSON.parse(m.data));
    if (state.averagings.length > 32) state.averagings.shift();
    drawAveragings();
  });
}

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawCharts(); drawPeers(); });
}

for (const th of document.querySelectorAll("#peers th")) {
  th.addEventListener("click", () => {
    const key = th.dataset.key;
    state.sort = { key, asc: state.sort.key === key ? !state.sort.asc : key === "peer_id" };
    drawPeers();
  });
}

window.addEventListener("resize", scheduleDraw);
follow();
tick();
setInterval(tick, POLL_MS);
