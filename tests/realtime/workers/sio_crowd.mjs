// A crowd of official socket.io-client 4.8 sockets with default transports
// (long-polling first, then the upgrade to WebSocket) against `tether run`
// (tests/realtime/workers/test_workers.py drives it).
//
// Usage: node sio_crowd.mjs '{"url": "http://127.0.0.1:PORT", "count": 200, "room": "r"}'
//
// Prints one JSON line per observation on stdout:
//   {"ready": n, "upgraded": n, "pids": {...}}  every socket connected, upgraded to
//        websocket, and joined the room (an emitWithAck: the server's answer names
//        its worker's pid); or {"failed": ...} if one could not
//   {"got": n, "counts": [...]}            every socket got broadcast n; counts[i] is
//        how many times socket i got each broadcast so far ({n: times})
//   {"asked": [...]}                       each socket's emitWithAck("ask") result: the
//        server asked the socket back (a server->client ack) and returned its answer
//   {"transports": [...]}                  each socket's transport name now
// Commands on stdin, one JSON line each: {"shout": n} (socket 0 asks the server to
// broadcast n to the room), {"ask": true}, {"transports": true}. Exits when stdin closes.
import readline from 'node:readline';
import { io } from 'socket.io-client';

const config = JSON.parse(process.argv[2]);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const sockets = [];
const received = [];
let ready = 0;
let upgraded = 0;
const pids = {};

function whenUpgraded(socket) {
  return new Promise((resolve, reject) => {
    const engine = socket.io.engine;
    if (engine.transport.name === 'websocket') return resolve();
    engine.once('upgrade', () => resolve());
    engine.once('upgradeError', (error) => reject(new Error(`upgrade failed: ${error.message}`)));
  });
}

function start(i) {
  return new Promise((resolve, reject) => {
    const socket = io(config.url, { forceNew: true, reconnection: false });
    sockets[i] = socket;
    received[i] = {};
    socket.on('shouted', (n) => {
      received[i][n] = (received[i][n] || 0) + 1;
      if (received[i][n] === 1 && received.every((r) => r[n] >= 1)) {
        print({ got: n, counts: received });
      }
    });
    socket.on('question', (callback) => callback(`answer-${i}`));
    socket.once('connect_error', (error) => reject(new Error(`${i}: ${error.message}`)));
    socket.once('connect', async () => {
      try {
        await whenUpgraded(socket);
        upgraded += 1;
        const joined = await socket.timeout(10000).emitWithAck('join', config.room);
        pids[joined.pid] = (pids[joined.pid] || 0) + 1;
        ready += 1;
        resolve();
      } catch (error) {
        reject(error);
      }
    });
  });
}

const starts = [];
for (let i = 0; i < config.count; i += 1) starts.push(start(i));
Promise.all(starts).then(
  () => print({ ready, upgraded, pids }),
  (error) => print({ failed: error.message, ready, upgraded }),
);

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  const command = JSON.parse(line);
  if (command.shout !== undefined) {
    await sockets[0].timeout(10000).emitWithAck('shout', config.room, command.shout);
  } else if (command.ask) {
    const asked = await Promise.all(
      sockets.map((s) => s.timeout(10000).emitWithAck('ask').catch((e) => ({ error: e.message }))),
    );
    print({ asked });
  } else if (command.transports) {
    print({ transports: sockets.map((s) => s.io.engine.transport.name) });
  }
});
lines.on('close', () => {
  for (const socket of sockets) socket.disconnect();
  process.exit(0);
});
