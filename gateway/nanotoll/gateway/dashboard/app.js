// The dashboard's script: polls /api/dashboard every second and redraws. Plain DOM and
// uPlot (served by the gateway itself); when uPlot is absent the figures still show.
"use strict";

const POLL_MS = 1000;
const charts = {};

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function units(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

function rows(tableId, items, cells) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const cell of cells(item)) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }));
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace(".000Z", "Z") : "–";
}

function chart(id, series, data) {
  if (typeof uPlot === "undefined") return;
  const holder = document.getElementById(id);
  if (!charts[id]) {
    charts[id] = new uPlot({
      width: Math.max(360, holder.clientWidth - 10), height: 200,
      series: [{}, ...series], axes: [{}, {}], scales: { x: { time: true } },
    }, data, holder);
  } else {
    charts[id].setData(data);
  }
}

function draw(doc) {
  const ledger = doc.ledger, proc = doc.process, win = proc.window;
  if (ledger.totals) {
    text("ledger-accepted", units(ledger.totals.accepted));
    text("ledger-redeemed", units(ledger.totals.redeemed));
    text("ledger-unredeemed", units(ledger.totals.unredeemed));
    text("ledger-channels", units(ledger.channels_unredeemed));
  }
  text("who", `${proc.provider} · ${proc.client_id} · catalog seq ${proc.catalog.seq}`);
  const last10 = win.purchases_per_s.slice(-11, -1);
  text("rate", (last10.reduce((a, b) => a + b, 0) / Math.max(1, last10.length)).toFixed(1));
  text("purchases", units(proc.totals.purchases));
  text("revenue", units(proc.totals.revenue));
  const lat = win.latency_ms;
  const ms = (v) => Number(v).toFixed(1);
  text("latency", lat.p50 === null ? "–" : `${ms(lat.p50)} / ${ms(lat.p90)} / ${ms(lat.p99)}`);

  const health = document.getElementById("health");
  health.replaceChildren(...Object.entries(doc.health).map(([name, h]) => {
    const badge = document.createElement("span");
    badge.className = `badge ${h.ok ? "ok" : "down"}`;
    badge.id = `health-${name}`;
    badge.title = h.detail;
    badge.textContent = `${name} ${h.ok ? "up" : "down"}`;
    return badge;
  }));

  const xs = win.purchases_per_s.map((_, i) => win.start + i);
  chart("rate-chart", [{ label: "purchases/s", stroke: "#2874a6" },
                       { label: "errors/s", stroke: "#c0392b" }],
        [xs, win.purchases_per_s, win.errors_per_s]);
  const lb = win.latency_by_second;
  const dots = { show: true, size: 5 };  // seconds without requests leave single points
  chart("latency-chart", [{ label: "p50", stroke: "#2874a6", points: dots },
                          { label: "p90", stroke: "#f39c12", points: dots },
                          { label: "p99", stroke: "#c0392b", points: dots }],
        [xs, lb.p50, lb.p90, lb.p99]);

  const prices = proc.catalog.products;
  const top = Math.max(1, ...Object.values(win.revenue_by_product));
  rows("products", Object.keys(prices).sort(), (name) => {
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(120 * (win.revenue_by_product[name] || 0) / top)}px`;
    return [name, units(prices[name]), units(win.purchases_by_product[name] || 0),
            units(win.revenue_by_product[name] || 0), bar];
  });
  rows("errors", Object.entries(win.errors_by_code).sort(), ([code, n]) => [code, units(n)]);
  rows("channels", ledger.channels || [], (c) => [
    String(c.channel), units(c.accepted), units(c.redeemed), units(c.unredeemed),
    `${c.waiting_s} s`, when(c.expiry)]);
  rows("settlements", ledger.settlements || [], (s) => [
    String(s.id), s.state, units(s.items), units(s.gas_used), s.block ?? "–",
    s.tx ? `${s.tx.slice(0, 10)}…` : "–"]);

  const updated = document.getElementById("updated");
  updated.dataset.updates = String(Number(updated.dataset.updates) + 1);
  updated.textContent = `updated ${when(doc.now)}`;
}

async function poll() {
  try {
    const answer = await fetch("/api/dashboard", { cache: "no-store" });
    if (answer.ok) draw(await answer.json());
    else text("updated", `update failed: HTTP ${answer.status}`);
  } catch (error) {
    text("updated", `update failed: ${error}`);
  }
  setTimeout(poll, POLL_MS);
}

// The provider's ERC-8004 agent and its feedback: read from the chain by the gateway, so
// asked for less often than the figures.
const IDENTITY_POLL_MS = 10000;

function agentLine(identity) {
  if (!identity.agentId) return "no ERC-8004 agent";
  const fb = identity.feedback;
  const rated = !fb ? "" : fb.count === 0 ? " · no feedback yet"
    : ` · feedback ${fb.count}, mean ${(fb.value / 10 ** fb.decimals).toFixed(fb.decimals)}`;
  return `agent ${identity.agentRegistry}/${identity.agentId}${rated}`;
}

async function pollIdentity() {
  try {
    const answer = await fetch("/identity.json", { cache: "no-store" });
    if (answer.ok) text("agent", agentLine(await answer.json()));
  } catch (error) {
    text("agent", `agent unknown: ${error}`);
  }
  setTimeout(pollIdentity, IDENTITY_POLL_MS);
}

poll();
pollIdentity();
