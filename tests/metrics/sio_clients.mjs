// Official socket.io-client sockets for tests/metrics/test_realtime.py.
//
// Usage: node sio_clients.mjs '{"url": "http://127.0.0.1:PORT", "polling": P, "websocket": W}'
//
// Opens P clients with the default transports (long-polling, then the upgrade
// to a WebSocket) and W WebSocket-only clients. Each, once connected (and, for
// the first kind, upgraded), emits "hello" with an ack and prints
//   {"ready": i, "transport": name, "ack": reply}
// Every event a client receives is printed as {"client": i, "event": e, "args": [...]};
// "question" is acknowledged with "answer". Exits when stdin closes.
import readline from 'node:readline';
import { io } from 'socket.io-client';

const config = JSON.parse(process.argv[2]);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const kinds = [
  ...Array(config.polling).fill(['polling', 'websocket']),
  ...Array(config.websocket).fill(['websocket']),
];
kinds.forEach((transports, i) => {
  const socket = io(config.url, { forceNew: true, reconnection: false, transports });
  const hello = () => socket.emit('hello', i, (reply) => {
    print({ ready: i, transport: socket.io.engine.transport.name, ack: reply });
  });
  socket.on('connect', () => {
    if (socket.io.engine.transport.name === 'websocket') hello();
    else socket.io.engine.once('upgrade', hello);
  });
  socket.onAny((event, ...args) => print({ client: i, event, args }));
  socket.on('question', (callback) => callback('answer'));
  socket.on('connect_error', (error) => print({ client: i, event: 'connect_error', args: [error.message] }));
});

readline.createInterface({ input: process.stdin }).on('close', () => process.exit(0));
