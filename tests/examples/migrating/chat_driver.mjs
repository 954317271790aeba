// One scripted conversation with the chat of examples/migrating/, through the
// official socket.io-client 4.8 (tests/examples/migrating/test_chat.py runs it
// against psio_chat.py and tether_chat.py, each under uvicorn).
//
// Usage: node chat_driver.mjs URL LIMIT_MS [TRANSPORTS]
//
// TRANSPORTS: "polling,websocket" (the client's default: long-polling, then
// upgraded to WebSocket), "websocket" or "polling". Five clients act
// one step at a time, each step waiting for its acknowledgement. Every client
// keeps a log of what it gets: ["ack", event, reply], ["event", event, ...args],
// ["connect"], ["connect_error", message, data], ["disconnect", reason].
// Prints {"logs": {name: [...]}} on one line, or {"error": "..."} and exits 1.
import { io } from 'socket.io-client';

const [url, limitArg, transportsArg = 'polling,websocket'] = process.argv.slice(2);
const transports = transportsArg.split(',');
const limit = Number(limitArg);
const token = 'letmein';

function client(name, auth) {
  const log = [];
  const socket = io(url, { forceNew: true, reconnection: false, transports, auth });
  socket.onAny((event, ...args) => log.push(['event', event, ...args]));
  socket.on('connect', () => log.push(['connect']));
  socket.on('disconnect', (reason) => log.push(['disconnect', reason]));
  socket.on('connect_error', (error) =>
    log.push(['connect_error', error.message, error.data === undefined ? 'no data' : error.data]));
  return { name, socket, log };
}

// Resolves once the client has connected (or was refused).
function settled(c) {
  return new Promise((resolve) => {
    c.socket.once('connect', resolve);
    c.socket.once('connect_error', resolve);
  });
}

// Resolves with the next `event` the client receives.
function next(c, event) {
  return new Promise((resolve) => c.socket.once(event, resolve));
}

async function call(c, event, ...args) {
  const reply = await c.socket.timeout(limit).emitWithAck(event, ...args);
  c.log.push(['ack', event, reply]);
  return reply;
}

async function scenario() {
  const mallory = client('mallory', { token: 'guess' });
  await settled(mallory);

  const [ada, bob, cy] = ['ada', 'bob', 'cy'].map((name) => client(name, { token }));
  await Promise.all([ada, bob, cy].map(settled));

  // Login, kept in the session.
  await call(ada, 'join', 'lobby');                          // log in first
  await call(ada, 'login', 'ada');
  await call(ada, 'login', 'ada2');                          // already logged in
  await call(bob, 'login', 'bob');
  await call(cy, 'login', 'ada');                            // nick taken
  await call(cy, 'login', '');                               // bad nick
  await call(cy, 'login', 'cy');
  await call(cy, 'whoami');

  // Rooms: presence to the others, messages to the room but the sender.
  await call(ada, 'join', 'lobby');
  await call(bob, 'join', 'lobby');                          // ada hears bob
  await call(cy, 'join', 'games');
  await call(ada, 'say', { room: 'lobby', text: 'hello lobby' });   // bob only
  await call(cy, 'say', { room: 'lobby', text: 'psst' });    // cy is not in lobby
  await call(cy, 'say', { room: 'games', text: 'anyone?' }); // nobody else in games

  // Private messages by nick.
  await call(bob, 'dm', { to: 'cy', text: 'hi cy' });
  await call(bob, 'dm', { to: 'zed', text: 'hello?' });      // no such user

  await call(bob, 'leave', 'lobby');                         // ada hears it
  await call(bob, 'leave', 'lobby');                         // not in lobby any more
  await call(ada, 'say', { room: 'lobby', text: 'alone now' });     // nobody
  await call(bob, 'join', 'lobby');
  await call(cy, 'join', 'lobby');                           // ada and bob hear cy

  // Disconnect cleanup: presence in each room, and the nick is free again.
  await call(ada, 'whoami');                                 // what ada was sent has arrived
  const heard = [next(bob, 'presence'), next(cy, 'presence')];
  ada.socket.disconnect();
  await Promise.all(heard);
  const dan = client('dan', { token });
  await settled(dan);
  await call(dan, 'login', 'ada');
  await call(bob, 'dm', { to: 'ada', text: 'is that you?' });   // dan gets it

  // A last round trip each: whatever was sent to a client before is in its log.
  for (const c of [bob, cy, dan]) await call(c, 'whoami');
  const logs = Object.fromEntries(
    [mallory, ada, bob, cy, dan].map((c) => [c.name, structuredClone(c.log)]));
  for (const c of [bob, cy, dan]) c.socket.disconnect();
  return logs;
}

const watchdog = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: `no end within ${limit * 3} ms` })}\n`);
  process.exit(1);
}, limit * 3);

try {
  const logs = await scenario();
  process.stdout.write(`${JSON.stringify({ logs })}\n`);
  clearTimeout(watchdog);
  process.exit(0);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ error: String(error) })}\n`);
  process.exit(1);
}
