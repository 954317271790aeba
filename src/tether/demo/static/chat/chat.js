// The chat demo's browser side: the official socket.io-client, served at
// /vendor by the demo server from the copy tether's wheel ships, or from
// node_modules in a checkout (no CDN).
import { $, setStatus as setPill } from "/common.js";

// Imported dynamically: a static import that fails stops the whole module, and
// the page would be an empty dialog instead of saying what is missing.
let io = null;
try {
  ({ io } = await import("/vendor/socket.io.esm.min.js"));
} catch {
  // setup() shows #missing-client; the browser already logged the failed request.
}

// The server's rooms (tether/demo/chat.py ROOMS); the welcome event has the real list.
const DEFAULT_ROOMS = ["general", "engineering", "random", "music"];

const state = {
  socket: null,
  nick: "",
  room: DEFAULT_ROOMS[0],
  rooms: DEFAULT_ROOMS,
  maxText: 500,
  connectedOnce: false,
  shown: new Map(), // message id -> <li>: a message is displayed once, whatever path it took
  typing: new Map(), // nick -> timer
  typingSent: false,
  typingTimer: null,
};

// -- small helpers ---------------------------------------------------------------

function newId() {
  // crypto.randomUUID needs a secure context; a LAN address over http is not one.
  if (crypto.randomUUID && window.isSecureContext) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function colorFor(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 62% 48%)`;
}

function avatar(name, element = document.createElement("span")) {
  element.className = "avatar";
  element.textContent = [...name][0] || "?";
  element.style.background = colorFor(name);
  element.title = name;
  return element;
}

function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

let toastTimer = null;
function toast(text, kind = "error") {
  const element = $("#toast");
  element.textContent = text;
  element.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (element.className = "toast"), 3500);
}

function showError(text) {
  $("#composer-error").textContent = text;
  toast(text);
}

function setStatus(kind, text) {
  setPill(kind, text);
  $("#banner").hidden = kind !== "connecting" || !state.connectedOnce;
  const online = kind === "online";
  document.body.dataset.online = String(online);
  for (const button of document.querySelectorAll("#rooms button")) button.disabled = !online;
}

// -- rendering ---------------------------------------------------------------------

function scrollToEnd() {
  const list = $("#messages");
  list.scrollTop = list.scrollHeight;
}

function renderRooms() {
  const list = $("#rooms");
  list.replaceChildren();
  for (const room of state.rooms) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.room = room;
    button.textContent = `# ${room}`;
    button.setAttribute("aria-current", String(room === state.room));
    button.disabled = !state.socket?.connected;
    button.addEventListener("click", () => switchRoom(room));
    item.append(button);
    list.append(item);
  }
  $("#room-title").textContent = `# ${state.room}`;
  $("#message-input").placeholder = `Message #${state.room}`;
}

function addMessage(message, status = null) {
  if (message.room && message.room !== state.room) return;
  if (state.shown.has(message.id)) return;
  const own = message.nick === state.nick && status !== null;
  const item = document.createElement("li");
  item.className = own ? "msg own" : "msg";
  item.dataset.id = message.id;
  item.dataset.nick = message.nick;
  if (status) item.dataset.status = status;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = message.nick;
  const time = document.createElement("time");
  time.textContent = clock(message.ts);
  meta.append(author, time);
  if (own) {
    const tick = document.createElement("span");
    tick.className = "tick";
    tick.title = "Delivered to the server";
    meta.append(tick);
  }
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = message.text;
  bubble.append(meta, text);
  item.append(avatar(message.nick), bubble);
  $("#messages").append(item);
  state.shown.set(message.id, item);
  stopTyping(message.nick);
  scrollToEnd();
}

function addNotice(text) {
  const item = document.createElement("li");
  item.className = "notice";
  item.textContent = text;
  $("#messages").append(item);
  scrollToEnd();
}

function renderMembers(members) {
  const list = $("#members");
  list.replaceChildren();
  for (const nick of members) {
    const item = document.createElement("li");
    item.dataset.nick = nick;
    const name = document.createElement("span");
    name.textContent = nick;
    item.append(avatar(nick), name);
    if (nick === state.nick) {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "you";
      item.append(you);
    }
    list.append(item);
  }
  $("#member-count").textContent = members.length;
  $("#room-count").textContent = `${members.length} online`;
}

function renderTyping() {
  const names = [...state.typing.keys()];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  $("#typing").textContent = text;
}

function stopTyping(nick) {
  if (!state.typing.has(nick)) return;
  clearTimeout(state.typing.get(nick));
  state.typing.delete(nick);
  renderTyping();
}

function enterRoom(welcome) {
  if ($("#messages").dataset.room !== welcome.room) {
    $("#messages").replaceChildren();
    state.shown.clear();
  }
  state.room = welcome.room;
  state.rooms = welcome.rooms;
  state.maxText = welcome.limits.maxText;
  $("#messages").dataset.room = welcome.room;
  for (const nick of state.typing.keys()) stopTyping(nick);
  renderRooms();
  // Merged by id: after a reconnection the history repeats what is shown.
  for (const message of welcome.history) addMessage(message, message.nick === state.nick ? "delivered" : null);
  updateCounter();
}

// -- talking to the server ----------------------------------------------------------

function connect() {
  const socket = io("/chat", {
    // A function: evaluated at every (re)connection, so that the server knows
    // who we are and where before it handles the messages we buffered.
    auth: (send) => send({ nick: state.nick, room: state.room, returning: state.connectedOnce }),
    // Unacknowledged messages are sent again (after a reconnection too); the
    // server drops the ids it has already seen.
    retries: 30,
    ackTimeout: 4000,
    reconnectionDelay: 400,
    reconnectionDelayMax: 2000,
  });
  state.socket = socket;
  window.chat = { socket, state }; // for the console and the browser tests

  socket.on("connect", () => {
    state.connectedOnce = true;
    setStatus("online", socket.recovered ? "Online · recovered" : "Online");
    $("#message-input").disabled = false;
    $("#send-button").disabled = false;
    $("#composer-error").textContent = "";
  });
  socket.on("disconnect", (reason) => {
    setStatus("connecting", "Reconnecting…");
    if (reason === "io server disconnect") socket.connect();
  });
  socket.io.on("reconnect_attempt", () => setStatus("connecting", "Reconnecting…"));
  socket.on("connect_error", (error) => {
    if (error.data && error.data.field === "nick") {
      socket.disconnect();
      state.socket = null;
      $("#join").hidden = false;
      $("#join-error").textContent = error.message;
      setStatus("offline", "Not connected");
      return;
    }
    setStatus("connecting", "Reconnecting…");
  });

  socket.on("welcome", (welcome) => {
    $("#me-nick").textContent = welcome.nick;
    avatar(welcome.nick, $("#me-avatar"));
    state.nick = welcome.nick;
    enterRoom(welcome);
  });
  socket.on("message", (message) => addMessage(message));
  socket.on("notice", (notice) => {
    if (notice.room !== state.room) return;
    addNotice(`${notice.nick} ${notice.what === "joined" ? "joined" : "left"} #${notice.room}`);
  });
  socket.on("presence", (presence) => {
    if (presence.room === state.room) renderMembers(presence.members);
  });
  socket.on("typing", ({ room, nick, typing }) => {
    if (room !== state.room || nick === state.nick) return;
    clearTimeout(state.typing.get(nick));
    if (!typing) return stopTyping(nick);
    // The hint expires on its own: a "stopped" event may never come.
    state.typing.set(nick, setTimeout(() => stopTyping(nick), 4000));
    renderTyping();
  });
}

function send(text) {
  if (!text.trim()) return;
  if ([...text].length > state.maxText) {
    showError(`Too long: messages are at most ${state.maxText} characters.`);
    return;
  }
  const message = { id: newId(), room: state.room, nick: state.nick, text: text.trim(), ts: Date.now() };
  addMessage(message, "pending");
  $("#composer-error").textContent = "";
  sendTyping(false);
  // Emitted even while disconnected: socket.io-client keeps it and sends it
  // after reconnecting.
  state.socket.emit("message", { id: message.id, text: message.text }, (error, reply) => {
    const item = state.shown.get(message.id);
    if (error || !reply.ok) {
      const reason = error ? "The server did not answer." : reply.error;
      if (item) item.dataset.status = "failed";
      showError(`Not sent: ${reason}`);
      return;
    }
    if (item) item.dataset.status = "delivered";
  });
}

function sendTyping(typing) {
  clearTimeout(state.typingTimer);
  if (typing) state.typingTimer = setTimeout(() => sendTyping(false), 2500);
  if (typing === state.typingSent || !state.socket?.connected) return;
  state.typingSent = typing;
  state.socket.volatile.emit("typing", typing);
}

function switchRoom(room) {
  if (room === state.room || !state.socket?.connected) return;
  state.socket.timeout(5000).emit("switch", room, (error, reply) => {
    if (error || !reply.ok) return showError(error ? "Could not switch rooms." : reply.error);
    state.room = room;
    localStorage.setItem("tether-chat-room", room);
    enterRoom(reply);
  });
}

function updateCounter() {
  const length = [...$("#message-input").value].length;
  const counter = $("#counter");
  counter.textContent = length ? `${length}/${state.maxText}` : "";
  counter.classList.toggle("over", length > state.maxText);
}

// -- wiring ----------------------------------------------------------------------------

function setup() {
  const select = $("#room-select");
  const params = new URLSearchParams(location.search);
  const savedRoom = params.get("room") || localStorage.getItem("tether-chat-room");
  for (const room of DEFAULT_ROOMS) select.add(new Option(`# ${room}`, room, false, room === savedRoom));
  // What was typed while the client was loading stays (the form is there
  // before this script has run); otherwise the link's or last visit's nick.
  if (!$("#nick").value) {
    $("#nick").value = params.get("nick") || localStorage.getItem("tether-chat-nick") || "";
  }
  $("#nick").focus();
  renderRooms();
  if (io === null) {
    $("#missing-client").hidden = false;
    $("#join-button").disabled = true;
    setStatus("offline", "Browser client missing");
    return;
  }

  $("#join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.nick = $("#nick").value.trim();
    state.room = select.value;
    if (!state.nick) return;
    localStorage.setItem("tether-chat-nick", state.nick);
    localStorage.setItem("tether-chat-room", state.room);
    $("#join").hidden = true;
    $("#join-error").textContent = "";
    setStatus("connecting", "Connecting…");
    connect();
    $("#message-input").focus();
  });
  // The page loads the client with a top-level await, which the load event does
  // not wait for: the button stays disabled until the form is really wired.
  $("#join-button").disabled = false;

  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#message-input");
    const text = input.value;
    if ([...text].length > state.maxText) {
      showError(`Too long: messages are at most ${state.maxText} characters.`);
      return;
    }
    send(text);
    input.value = "";
    updateCounter();
  });

  $("#message-input").addEventListener("input", (event) => {
    updateCounter();
    sendTyping(event.target.value.length > 0);
  });
}

setup();
