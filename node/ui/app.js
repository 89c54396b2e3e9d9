// The live federation view: polls ./federation every second and draws the
// nodes, their functions and the forwarding flows between them. Everything
// shown comes from adverts, that is from the network: it is only ever set
// as text or attributes, never parsed as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 1000;
let refreshes = 0;

function el(ns, tag, attrs, text) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// short names a node by the end of its id: libp2p ids share their start.
function short(id) { return id.length > 10 ? "…" + id.slice(-6) : id; }
function label(n) { return n.name || short(n.id); }
function fmt(r) { return r >= 100 ? r.toFixed(0) : r.toFixed(1); }

function totals(n) {
  const t = { capacity: 0, demand: 0, served: 0, rejected: 0, out: new Map() };
  for (const f of Object.values(n.functions || {})) {
    t.capacity += f.capacity; t.demand += f.demand; t.served += f.served; t.rejected += f.rejected;
    for (const [peer, r] of Object.entries(f.forwarded || {})) t.out.set(peer, (t.out.get(peer) || 0) + r);
  }
  return t;
}

function drawGraph(view) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const defs = el(SVG, "defs");
  const marker = el(SVG, "marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 14, markerHeight: 14, orient: "auto-start-reverse" });
  marker.append(el(SVG, "path", { d: "M0,0 L10,5 L0,10 z" }));
  defs.append(marker);
  svg.append(defs);

  const W = 800, H = 460, R = 34;
  const nodes = view.nodes || [];
  const pos = new Map();
  const ring = Math.min(W, H) / 2 - R - 30;
  nodes.forEach((n, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(nodes.length, 1);
    pos.set(n.id, nodes.length === 1 ? [W / 2, H / 2] : [W / 2 + ring * Math.cos(a), H / 2 + ring * Math.sin(a)]);
  });

  const flows = el(SVG, "g", { class: "flows" });
  for (const n of nodes) {
    for (const [peer, rate] of totals(n).out) {
      if (!(rate > 0) || !pos.has(peer)) continue;
      const [x1, y1] = pos.get(n.id), [x2, y2] = pos.get(peer);
      const dx = x2 - x1, dy = y2 - y1, d = Math.hypot(dx, dy) || 1;
      const ux = dx / d, uy = dy / d;
      // Bend to the right of the direction of travel, so that a->b and b->a
      // are two arcs.
      const sx = x1 + ux * R, sy = y1 + uy * R, ex = x2 - ux * (R + 2), ey = y2 - uy * (R + 2);
      const mx = (sx + ex) / 2 - uy * 30, my = (sy + ey) / 2 + ux * 30;
      const g = el(SVG, "g", { class: "flow", "data-from": n.id, "data-to": peer, "data-rate": rate });
      g.append(el(SVG, "path", { d: `M${sx},${sy} Q${mx},${my} ${ex},${ey}`, "stroke-width": Math.min(2 + Math.log2(1 + rate), 12), "marker-end": "url(#arrow)" }));
      g.append(el(SVG, "text", { x: mx, y: my - 4, "text-anchor": "middle" }, fmt(rate) + "/s"));
      g.append(el(SVG, "title", {}, `${n.id} → ${peer}: ${fmt(rate)} req/s`));
      flows.append(g);
    }
  }
  svg.append(flows);

  for (const n of nodes) {
    const t = totals(n);
    const [x, y] = pos.get(n.id);
    const cls = "node" + (n.self ? " self" : "") + (t.rejected > 0 ? " rejecting" : "");
    const g = el(SVG, "g", { class: cls, "data-node": n.id, "data-name": n.name || "", "data-served": t.served, "data-rejected": t.rejected });
    g.append(el(SVG, "circle", { cx: x, cy: y, r: R }));
    g.append(el(SVG, "text", { x, y: y - 2 }, label(n)));
    g.append(el(SVG, "text", { x, y: y + 13, class: "sub" }, `${fmt(t.served)} / ${fmt(t.capacity)}`));
    g.append(el(SVG, "title", {}, `${n.id}\nserved ${fmt(t.served)} of capacity ${fmt(t.capacity)} req/s, demand ${fmt(t.demand)}, rejected ${fmt(t.rejected)}`));
    svg.append(g);
  }
}

function drawCards(view) {
  const box = document.getElementById("nodes");
  box.replaceChildren();
  for (const n of view.nodes || []) {
    const card = el(null, "article", { class: "card", "data-node": n.id });
    card.append(el(null, "h2", {}, (n.self ? "★ " : "") + (n.name ? n.name + " · " : "") + n.id));
    let meta = "peer port " + n.addr;
    if (typeof n.rtt_ms === "number") meta += ` · rtt ${n.rtt_ms.toFixed(1)} ms`;
    card.append(el(null, "p", { class: "meta" }, meta));
    const table = el(null, "table");
    const head = el(null, "tr");
    const cols = ["function", "capacity", "demand", "served", "rejected", "forwarded"];
    // The node that draws the view knows its own executions, and how it
    // learns its capacity; adverts carry none of that for peers.
    if (n.self) cols.push("in flight", "exec p50 ms", "exec p95 ms", "capacity is");
    for (const h of cols) head.append(el(null, "th", { scope: "col" }, h));
    table.append(head);
    for (const name of Object.keys(n.functions || {}).sort()) {
      const f = n.functions[name];
      const fwd = Object.values(f.forwarded || {}).reduce((a, b) => a + b, 0);
      const row = el(null, "tr", { "data-function": name });
      row.append(el(null, "td", {}, name));
      for (const v of [f.capacity, f.demand, f.served]) row.append(el(null, "td", {}, fmt(v)));
      row.append(el(null, "td", f.rejected > 0 ? { class: "bad" } : {}, fmt(f.rejected)));
      row.append(el(null, "td", {}, fmt(fwd)));
      if (n.self) {
        const l = f.local || {};
        row.append(el(null, "td", { class: "in-flight" }, String(l.in_flight || 0)));
        row.append(el(null, "td", { class: "exec-p50" }, fmt(l.exec_p50_ms || 0)));
        const over = l.objective_ms > 0 && l.exec_p95_ms > l.objective_ms;
        row.append(el(null, "td", { class: "exec-p95" + (over ? " bad" : "") }, fmt(l.exec_p95_ms || 0)));
        let how = l.learned ? "measured" : "declared";
        if (l.learned && l.phase) how += " · " + l.phase;
        if (l.objective_ms > 0) how += ` · p${Math.round((l.quantile || 0.95) * 1000) / 10} ≤ ${fmt(l.objective_ms)} ms`;
        row.append(el(null, "td", { class: "capacity-is" }, how));
      }
      table.append(row);
    }
    card.append(table);
    box.append(card);
  }
}

function draw(view) {
  drawGraph(view);
  drawCards(view);
  const nodes = view.nodes || [];
  let served = 0, rejected = 0;
  for (const n of nodes) { const t = totals(n); served += t.served; rejected += t.rejected; }
  document.getElementById("source").textContent = view.from ? "seen from " + short(view.from) : "the whole federation";
  document.getElementById("summary").textContent = `${nodes.length} node${nodes.length === 1 ? "" : "s"}, ${fmt(served)} req/s served, ${fmt(rejected)} rejected`;
  const upd = document.getElementById("updated");
  upd.textContent = new Date(view.time).toLocaleTimeString();
  upd.dataset.count = String(++refreshes);
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const resp = await fetch("federation", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    draw(await resp.json());
    err.textContent = "";
  } catch (e) {
    err.textContent = "cannot reach the agent: " + e.message;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

// The page comes with the view of the moment (a data block, not a
// script): drawn at once, so that the first paint has it, then refreshed.
const first = document.getElementById("first-view");
let drawn = false;
try {
  if (first) { draw(JSON.parse(first.textContent)); drawn = true; }
} catch (e) {
  // An unreadable first view: the first refresh draws.
}
if (drawn) setTimeout(refresh, REFRESH_MS); else refresh();
