// Official socket.io-client 4.8 clients with DEFAULT transports (long-polling,
// then the WebSocket upgrade) through a load balancer; run by test_haproxy.py and test_nginx.py (through balancer.py)
// against docs/deployment.md's node.py processes.
//
// Usage: node haproxy_clients.mjs '{"url": ..., "count": 200, "room": "r",
//                                   "localAddress": "127.0.0.2", "timeout": ms}'
//
// Every client connects from localAddress (polling through an http.Agent, the
// WebSocket through the localAddress option) and waits for its upgrade; the
// even-numbered ones join the room. Client 0 says "hello" to the room (one
// broadcast from its process); once every member heard it, client 1 (not a
// member) polls the room: an emit with acks from its process, which every
// member answers with its number. Prints one JSON summary line, then exits.
import http from 'node:http';
import { io } from 'socket.io-client';

const config = JSON.parse(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, localAddress: config.localAddress });
const errors = [];
const heard = new Array(config.count).fill(0);
let allHeard;
const everyoneHeard = new Promise((resolve) => { allHeard = resolve; });
const members = () => [...Array(config.count).keys()].filter((i) => i % 2 === 0);

function within(promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), config.timeout);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function open(i) {
  const socket = io(config.url, {
    forceNew: true,
    reconnection: false,
    agent,
    localAddress: config.localAddress,
  });
  socket.on('connect_error', (error) => errors.push(`${i} connect_error ${error.message}`));
  socket.on('disconnect', (reason) => errors.push(`${i} disconnect ${reason}`));
  socket.on('question', (callback) => callback(i));
  socket.on('said', (text) => {
    if (text === 'hello') heard[i] += 1;
    if (members().every((m) => heard[m] >= 1)) allHeard();
  });
  // A failed connection fails the run at once (no waiting for the timeout).
  const connected = new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (error) => reject(new Error(`${i}: ${error.message}`)));
  });
  const upgraded = new Promise((resolve) => {
    socket.io.once('open', () => socket.io.engine.once('upgrade', resolve));
  });
  return { socket, ready: Promise.all([connected, upgraded]) };
}

const clients = [...Array(config.count).keys()].map(open);
const summary = { errors };
try {
  await within(Promise.all(clients.map((c) => c.ready)), 'connect and upgrade');
  summary.ids = clients.map((c) => c.socket.id);
  summary.transports = clients.map((c) => c.socket.io.engine.transport.name);
  summary.joined = await within(
    Promise.all(members().map((i) => clients[i].socket.emitWithAck('join', config.room))),
    'join',
  );
  clients[0].socket.emit('say', config.room, 'hello');
  await within(everyoneHeard, 'every member hears the broadcast');
  summary.answers = await within(
    clients[1].socket.timeout(config.timeout).emitWithAck('poll', config.room),
    'poll',
  );
  summary.heard = heard;
} catch (error) {
  summary.failed = error.message;
}
process.stdout.write(`${JSON.stringify(summary)}\n`);
for (const { socket } of clients) socket.disconnect();
agent.destroy();
process.exit(0);
