// The live ticker's browser side: the native WebSocket, JSON messages
// (see tether/demo/ticker.py), a table and canvas sparklines redrawn at most
// once per animation frame however fast quotes arrive.

import { $, setStatus } from "/common.js";
const HISTORY = 240; // points per sparkline: 12 s at 20 updates per second
const DEFAULT_WATCH = ["ACME", "BOLT", "CRUX", "DYNA", "ECHO", "FLUX", "HELX", "KITE", "NOVA", "PIXL", "VOLT", "ZINC"];

const state = {
  ws: null,
  retry: 500,
  catalog: new Map(), // symbol -> {name, open}
  quotes: new Map(), // symbol -> [price, high, low, volume]
  previous: new Map(), // symbol -> previous price, for the direction colour
  history: new Map(), // symbol -> prices
  watching: new Set(JSON.parse(localStorage.getItem("tether-ticker-watch") || "null") || DEFAULT_WATCH),
  rows: new Map(), // symbol -> {row, cells, canvas}
  dirty: new Set(),
  selected: localStorage.getItem("tether-ticker-selected") || "ACME",
  // Counters, read by the page and by the browser tests.
  stats: { updates: 0, messages: 0, rate: 0, messagesRate: 0, conflated: 0, perSymbol: {} },
};
window.ticker = state;

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const volume = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

// -- connection ------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ticker/ws`);
  state.ws = ws;
  setStatus("connecting", "Connecting…");
  ws.onopen = () => {
    state.retry = 500;
    setStatus("online", "Live");
    $("#compression").textContent = ws.extensions.includes("permessage-deflate") ? "permessage-deflate" : "off";
    send("subscribe", [...state.watching]);
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    setStatus("offline", "Offline · retrying");
    // Reconnect with backoff; the server sends everything again on subscribe.
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 5000);
  };
}

function send(type, symbols) {
  if (state.ws?.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type, symbols }));
}

function receive(message) {
  state.stats.messages += 1;
  if (message.type === "hello") {
    for (const { symbol, name, open, quote } of message.symbols) {
      state.catalog.set(symbol, { name, open });
      state.quotes.set(symbol, quote);
    }
    $("#total").textContent = message.symbols.length;
    renderChips();
  } else if (message.type === "snapshot") {
    for (const [symbol, prices] of Object.entries(message.history)) state.history.set(symbol, prices.slice(-HISTORY));
    for (const [symbol, quote] of Object.entries(message.q)) update(symbol, quote, false);
    syncRows(message.symbols);
  } else if (message.type === "subscribed") {
    syncRows(message.symbols);
  } else if (message.type === "quotes") {
    for (const [symbol, quote] of Object.entries(message.q)) update(symbol, quote, true);
    state.stats.conflated = message.conflated;
  }
}

function update(symbol, quote, live) {
  const old = state.quotes.get(symbol);
  if (old) state.previous.set(symbol, old[0]);
  state.quotes.set(symbol, quote);
  if (live) {
    const prices = state.history.get(symbol) || [];
    prices.push(quote[0]);
    if (prices.length > HISTORY) prices.splice(0, prices.length - HISTORY);
    state.history.set(symbol, prices);
    state.stats.updates += 1;
    state.stats.perSymbol[symbol] = (state.stats.perSymbol[symbol] || 0) + 1;
  }
  state.dirty.add(symbol);
}

// -- watchlist --------------------------------------------------------------------------

function toggle(symbol) {
  if (state.watching.has(symbol)) {
    state.watching.delete(symbol);
    send("unsubscribe", [symbol]);
  } else {
    state.watching.add(symbol);
    send("subscribe", [symbol]);
  }
  localStorage.setItem("tether-ticker-watch", JSON.stringify([...state.watching]));
  renderChips();
}

function renderChips() {
  const chips = $("#chips");
  chips.replaceChildren();
  for (const symbol of state.catalog.keys()) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.dataset.symbol = symbol;
    chip.textContent = symbol;
    chip.title = state.catalog.get(symbol).name;
    chip.setAttribute("aria-pressed", String(state.watching.has(symbol)));
    chip.addEventListener("click", () => toggle(symbol));
    chips.append(chip);
  }
  $("#watching").textContent = state.watching.size;
}

/** Make the table's rows match the server's view of our subscriptions. */
function syncRows(symbols) {
  const wanted = new Set(symbols);
  for (const [symbol, row] of state.rows) {
    if (!wanted.has(symbol)) {
      row.row.remove();
      state.rows.delete(symbol);
    }
  }
  const body = $("#quotes tbody");
  for (const symbol of [...state.catalog.keys()].filter((s) => wanted.has(s))) {
    if (!state.rows.has(symbol)) state.rows.set(symbol, makeRow(symbol));
    body.append(state.rows.get(symbol).row); // keeps catalog order
    state.dirty.add(symbol);
  }
  $("#empty").hidden = wanted.size > 0;
  if (!wanted.has(state.selected) && wanted.size) select([...wanted][0]);
}

function makeRow(symbol) {
  const row = document.createElement("tr");
  row.dataset.symbol = symbol;
  const cells = {};
  for (const [key, className] of [
    ["symbol", "symbol"], ["name", "hide-sm"], ["price", "num price"], ["change", "num"],
    ["high", "num hide-sm"], ["low", "num hide-sm"], ["volume", "num hide-md"], ["trend", ""],
  ]) {
    const cell = document.createElement("td");
    cell.className = className;
    row.append(cell);
    cells[key] = cell;
  }
  cells.symbol.textContent = symbol;
  cells.name.textContent = state.catalog.get(symbol)?.name || "";
  const canvas = document.createElement("canvas");
  canvas.width = 120 * devicePixelRatio;
  canvas.height = 30 * devicePixelRatio;
  cells.trend.append(canvas);
  row.addEventListener("click", () => select(symbol));
  row.classList.toggle("selected", symbol === state.selected);
  return { row, cells, canvas };
}

function select(symbol) {
  state.selected = symbol;
  localStorage.setItem("tether-ticker-selected", symbol);
  for (const [s, { row }] of state.rows) row.classList.toggle("selected", s === symbol);
  state.dirty.add(symbol);
}

// -- drawing -----------------------------------------------------------------------------

function drawLine(canvas, prices, { grid = false } = {}) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  if (prices.length < 2) return;
  let low = Math.min(...prices);
  let high = Math.max(...prices);
  if (high - low < 1e-9) { high += 0.5; low -= 0.5; }
  const pad = grid ? 16 * devicePixelRatio : 2 * devicePixelRatio;
  const x = (i) => (i / (HISTORY - 1)) * width;
  const y = (p) => pad + (1 - (p - low) / (high - low)) * (height - 2 * pad);
  const offset = HISTORY - prices.length;
  const up = prices[prices.length - 1] >= prices[0];
  const color = up ? "#12a150" : "#d92d20";
  if (grid) {
    context.strokeStyle = "#e2e7f0";
    context.fillStyle = "#667085";
    context.lineWidth = 1;
    context.font = `${11 * devicePixelRatio}px ui-monospace, monospace`;
    for (let i = 0; i <= 3; i++) {
      const price = low + ((high - low) * i) / 3;
      const level = Math.round(y(price)) + 0.5;
      context.beginPath();
      context.moveTo(0, level);
      context.lineTo(width, level);
      context.stroke();
      context.fillText(money.format(price), 4, level - 3);
    }
  }
  context.beginPath();
  prices.forEach((p, i) => (i ? context.lineTo(x(i + offset), y(p)) : context.moveTo(x(i + offset), y(p))));
  context.strokeStyle = color;
  context.lineWidth = (grid ? 2 : 1.5) * devicePixelRatio;
  context.lineJoin = "round";
  context.stroke();
  context.lineTo(x(HISTORY - 1), height);
  context.lineTo(x(offset), height);
  context.closePath();
  const fill = context.createLinearGradient(0, 0, 0, height);
  fill.addColorStop(0, up ? "rgba(18,161,80,0.22)" : "rgba(217,45,32,0.22)");
  fill.addColorStop(1, "rgba(255,255,255,0)");
  context.fillStyle = fill;
  context.fill();
}

function changeText(symbol, price) {
  const open = state.catalog.get(symbol)?.open || price;
  const change = price - open;
  const percent = (change / open) * 100;
  const sign = change >= 0 ? "+" : "−";
  return { text: `${sign}${money.format(Math.abs(change))} (${sign}${Math.abs(percent).toFixed(2)}%)`, up: change >= 0 };
}

function renderRow(symbol) {
  const entry = state.rows.get(symbol);
  const quote = state.quotes.get(symbol);
  if (!entry || !quote) return;
  const [price, high, low, traded] = quote;
  const { cells } = entry;
  const previous = state.previous.get(symbol) ?? price;
  cells.price.textContent = money.format(price);
  cells.price.className = `num price ${price > previous ? "up" : price < previous ? "down" : ""}`;
  const change = changeText(symbol, price);
  cells.change.textContent = change.text;
  cells.change.className = `num ${change.up ? "up" : "down"}`;
  cells.high.textContent = money.format(high);
  cells.low.textContent = money.format(low);
  cells.volume.textContent = volume.format(traded);
  drawLine(entry.canvas, state.history.get(symbol) || []);
}

function renderChart() {
  const symbol = state.selected;
  const quote = state.quotes.get(symbol);
  $("#chart-symbol").textContent = symbol;
  $("#chart-name").textContent = state.catalog.get(symbol)?.name || "";
  if (!quote) return;
  $("#chart-price").textContent = money.format(quote[0]);
  const change = changeText(symbol, quote[0]);
  $("#chart-change").textContent = change.text;
  $("#chart-change").className = `mono small ${change.up ? "up" : "down"}`;
  const canvas = $("#chart");
  const width = Math.round(canvas.clientWidth * devicePixelRatio);
  if (canvas.width !== width) canvas.width = width;
  canvas.height = 220 * devicePixelRatio;
  drawLine(canvas, state.history.get(symbol) || [], { grid: true });
}

function frame() {
  for (const symbol of state.dirty) renderRow(symbol);
  if (state.dirty.has(state.selected)) renderChart();
  state.dirty.clear();
  requestAnimationFrame(frame);
}

// Rates over the last second, refreshed four times a second.
const samples = [];
setInterval(() => {
  const now = performance.now();
  samples.push([now, state.stats.updates, state.stats.messages]);
  while (samples.length > 1 && now - samples[0][0] > 1000) samples.shift();
  const [t0, u0, m0] = samples[0];
  const seconds = (now - t0) / 1000;
  if (seconds > 0.2) {
    state.stats.rate = Math.round((state.stats.updates - u0) / seconds);
    state.stats.messagesRate = Math.round((state.stats.messages - m0) / seconds);
  }
  $("#rate").textContent = state.stats.rate;
  $("#messages-rate").textContent = state.stats.messagesRate;
  $("#conflated").textContent = volume.format(state.stats.conflated);
}, 250);

$("#select-all").addEventListener("click", () => {
  const missing = [...state.catalog.keys()].filter((s) => !state.watching.has(s));
  missing.forEach((s) => state.watching.add(s));
  send("subscribe", missing);
  localStorage.setItem("tether-ticker-watch", JSON.stringify([...state.watching]));
  renderChips();
});
$("#select-none").addEventListener("click", () => {
  send("unsubscribe", [...state.watching]);
  state.watching.clear();
  localStorage.setItem("tether-ticker-watch", "[]");
  renderChips();
});

connect();
requestAnimationFrame(frame);
