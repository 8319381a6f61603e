// pheromone dashboard: renders the daemon's snapshots (one a second) and activity events,
// both pushed over server-sent events. Plain DOM, no framework, nothing from elsewhere.
// Every string from the daemon goes in through textContent, never as HTML.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const HISTORY = 300; // samples kept for the charts (5 minutes at one a second)
const COLORS = ["#3d6fd8", "#2e9d6e", "#d2504b", "#8c63d9", "#e09a2b", "#2a9fb5", "#c2498f", "#5d6b86"];
const ICONS = {
  peer_connected: "⇄", peer_disconnected: "✕", ping: "↺", broadcast_published: "✉",
  broadcast_delivered: "✉", route_added: "+", route_changed: "⤳", exec: "▶", forward: "⇆",
};
const FEEDS = {
  "feed-node": () => true,
  "feed-peers": (e) => ["peer_connected", "peer_disconnected", "ping"].includes(e.kind),
  "feed-routes": (e) => e.kind === "route_changed" || e.kind === "route_added",
  "feed-broadcast": (e) => e.kind.startsWith("broadcast_"),
  "feed-services": (e) => e.kind === "exec" || e.kind === "forward",
};

let snap = null;
const history = []; // {at, peers: {id: bytes}, protocols: {name: bytes}}
const activity = []; // newest last
const changedAt = {}; // peer id -> when its route last changed (daemon's clock, ms)

// ---------- small helpers ----------
function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "line", "circle", "text", "path", "polyline", "rect", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
function short(id) { return id ? id.slice(0, 6) + "…" + id.slice(-6) : ""; }
function label(name, id) { return name || short(id); }
function bytes(n) {
  if (n === undefined || n === null) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + u[i];
}
function rate(n) { return bytes(n) + "/s"; }
function dur(secs) {
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400), hh = Math.floor(secs / 3600) % 24, m = Math.floor(secs / 60) % 60, s = secs % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}
function ms(v) { return v === null || v === undefined ? "–" : (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms"; }
function clock(atMs) { return new Date(atMs).toLocaleTimeString([], { hour12: false }); }
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function pid(id) { return h("span", { class: "pid", title: id, text: short(id) }); }

// ---------- pages ----------
function currentPage() {
  const p = (location.hash || "#node").slice(1);
  return document.getElementById("page-" + p) ? p : "node";
}
function showPage() {
  const page = currentPage();
  for (const s of document.querySelectorAll(".page")) s.classList.toggle("active", s.id === "page-" + page);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  render();
}

function renderNode() {
  const n = snap.node;
  $("node-title").textContent = n.name ? `· ${n.name}` : "";
  document.title = `pheromone · ${n.name || short(n.peer_id)}`;
  $("stat-peers").textContent = snap.peers.length;
  $("stat-conns").textContent = n.connections;
  $("stat-routes").textContent = snap.routes.filter((r) => r.via !== "dial").length;
  $("stat-uptime").textContent = dur(n.uptime_secs);
  const reach = n.reachability === "unknown" ? h("span", { class: "pill", text: "unknown" }) : h("span", { class: "pill good", text: n.reachability });
  const rows = [
    ["Name", n.name || "(none)"],
    ["Peer ID", h("code", { text: n.peer_id })],
    ["Addresses", h("ul", {}, n.listen_addrs.map((a) => h("li", {}, h("code", { text: a }))))],
    ["Reachability", reach],
    ["Mode", n.mode],
    ["Uptime", dur(n.uptime_secs)],
    ["Protocols", h("ul", {}, n.protocols.map((p) => h("li", {}, h("code", { text: p }))))],
    ["Inbox", `${n.inbox_messages} message(s) waiting`],
    ["Version", n.version],
  ];
  $("node-kv").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

function renderPeers() {
  $("peers-count").textContent = `(${snap.peers.length})`;
  $("peers-empty").hidden = snap.peers.length > 0;
  fill(document.querySelector("#peers-table tbody"), snap.peers.map((p) => h("tr", { "data-peer": p.peer_id },
    h("td", {}, h("strong", { text: p.name || "–" })),
    h("td", {}, pid(p.peer_id)),
    h("td", {}, p.transport),
    h("td", {}, h("span", { class: "pill " + p.path, text: p.path === "relayed" ? `relayed via ${p.relay_name || short(p.relay)}` : "direct" })),
    h("td", { class: "num rtt", text: ms(p.rtt_ms) }),
    h("td", { class: "num", text: bytes(p.bytes_in) }),
    h("td", { class: "num", text: bytes(p.bytes_out) }),
    h("td", { class: "num", text: p.streams }),
    h("td", { text: p.direction }),
    h("td", { class: "num", title: new Date(p.since * 1000).toLocaleString(), text: dur(p.connected_secs) }),
  )));
}

function renderMesh() {
  const svg = $("mesh-graph");
  const W = 800, H = 500, cx = W / 2, cy = H / 2;
  const me = snap.node;
  const nodes = new Map(); // id -> {x, y, kind, name}
  nodes.set(me.peer_id, { x: cx, y: cy, kind: "self", name: me.name || "this node" });
  const direct = snap.routes.filter((r) => r.via === "direct");
  const far = snap.routes.filter((r) => r.via !== "direct");
  // Direct peers on an inner ellipse (the first to the right, so a chain reads left to
  // right); destinations through relays on an outer one, beyond their next hop.
  const inner = { rx: 190, ry: 135 }, outer = { rx: 350, ry: 205 };
  const at = (ring, a) => ({ x: cx + ring.rx * Math.cos(a), y: cy + ring.ry * Math.sin(a) });
  direct.forEach((r, i) => {
    const a = (2 * Math.PI * i) / Math.max(direct.length, 1);
    nodes.set(r.peer_id, { ...at(inner, a), kind: "direct", name: r.name, angle: a });
  });
  const behind = {};
  far.forEach((r) => { const k = r.next_hop || "?"; (behind[k] = behind[k] || []).push(r); });
  let spare = 0;
  for (const [hop, list] of Object.entries(behind)) {
    const base = nodes.get(hop);
    list.forEach((r, i) => {
      const a = base && base.angle !== undefined ? base.angle + (i - (list.length - 1) / 2) * 0.38
        : Math.PI / 4 + spare++ * 0.6;
      nodes.set(r.peer_id, { ...at(outer, a), kind: r.via === "dial" ? "dial" : "relayed", name: r.name, hops: r.hops, hop });
    });
  }
  // Highlighted for 15 s after a change, by the daemon's clock (the snapshot's time).
  const now = snap.at_ms;
  const recent = (id) => changedAt[id] && now - changedAt[id] < 15000;
  const links = [];
  for (const r of direct) {
    const a = nodes.get(me.peer_id), b = nodes.get(r.peer_id);
    links.push(h("line", { class: "link direct" + (recent(r.peer_id) ? " changed" : ""), x1: a.x, y1: a.y, x2: b.x, y2: b.y, "data-from": me.peer_id, "data-to": r.peer_id }));
  }
  const labels = [];
  for (const r of far) {
    const b = nodes.get(r.peer_id);
    const a = (r.via === "dial" ? nodes.get(me.peer_id) : nodes.get(r.next_hop)) || nodes.get(me.peer_id);
    const kind = r.via === "dial" ? "dial" : "relayed";
    links.push(h("line", { class: `link ${kind}` + (recent(r.peer_id) ? " changed" : ""), x1: a.x, y1: a.y, x2: b.x, y2: b.y, "data-from": r.next_hop || me.peer_id, "data-to": r.peer_id }));
    if (kind === "relayed") {
      labels.push(h("text", { class: "hops", x: (a.x + b.x) / 2 + 8, y: (a.y + b.y) / 2 - 6, text: `${r.hops} hops` }));
    }
  }
  const circles = [];
  for (const [id, n] of nodes) {
    const rad = n.kind === "self" ? 26 : 19;
    circles.push(h("g", { class: `node ${n.kind}` + (recent(id) ? " changed" : ""), "data-peer": id, transform: `translate(${n.x.toFixed(1)},${n.y.toFixed(1)})` },
      h("title", { text: id }),
      h("circle", { r: rad }),
      h("text", { y: rad + 17, text: n.name || short(id) }),
      h("text", { class: "sub", y: rad + 31, text: short(id) }),
    ));
  }
  svg.replaceChildren(h("g", { class: "links" }, links), h("g", {}, labels), h("g", { class: "nodes" }, circles));
  fill(document.querySelector("#routes-table tbody"), snap.routes.map((r) => h("tr", {},
    h("td", {}, h("strong", { text: r.name || "–" })),
    h("td", {}, pid(r.peer_id)),
    h("td", {}, h("span", { class: "pill " + (r.via === "relay" ? "relayed" : r.via), text: r.via })),
    h("td", { text: r.direct ? "–" : label(r.next_hop_name, r.next_hop) }),
    h("td", { class: "num", text: r.hops }),
    h("td", { class: "num", text: r.metric ?? "–" }),
    h("td", { class: "num", text: ms(r.rtt_ms) }),
  )));
}

function series(kind) {
  // Rates from successive samples: bytes (in + out) per second. A peer new since the last
  // sample, or whose counter went down (its link was replaced), has a new link: all of
  // its bytes are new.
  const out = new Map();
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1], b = history[i];
    const dt = (b.at - a.at) / 1000;
    if (dt <= 0) continue;
    for (const [k, v] of Object.entries(b[kind])) {
      const before = a[kind][k];
      const d = before === undefined || v < before ? v : v - before;
      if (!out.has(k)) out.set(k, []);
      out.get(k).push([b.at, d / dt]);
    }
  }
  return out;
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(v, 1))));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function chart(svgId, legendId, data, nameOf) {
  const svg = $(svgId);
  const W = 560, H = 240, L = 64, R = 12, T = 10, B = 24;
  const now = history.length ? history[history.length - 1].at : Date.now();
  // The window grows with the history, from one minute up to five.
  const first = history.length ? history[0].at : now;
  const span = Math.min(HISTORY * 1000, Math.max(60000, now - first));
  const t0 = now - span;
  const entries = [...data.entries()]
    .map(([k, pts]) => [k, pts, pts.reduce((s, p) => s + p[1], 0)])
    .filter((e) => e[2] > 0)
    .sort((a, b) => b[2] - a[2]).slice(0, COLORS.length);
  let peak = 0;
  for (const [, pts] of entries) for (const [t, v] of pts) if (t >= t0) peak = Math.max(peak, v);
  const max = niceMax(peak * 1.1);
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(h("line", { class: "grid-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    parts.push(h("text", { class: "axis", x: L - 6, y: y(v) + 4, "text-anchor": "end", text: rate(v) }));
  }
  const step = span <= 60000 ? 10000 : 60000;
  for (let back = 0; back <= span; back += step) {
    const text = back === 0 ? "now" : step === 10000 ? `-${back / 1000}s` : `-${back / 60000}m`;
    parts.push(h("text", { class: "axis", x: x(now - back), y: H - 6, "text-anchor": back === span ? "start" : "middle", text }));
  }
  entries.forEach(([k, pts], i) => {
    const d = pts.filter((p) => p[0] >= t0).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    if (d) parts.push(h("polyline", { class: "series", points: d, stroke: COLORS[i], "data-series": k }));
  });
  if (!entries.length) {
    parts.push(h("text", { class: "axis", x: (L + W) / 2, y: H / 2, "text-anchor": "middle", text: "no traffic yet" }));
  }
  svg.replaceChildren(...parts);
  $(legendId).replaceChildren(...entries.map(([k, pts], i) => {
    const last = pts.length ? pts[pts.length - 1][1] : 0;
    const sw = h("i", { class: "sw line" }); sw.style.background = COLORS[i];
    return h("span", {}, sw, `${nameOf(k)} · ${rate(last)}`);
  }));
}

function renderTraffic() {
  const names = {};
  for (const p of snap.peers) names[p.peer_id] = p.name;
  chart("chart-peers", "legend-peers", series("peers"), (k) => label(names[k], k));
  chart("chart-protocols", "legend-protocols", series("protocols"), (k) => k);
  const used = snap.protocols
    .filter((p) => p.streams_inbound + p.streams_outbound + p.bytes_in + p.bytes_out + p.requests_ok + p.requests_failed > 0);
  $("protocols-empty").hidden = used.length > 0;
  fill(document.querySelector("#protocols-table tbody"), used
    .map((p) => h("tr", {},
      h("td", {}, h("code", { text: p.protocol })),
      h("td", { class: "num", text: p.streams_inbound }),
      h("td", { class: "num", text: p.streams_outbound }),
      h("td", { class: "num", text: bytes(p.bytes_in) }),
      h("td", { class: "num", text: bytes(p.bytes_out) }),
      h("td", { class: "num", text: p.requests_ok }),
      h("td", { class: "num", text: p.requests_failed }),
    )));
}

function renderBroadcast() {
  const b = snap.broadcast;
  $("bc-published").textContent = b.published;
  $("bc-delivered").textContent = b.delivered;
  $("bc-duplicates").textContent = b.duplicates;
  $("bc-dropped").textContent = Object.values(b.dropped).reduce((s, v) => s + v, 0);
  $("topics-empty").hidden = b.topics.length > 0;
  const names = {};
  for (const p of snap.peers) names[p.peer_id] = p.name;
  names[snap.node.peer_id] = snap.node.name ? `${snap.node.name} (this node)` : "this node";
  fill(document.querySelector("#topics-table tbody"), b.topics.map((t) => h("tr", { "data-topic": t.topic },
    h("td", {}, h("strong", { text: t.topic })),
    h("td", { class: "num", text: t.published }),
    h("td", { class: "num", text: t.delivered }),
    h("td", { class: "num", text: bytes(t.bytes) }),
    h("td", { text: label(names[t.last_from], t.last_from) }),
    h("td", { class: "num", text: clock(t.last_at_ms) }),
  )));
}

function renderDht() {
  const t = snap.dht;
  const buckets = t ? t.buckets : [];
  $("dht-count").textContent = t ? `(${t.size} peers in ${buckets.length} buckets)` : "(off)";
  $("dht-empty").hidden = buckets.length > 0;
  $("dht-buckets").replaceChildren(...buckets.map((b) => h("div", { class: "bucket" },
    h("div", { class: "idx" }, `bucket ${b.index}`, h("span", { class: "small", text: `${b.entries.length} + ${b.replacements.length} spare` })),
    h("div", { class: "chips" },
      b.entries.map((e) => h("span", { class: "chip" + (e.connected ? " on" : ""), title: `${e.peer_id}\n${e.addrs.join("\n")}\nseen ${e.last_seen_secs.toFixed(0)} s ago` },
        h("span", { class: "d" }), label(e.name, e.peer_id))),
      b.replacements.map((e) => h("span", { class: "chip rep", title: e.peer_id }, h("span", { class: "d" }), label(e.name, e.peer_id))),
    ),
  )));
}

function renderServices() {
  const f = snap.forwards;
  $("exposed-empty").hidden = f.exposed.length > 0;
  $("forwarded-empty").hidden = f.forwarded.length > 0;
  fill(document.querySelector("#exposed-table tbody"), f.exposed.map((e) => h("tr", {},
    h("td", {}, h("code", { text: e.protocol })),
    h("td", {}, h("code", { text: e.target })),
    h("td", { text: e.allow ? `${e.allow.length} peer(s)` : "everyone" }),
    h("td", { class: "num", text: e.stats.open }),
    h("td", { class: "num", text: e.stats.total }),
    h("td", { class: "num", text: bytes(e.stats.bytes_in) }),
    h("td", { class: "num", text: bytes(e.stats.bytes_out) }),
  )));
  fill(document.querySelector("#forwarded-table tbody"), f.forwarded.map((e) => h("tr", {},
    h("td", {}, h("code", { text: e.listen })),
    h("td", {}, h("code", { text: e.protocol })),
    h("td", { text: label(e.peer_name, e.peer_id) }),
    h("td", { class: "num", text: e.stats.open }),
    h("td", { class: "num", text: e.stats.total }),
    h("td", { class: "num", text: bytes(e.stats.bytes_in) }),
    h("td", { class: "num", text: bytes(e.stats.bytes_out) }),
  )));
  const x = snap.exec;
  const rows = [
    ["Exec service", x.enabled ? h("span", { class: "pill good", text: `on for ${x.allowed} peer(s)${x.shell ? ", shell allowed" : ""}` }) : h("span", { class: "pill", text: "off" })],
    ["Running now", x.running],
    ["Started", x.started],
    ["Rejected", x.rejected],
    ["Timed out", x.timed_out],
  ];
  if (snap.relay) rows.push(["Relayed circuits", `${snap.relay.active_circuits} open, ${snap.relay.circuits_relayed} so far, ${bytes(snap.relay.bytes_relayed)}`]);
  $("exec-kv").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

function renderFeeds(fresh) {
  for (const [id, keep] of Object.entries(FEEDS)) {
    const el = $(id);
    // Newest first, by when it happened (a connection is logged once its peer is named).
    const items = activity.filter(keep).slice(-80).reverse().sort((a, b) => b.at_ms - a.at_ms);
    if (!items.length) {
      el.replaceChildren(h("li", { class: "empty-li", text: "Nothing yet." }));
      continue;
    }
    el.replaceChildren(...items.map((e) => h("li", { class: e === fresh ? "fresh " + e.kind : e.kind, "data-kind": e.kind },
      h("span", { class: "t", text: clock(e.at_ms) }),
      h("span", { class: "i", text: ICONS[e.kind] || "•" }),
      h("span", { class: "s", text: e.summary }),
    )));
  }
}

const RENDER = { node: renderNode, peers: renderPeers, mesh: renderMesh, traffic: renderTraffic, broadcast: renderBroadcast, dht: renderDht, services: renderServices };
function render() {
  if (!snap) return;
  renderNode(); // the header's name
  const page = currentPage();
  if (page !== "node") RENDER[page]();
  $("footer").textContent = `pheromone ${snap.node.version} · updated ${clock(snap.at_ms)}`;
}

// ---------- live updates ----------
function onSnapshot(s) {
  snap = s;
  const peers = {}, protocols = {};
  for (const p of s.peers) peers[p.peer_id] = p.bytes_in + p.bytes_out;
  for (const p of s.protocols) protocols[p.protocol] = p.bytes_in + p.bytes_out;
  const last = history[history.length - 1];
  if (!last || last.at < s.at_ms) history.push({ at: s.at_ms, peers, protocols });
  while (history.length > HISTORY + 1) history.shift();
  render();
}

function onActivity(e) {
  activity.push(e);
  while (activity.length > 500) activity.shift();
  if (e.kind === "route_changed" && e.peer_id) changedAt[e.peer_id] = e.at_ms;
  renderFeeds(e);
}

function connect() {
  const live = $("live");
  const es = new EventSource("/api/events?token=" + encodeURIComponent(token));
  es.addEventListener("open", () => { live.classList.remove("off"); live.querySelector(".label").textContent = "live"; });
  es.addEventListener("error", () => { live.classList.add("off"); live.querySelector(".label").textContent = "reconnecting"; });
  es.addEventListener("history", (m) => {
    // The daemon's last five minutes, before the first snapshot (sent on every reconnect).
    history.length = 0;
    for (const sample of JSON.parse(m.data)) history.push(sample);
  });
  es.addEventListener("snapshot", (m) => onSnapshot(JSON.parse(m.data)));
  es.addEventListener("activity", (m) => onActivity(JSON.parse(m.data)));
}

window.addEventListener("hashchange", showPage);
showPage();
renderFeeds(null);
connect();
