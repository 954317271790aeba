// Official socket.io-client 4.8 sockets spread over the nodes of a tether
// cluster (tests/realtime/test_redis.py runs it; tests/realtime/redis_node.py
// is the server).
//
// Usage: node redis_sio_clients.mjs '{"urls": [...], "room": "r", "user": "u"}'
//
// Opens one websocket client per URL, each joining "room" once connected, and
// prints one JSON line per observation on stdout:
//   {"ready": i, "sid": ...}                 client i connected and joined
//   {"client": i, "event": e, "args": [...]}  client i received an event
//   {"ack": id, "result": ...}                the reply to a command
// Commands come on stdin, one JSON line each: {"id": n, "client": i, "emit": [event, ...args]}
// (emitted with an ack; the reply is printed). The script exits when stdin closes.
import readline from 'node:readline';
import { io } from 'socket.io-client';

const config = JSON.parse(process.argv[2]);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const sockets = config.urls.map((url, i) => {
  const socket = io(url, {
    forceNew: true,
    reconnection: false,
    transports: ['websocket'],
    auth: { user: config.user },
  });
  socket.on('connect', () => {
    socket.emit('join', config.room, () => print({ ready: i, sid: socket.id }));
  });
  socket.onAny((event, ...args) => print({ client: i, event, args }));
  socket.on('question', (callback) => callback(`node-${i}`));
  socket.on('connect_error', (error) => print({ client: i, event: 'connect_error', args: [error.message] }));
  return socket;
});

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const { id, client, emit } = JSON.parse(line);
  sockets[client].timeout(10000).emit(...emit, (error, result) => {
    print({ ack: id, result: error ? { error: error.message } : result });
  });
});
lines.on('close', () => process.exit(0));
