// The official socket.io-client 4.8, scripted against tether's realtime server
// (tests/interop/realtime_app.py describes the server's events;
// tests/interop/test_socketio_node.py runs this script).
//
// Usage: node sio_client.mjs URL SCENARIO ['{"transports": ["websocket"]}']
//
//   transports   the client's transports option; absent: the default
//                configuration (polling, then the upgrade to websocket)
//   parser       "msgpack": the client uses socket.io-msgpack-parser
//
// Writes one JSON line per observation on stdout, {"event": ..., ...}, with
// binary values as {"hex": "..."}; the last line is {"event": "done"} (exit 0),
// or {"event": "error", "message": ...} (exit 1), or {"event": "timeout"} (exit 2).
// Some scenarios wait for a command line on stdin (they say so); the script
// exits when stdin closes, so it never outlives the test that started it.
import readline from 'node:readline';
import { Manager, io } from 'socket.io-client';

const [url, scenario, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson ?? '{}');
const PARSER = options.parser === 'msgpack' ? (await import('socket.io-msgpack-parser')).default : undefined;
const BASE = {
  ...(PARSER ? { parser: PARSER } : {}),
  forceNew: true,
  reconnection: false,
  timeout: 5000,
  ...(options.transports ? { transports: options.transports } : {}),
};
const AUTH = { token: 'secret', user: 'ada' };
const UPGRADES = !options.transports || (options.transports.includes('websocket') && options.transports[0] === 'polling');

// -- output -------------------------------------------------------------------

function plain(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { hex: Buffer.from(value).toString('hex') };
  if (value instanceof ArrayBuffer) return { hex: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function print(event, extra = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...plain(extra) })}\n`);
}

setTimeout(() => {
  print('timeout');
  process.exit(2);
}, options.timeoutMs ?? 15000).unref();

// -- stdin commands -----------------------------------------------------------

const commands = [];
const waiting = [];
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => (waiting.length ? waiting.shift()(line) : commands.push(line)));
lines.on('close', () => process.exit(3));

function command() {
  return commands.length ? Promise.resolve(commands.shift()) : new Promise((resolve) => waiting.push(resolve));
}

// -- helpers ------------------------------------------------------------------

function once(emitter, name) {
  return new Promise((resolve) => emitter.once(name, (...args) => resolve(args)));
}

function connected(socket) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
}

function refused(socket) {
  return new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error(`${socket.nsp} connected, expected a refusal`)));
    socket.once('connect_error', (err) => resolve({ message: err.message, data: err.data ?? null }));
  });
}

function ack(socket, ...args) {
  // The callback form: every argument of the ack (emitWithAck keeps the first).
  return new Promise((resolve) => socket.emit(...args, (...reply) => resolve(reply)));
}

async function upgraded(socket) {
  const engine = socket.io.engine;
  if (UPGRADES && engine.transport.name !== 'websocket') await once(engine, 'upgrade');
  return engine.transport.name;
}

async function bye(socket) {
  // Disconnect, and wait until the engine has flushed the DISCONNECT packet
  // and closed (the manager closes it with its last socket).
  const closed = once(socket.io.engine, 'close');
  socket.disconnect();
  await closed;
}

function client(auth, extra = {}) {
  const socket = io(url, { ...BASE, auth, ...extra });
  socket.on('question', (question, reply) => reply(`${auth.user}:${question}`));
  return socket;
}

// -- scenarios ----------------------------------------------------------------

const scenarios = {
  // Connect with auth; the server's welcome; our sid; the transports used.
  async connect() {
    const socket = io(url, { ...BASE, auth: AUTH });
    let initial = null;
    socket.io.on('open', () => (initial = socket.io.engine.transport.name));
    const welcome = once(socket, 'welcome');
    await connected(socket);
    print('connect', { id: socket.id, initial });
    print('welcome', { data: (await welcome)[0] });
    print('whoami', { data: await socket.emitWithAck('whoami') });
    print('transport', { name: await upgraded(socket) });
    print('after-upgrade', { data: await socket.emitWithAck('echo', 'still here') });
    await bye(socket);
  },

  // Events both ways: ours with several arguments of every JSON type, the server's back.
  async emit() {
    const socket = client(AUTH);
    await connected(socket);
    const told = once(socket, 'told');
    socket.emit('tell', 'told', 'héllo ✓', 1, 2.5, true, null, { list: [1, 'two', { three: 3 }] });
    print('told', { args: await told });
    const many = [];
    socket.on('seq', (n) => many.push(n));
    for (let i = 0; i < 20; i += 1) socket.emit('tell', 'seq', i);
    await socket.emitWithAck('echo'); // everything before it has arrived
    print('seq', { values: many });
    await bye(socket);
  },

  // Acks both ways: ours (emitWithAck, callback, timeout flag), the server's emit_with_ack.
  async acks() {
    const socket = client(AUTH);
    await connected(socket);
    print('emitWithAck', { value: await socket.emitWithAck('echo', { a: [1, 2] }) });
    print('callback', { args: await ack(socket, 'echo', 1, 'two', { three: 3 }) });
    print('empty', { args: await ack(socket, 'echo') });
    print('timeout-flag', { value: await socket.timeout(3000).emitWithAck('echo', 'in time') });
    // The server asks us (emit_with_ack) and acks our "ask" with our answer.
    print('server-ack', { value: await socket.emitWithAck('ask', 'life') });
    socket.off('question');
    socket.on('question', (a, b, reply) => reply(b, a, 'third'));
    print('server-ack-several', { value: await ack(socket, 'ask', 'x', 'y') });
    await bye(socket);
  },

  // Binary both ways: in events, in acks, nested, at any position.
  async binary() {
    const socket = client(AUTH);
    await connected(socket);
    const data = Buffer.from([1, 2, 3, 4, 5, 0, 255]);
    print('binary-ack', { value: await socket.emitWithAck('binary', data) });
    const told = once(socket, 'bin');
    socket.emit('tell', 'bin', 'text first', { nested: [Buffer.from('xyz'), { deeper: Buffer.alloc(0) }] }, Buffer.from([9]));
    print('binary-event', { args: await told });
    socket.off('question');
    socket.on('question', (buffer, reply) => reply({ got: buffer, reversed: Buffer.from(buffer).reverse() }));
    print('binary-server-ack', { value: await socket.emitWithAck('ask', Buffer.from([10, 20, 30])) });
    await bye(socket);
  },

  // Several namespaces on one connection: static, dynamic, unknown, refused.
  async namespaces() {
    const manager = new Manager(url, BASE);
    const root = manager.socket('/', { auth: AUTH });
    const chat = manager.socket('/chat', { auth: { user: 'bob' } });
    const dyn = manager.socket('/dyn-42', { auth: { user: 'cy' } });
    const nope = manager.socket('/nope', { auth: {} });
    const priv = manager.socket('/private', { auth: {} });
    const refusals = [refused(nope), refused(priv)];
    await Promise.all([connected(root), connected(chat), connected(dyn)]);
    for (const socket of [root, chat, dyn]) {
      print('whoami', { nsp: socket.nsp, data: await socket.emitWithAck('whoami') });
    }
    print('refused', { nsp: '/nope', error: await refusals[0] });
    print('refused', { nsp: '/private', error: await refusals[1] });
    const told = once(chat, 'told');
    chat.emit('tell', 'told', 'on chat');
    print('chat-event', { args: await told });
    print('engine', { ids: [root, chat, dyn].map((s) => s.io.engine.id), same: root.io === chat.io });
    chat.disconnect(); // leaves "/chat" only: "/" still works
    print('root-after', { value: await root.emitWithAck('echo', 'root alive') });
    root.disconnect();
    await bye(dyn);
  },

  // Middleware refusing with data; then accepting the right token.
  async middleware() {
    const bad = io(url, { ...BASE, auth: { token: 'wrong', user: 'eve' } });
    print('refused', { error: await refused(bad) });
    bad.close();
    const none = io(url, BASE);
    print('refused-no-auth', { error: await refused(none) });
    none.close();
    const good = io(url, { ...BASE, auth: AUTH });
    await connected(good);
    print('accepted', { value: await good.emitWithAck('whoami') });
    await bye(good);
  },

  // Rooms and broadcasts reach exactly the right clients.
  async rooms() {
    const names = ['a', 'b', 'c'];
    const sockets = Object.fromEntries(names.map((name) => [name, client({ token: 'secret', user: name })]));
    const received = Object.fromEntries(names.map((name) => [name, []]));
    for (const name of names) sockets[name].on('room', (text) => received[name].push(text));
    await Promise.all(Object.values(sockets).map(connected));
    const { a, b, c } = sockets;
    print('joined', {
      a: await a.emitWithAck('join', 'r1'),
      b: await b.emitWithAck('join', 'r1'),
      c: await c.emitWithAck('join', 'r2'),
    });
    await a.emitWithAck('to_room', 'r1', 'a to r1');
    await c.emitWithAck('broadcast', 'c to all but c');
    await a.emitWithAck('server_to', ['r1', 'r2'], 'server to r1+r2');
    await a.emitWithAck('except', 'r2', 'server to all but r2');
    print('count', { r1: await a.emitWithAck('count', 'r1'), r2: await a.emitWithAck('count', 'r2') });
    print('poll', { replies: await c.emitWithAck('poll', 'r1', 'q?') });
    await a.emitWithAck('rooms_join', 'r2', 'r3');
    await a.emitWithAck('server_to', ['r3'], 'server to r3');
    print('left', { b: await b.emitWithAck('leave', 'r1') });
    await a.emitWithAck('to_room', 'r1', 'a to r1 after b left');
    const kicked = once(c, 'disconnect');
    await a.emitWithAck('kick', 'r2');
    print('kicked', { reason: (await kicked)[0] });
    await Promise.all([a.emitWithAck('echo'), b.emitWithAck('echo')]); // flush
    print('received', received);
    await Promise.all([bye(a), bye(b)]);
  },

  // The server drops the connection; the client reconnects by itself.
  async reconnect() {
    const socket = client(AUTH, { reconnection: true, reconnectionDelay: 50, randomizationFactor: 0 });
    await connected(socket);
    if (options.upgrade) await upgraded(socket);
    const first = socket.id;
    const gone = once(socket, 'disconnect');
    const back = once(socket, 'connect');
    const reconnected = once(socket.io, 'reconnect');
    socket.emit('drop');
    const [reason] = await gone;
    await back;
    print('reconnected', {
      reason,
      attempt: (await reconnected)[0],
      sameId: socket.id === first,
      recovered: !!socket.recovered,
    });
    print('whoami', { data: await socket.emitWithAck('whoami') });
    await bye(socket);
  },

  // Connection state recovery after our transport is killed ("transport close"):
  // waits for "reconnect" on stdin, so that the test emits while we are away.
  async 'recover-client-kill'() {
    const socket = client(AUTH, { reconnection: true, reconnectionDelay: 50, randomizationFactor: 0 });
    const missed = [];
    socket.on('missed', (value) => missed.push(value));
    await connected(socket);
    await socket.emitWithAck('join', 'r');
    const zero = once(socket, 'missed');
    socket.emit('tell', 'missed', 0); // an event with an offset before we go
    await zero;
    print('transport', { name: await upgraded(socket) });
    const first = socket.id;
    // No reconnection until the test has emitted the missed events: turned
    // off in the listener, before the manager schedules its first attempt.
    const gone = new Promise((resolve) => {
      socket.once('disconnect', (reason) => {
        socket.io.reconnection(false);
        resolve([reason]);
      });
    });
    socket.io.engine.close();
    const [reason] = await gone;
    print('away', { id: first, reason });
    if ((await command()) !== 'reconnect') throw new Error('expected "reconnect"');
    const back = once(socket, 'connect');
    socket.io.reconnection(true);
    socket.connect();
    await back;
    print('recovered', { recovered: !!socket.recovered, sameId: socket.id === first });
    print('state', { rooms: await socket.emitWithAck('leave', 'none'), whoami: await socket.emitWithAck('whoami') });
    print('missed', { values: missed });
    await bye(socket);
  },

  // Connection state recovery after the server closes the connection and emits
  // to us at once; we reconnect by ourselves.
  async 'recover-server-drop'() {
    const socket = client(AUTH, { reconnection: true, reconnectionDelay: 50, randomizationFactor: 0 });
    const missed = [];
    socket.on('missed', (value) => missed.push(value));
    await connected(socket);
    await socket.emitWithAck('join', 'r');
    const zero = once(socket, 'missed');
    socket.emit('tell', 'missed', 0);
    await zero;
    const first = socket.id;
    const gone = once(socket, 'disconnect');
    const back = once(socket, 'connect');
    socket.emit('drop_then_emit', 'r', 1, 2, 3);
    const [reason] = await gone;
    await back;
    print('recovered', { reason, recovered: !!socket.recovered, sameId: socket.id === first });
    print('state', { rooms: await socket.emitWithAck('leave', 'none') });
    print('missed', { values: missed });
    await bye(socket);
  },
};

try {
  if (!(scenario in scenarios)) throw new Error(`unknown scenario ${scenario}`);
  await scenarios[scenario]();
  print('done');
  process.exit(0);
} catch (error) {
  print('error', { message: String(error?.stack ?? error), data: error?.data ?? null });
  process.exit(1);
}
