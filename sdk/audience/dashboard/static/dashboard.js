// facesdk audience dashboard: polls /api/snapshot and draws the live counts and the last hour.
// Served by the facesdk package itself; it loads nothing from anywhere else.
"use strict";

const BINS = ["0", "0-1", "1-2", "2-5", "5-10", "10+"];
let pollMs = 1000;
let lastTime = null;

function $(id) { return document.getElementById(id); }

function text(id, value) { $(id).textContent = value; }

function show(value) { return value === null || value === undefined ? "–" : String(value); }

function clock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function svgEl(name, attrs, label) {
  const el = document.createElementNS($("chart-windows").namespaceURI, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (label !== undefined) el.textContent = label;
  return el;
}

// Windows of all sources that start together are added up; a withheld cell marks the sum withheld.
function byWindow(windows) {
  const rows = new Map();
  for (const w of windows) {
    const row = rows.get(w.start) || { start: w.start, passers: 0, viewers: 0, passersHeld: false, viewersHeld: false };
    if (w.passers_by === null) row.passersHeld = true; else row.passers += w.passers_by;
    if (w.viewers === null) row.viewersHeld = true; else row.viewers += w.viewers;
    rows.set(w.start, row);
  }
  return [...rows.values()].sort((a, b) => (a.start < b.start ? -1 : 1));
}

function drawBars(svg, groups, series) {
  svg.replaceChildren();
  const width = svg.clientWidth || 600, height = svg.clientHeight || 180, bottom = 18, top = 14;
  const max = Math.max(1, ...groups.flatMap((g) => series.map((s) => g[s.key] || 0)));
  const slot = width / Math.max(groups.length, 1), bar = Math.max(2, (slot - 4) / series.length);
  groups.forEach((g, i) => {
    series.forEach((s, j) => {
      const held = g[s.held], value = held ? 0 : g[s.key] || 0;
      const h = held ? 4 : ((height - bottom - top) * value) / max;
      const x = i * slot + 2 + j * bar, y = height - bottom - h;
      svg.appendChild(svgEl("rect", { x, y, width: Math.max(1, bar - 1), height: h,
        class: held ? "bar-withheld" : s.cls, "data-value": held ? "withheld" : value }));
    });
    const every = Math.ceil(groups.length / 8);
    if (i % every === 0) svg.appendChild(svgEl("text", { x: i * slot + 2, y: height - 4 }, g.label));
  });
  svg.appendChild(svgEl("text", { x: 2, y: 11 }, `max ${max}`));
}

function sumCells(windows, pick) {
  const sums = new Map();
  let held = 0;
  for (const w of windows) {
    for (const [key, value] of pick(w)) {
      if (value === null) held += 1; else sums.set(key, (sums.get(key) || 0) + value);
    }
  }
  return { sums, held };
}

function fillTable(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = cell;
      if (cell === "withheld") td.className = "withheld-cell";
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function render(s) {
  const windows = s.windows || [];
  text("in-view", show(s.in_view && s.in_view.total));
  text("looking", show(s.looking && s.looking.total));
  text("content", s.content || "–");
  const last = windows.length ? windows[windows.length - 1] : null;
  const cell = (value) => (!last ? "–" : value === null ? `< ${s.k}` : String(value)); // null: withheld
  text("window-passers", cell(last && last.passers_by));
  text("window-viewers", cell(last && last.viewers));
  document.querySelectorAll(".k").forEach((el) => { el.textContent = show(s.k); });
  text("updated", s.time ? new Date(s.time * 1000).toLocaleTimeString() : "–");

  const rows = byWindow(windows).map((r) => ({ ...r, label: clock(r.start) }));
  drawBars($("chart-windows"), rows, [
    { key: "passers", held: "passersHeld", cls: "bar-passers" },
    { key: "viewers", held: "viewersHeld", cls: "bar-viewers" },
  ]);

  const attention = sumCells(windows, (w) => Object.entries(w.attention_histogram || {}));
  drawBars($("chart-attention"), BINS.map((bin) => ({ label: `${bin} s`, n: attention.sums.get(bin) || 0 })),
    [{ key: "n", held: "none", cls: "bar-passers" }]);

  const demo = sumCells(windows, (w) => Object.entries(w.viewers_by_age_gender || {})
    .flatMap(([age, genders]) => Object.entries(genders || {}).map(([g, n]) => [`${age}\u0000${g}`, n])));
  const demoRows = [...demo.sums.entries()].sort().map(([key, n]) => [...key.split("\u0000"), n]);
  if (demo.held) demoRows.push(["withheld", "cells", demo.held]);
  fillTable("demographics", demoRows.length ? demoRows : [["no published cell yet", "", ""]]);

  const shares = last ? last.emotion_shares : null;
  const moodRows = shares === null || shares === undefined ? [["withheld", ""]]
    : Object.entries(shares).sort((a, b) => b[1] - a[1]).map(([e, v]) => [e, `${Math.round(v * 100)} %`]);
  fillTable("emotions", last ? moodRows : [["no window yet", ""]]);

  const sources = Object.keys(s.in_view || {}).filter((k) => k !== "total");
  $("sources-panel").hidden = sources.length < 2;
  fillTable("sources", sources.map((k) => [k, `${s.in_view[k]} in view`, `${(s.looking || {})[k] ?? 0} looking`]));
}

async function poll() {
  try {
    const response = await fetch("/api/snapshot", { cache: "no-store" });
    const snapshot = await response.json();
    render(snapshot);
    const moving = snapshot.time !== lastTime;
    lastTime = snapshot.time;
    $("status").textContent = moving ? "live" : "waiting for frames";
    $("status").className = moving ? "status" : "status stale";
  } catch (err) {
    $("status").textContent = "server unreachable";
    $("status").className = "status stale";
  }
  setTimeout(poll, pollMs);
}

function refreshPreview() {
  $("preview").src = `/preview.jpg?t=${Date.now()}`;
  setTimeout(refreshPreview, Math.max(200, pollMs / 2));
}

async function start() {
  try {
    const config = await (await fetch("/api/config", { cache: "no-store" })).json();
    pollMs = config.poll_ms || pollMs;
    if (config.preview) {
      $("preview-panel").hidden = false;
      refreshPreview();
    }
  } catch (err) { /* the defaults stand */ }
  poll();
}

start();
