// The arena's browser side: sends the keys that are down, receives state
// (see tether/demo/game.py) and draws every player interpolated between the
// two server ticks around "now minus a small delay".

import { $, setStatus } from "/common.js";
const DELAY = 100; // ms behind the newest server state: a little more than three ticks

const state = {
  ws: null,
  retry: 500,
  me: null,
  name: localStorage.getItem("tether-game-name") || "",
  joined: false,
  tickRate: 30,
  tick: 0,
  arena: { width: 1200, height: 720, player: 18, gem: 10 },
  players: new Map(), // id -> {id, name, color, score, samples: [[serverMs, x, y], ...]}
  gems: new Map(), // id -> [x, y]
  offset: null, // performance.now() - server time, estimated
  input: { dx: 0, dy: 0 },
  messages: 0,
};
window.game = state;
/** The newest position the server sent for a player (for the tests). */
state.position = (id) => state.players.get(id)?.samples.at(-1)?.slice(1) ?? null;

// -- network ------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/game/ws`);
  state.ws = ws;
  setStatus("connecting", "Connecting…");
  ws.onopen = () => {
    state.retry = 500;
    setStatus("online", state.joined ? "Playing" : "Watching");
    // After a reconnection, come back as a new player with the same name.
    if (state.joined) send({ type: "join", name: state.name });
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    setStatus("offline", "Offline · retrying");
    state.me = null;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 5000);
  };
}

function send(message) {
  if (state.ws?.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
}

const serverTime = (tick) => (tick * 1000) / state.tickRate;

function clockSample(tick) {
  // The smallest observed offset is the least delayed message; drift slowly
  // upwards so that a changed network path is followed.
  const estimate = performance.now() - serverTime(tick);
  if (state.offset === null || estimate < state.offset) state.offset = estimate;
  else state.offset += (estimate - state.offset) * 0.02;
}

function upsert(player, t) {
  let known = state.players.get(player.id);
  if (!known) {
    known = { id: player.id, samples: [] };
    state.players.set(player.id, known);
  }
  Object.assign(known, { name: player.name, color: player.color, score: player.score });
  move(known, t, player.x, player.y);
}

function move(player, t, x, y) {
  const samples = player.samples;
  const last = samples.at(-1);
  if (last && t <= last[0]) return;
  // A player that stood still sent nothing: hold the old position until
  // the tick before this one, rather than gliding over the whole pause.
  const before = t - 1000 / state.tickRate;
  if (last && last[0] < before) samples.push([before, last[1], last[2]]);
  samples.push([t, x, y]);
  if (samples.length > 40) samples.splice(0, samples.length - 40);
}

function loadState(message, t) {
  const seen = new Set();
  for (const player of message.players) {
    upsert(player, t);
    seen.add(player.id);
  }
  for (const id of state.players.keys()) if (!seen.has(id)) state.players.delete(id);
  state.gems = new Map(message.gems.map(([id, x, y]) => [id, [x, y]]));
}

function receive(message) {
  state.messages += 1;
  if (message.type === "error") return alert(message.error);
  if (message.tick <= state.tick && message.type === "delta") return; // older than what we have
  state.tick = Math.max(state.tick, message.tick);
  const t = serverTime(message.tick);
  if (message.type === "welcome") {
    state.tickRate = message.tickRate;
    state.arena = message.arena;
    $("#tick-rate").textContent = message.tickRate;
    if (message.id !== null) {
      state.me = message.id;
      setStatus("online", "Playing");
    }
    loadState(message, t);
  } else if (message.type === "state") {
    loadState(message, t);
  } else if (message.type === "delta") {
    for (const player of message.join || []) upsert(player, t);
    for (const id of message.leave || []) state.players.delete(id);
    for (const [id, x, y] of message.p || []) {
      const player = state.players.get(id);
      if (player) move(player, t, x, y);
    }
    for (const [id, score] of message.s || []) {
      const player = state.players.get(id);
      if (player) player.score = score;
    }
    for (const [id, x, y] of message.g || []) state.gems.set(id, [x, y]);
  }
  clockSample(message.tick);
  renderScores();
}

// -- input ----------------------------------------------------------------------------------

const KEYS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
};
const down = new Set();

function updateInput() {
  let dx = 0;
  let dy = 0;
  for (const code of down) {
    dx += KEYS[code][0];
    dy += KEYS[code][1];
  }
  dx = Math.sign(dx);
  dy = Math.sign(dy);
  if (dx === state.input.dx && dy === state.input.dy) return;
  state.input = { dx, dy };
  send({ type: "input", dx, dy });
}

window.addEventListener("keydown", (event) => {
  if (!(event.code in KEYS) || !state.joined || event.target.tagName === "INPUT") return;
  event.preventDefault();
  down.add(event.code);
  updateInput();
});
window.addEventListener("keyup", (event) => {
  if (!(event.code in KEYS)) return;
  down.delete(event.code);
  updateInput();
});
window.addEventListener("blur", () => {
  down.clear();
  updateInput();
});
for (const button of document.querySelectorAll(".dpad button")) {
  const code = { "0,-1": "ArrowUp", "-1,0": "ArrowLeft", "1,0": "ArrowRight", "0,1": "ArrowDown" }[
    `${button.dataset.dx},${button.dataset.dy}`
  ];
  button.addEventListener("pointerdown", () => { down.add(code); updateInput(); });
  for (const end of ["pointerup", "pointerleave", "pointercancel"]) {
    button.addEventListener(end, () => { down.delete(code); updateInput(); });
  }
}

// -- drawing -----------------------------------------------------------------------------------

function interpolated(player, t) {
  const samples = player.samples;
  if (!samples.length) return null;
  if (t <= samples[0][0]) return samples[0].slice(1);
  for (let i = samples.length - 1; i > 0; i--) {
    const [t1, x1, y1] = samples[i];
    const [t0, x0, y0] = samples[i - 1];
    if (t >= t0 && t <= t1) {
      const k = (t - t0) / (t1 - t0 || 1);
      return [x0 + (x1 - x0) * k, y0 + (y1 - y0) * k];
    }
  }
  return samples.at(-1).slice(1); // no newer state yet: hold, never extrapolate
}

function draw() {
  const canvas = $("#arena");
  const ratio = devicePixelRatio || 1;
  const width = Math.round(canvas.clientWidth * ratio);
  const height = Math.round(canvas.clientHeight * ratio);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  const scale = width / state.arena.width;
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = "#101828";
  context.fillRect(0, 0, width, height);
  context.setTransform(scale, 0, 0, scale, 0, 0);

  context.strokeStyle = "rgba(255,255,255,0.05)";
  context.lineWidth = 1 / scale;
  for (let x = 60; x < state.arena.width; x += 60) {
    context.beginPath(); context.moveTo(x, 0); context.lineTo(x, state.arena.height); context.stroke();
  }
  for (let y = 60; y < state.arena.height; y += 60) {
    context.beginPath(); context.moveTo(0, y); context.lineTo(state.arena.width, y); context.stroke();
  }

  const now = performance.now();
  const pulse = 1 + 0.12 * Math.sin(now / 220);
  for (const [x, y] of state.gems.values()) {
    const r = state.arena.gem * pulse;
    context.save();
    context.translate(x, y);
    context.rotate(Math.PI / 4);
    context.shadowColor = "#facc15";
    context.shadowBlur = 16;
    context.fillStyle = "#fde047";
    context.fillRect(-r / 1.4, -r / 1.4, (2 * r) / 1.4, (2 * r) / 1.4);
    context.restore();
  }

  const t = state.offset === null ? 0 : now - state.offset - DELAY;
  const radius = state.arena.player;
  context.textAlign = "center";
  context.font = "600 14px system-ui, sans-serif";
  for (const player of state.players.values()) {
    const position = interpolated(player, t);
    if (!position) continue;
    const [x, y] = position;
    player.drawn = position;
    if (player.id === state.me) {
      context.beginPath();
      context.arc(x, y, radius + 7, 0, Math.PI * 2);
      context.strokeStyle = "rgba(255,255,255,0.55)";
      context.lineWidth = 2;
      context.setLineDash([5, 5]);
      context.stroke();
      context.setLineDash([]);
    }
    context.beginPath();
    context.arc(x, y, radius, 0, Math.PI * 2);
    context.fillStyle = player.color;
    context.shadowColor = player.color;
    context.shadowBlur = 18;
    context.fill();
    context.shadowBlur = 0;
    context.lineWidth = 3;
    context.strokeStyle = "rgba(255,255,255,0.9)";
    context.stroke();
    context.fillStyle = "rgba(255,255,255,0.92)";
    context.fillText(player.name, x, y - radius - 10);
  }
  requestAnimationFrame(draw);
}

function renderScores() {
  const players = [...state.players.values()].sort((a, b) => b.score - a.score || a.id - b.id);
  const list = $("#scores");
  const key = players.map((p) => `${p.id}:${p.score}:${p.name}`).join(",") + `|${state.me}`;
  $("#tick").textContent = state.tick;
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren();
  for (const player of players) {
    const item = document.createElement("li");
    item.dataset.id = player.id;
    if (player.id === state.me) item.className = "me";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = player.color;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = player.id === state.me ? `${player.name} (you)` : player.name;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = player.score;
    item.append(dot, name, score);
    list.append(item);
  }
  $("#no-players").hidden = players.length > 0;
}

let lastCount = 0;
setInterval(() => {
  $("#msg-rate").textContent = state.messages - lastCount;
  lastCount = state.messages;
}, 1000);

$("#delay").textContent = DELAY;
$("#name").value = new URLSearchParams(location.search).get("name") || state.name;
$("#join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.name = $("#name").value.trim() || "Anonymous";
  localStorage.setItem("tether-game-name", state.name);
  state.joined = true;
  $("#join").hidden = true;
  send({ type: "join", name: state.name });
  $("#arena").focus();
});

connect();
requestAnimationFrame(draw);
