// The official Socket.IO 4.8 server, scripted for tether's realtime client tests
// (tests/realtime/test_client_node.py).
//
// Usage: node socketio_server.mjs [msgpack]
//
// With "msgpack", both servers use socket.io-msgpack-parser.
//
// Starts two servers on 127.0.0.1, port 0 each, and writes one JSON line on
// stdout: {"event": "listening", "port": N, "recoveryPort": M}.
//   port          connection state recovery off (events carry no offset)
//   recoveryPort  connectionStateRecovery on (every stored event carries its
//                 offset as its last argument, CONNECT replies carry a pid)
// Both accept polling and websocket, with short heartbeats so that a test
// waits at most a few hundred milliseconds for one.
//
// Namespaces and events (the same on both servers):
//   "/" and "/chat"
//     echo(...args)              emits "echo" back with the same arguments
//     echo_ack(...args, cb)      acknowledges with the same arguments
//     ask(...args)               emits "question" with the arguments and an ack
//                                callback; emits "answer" with what the client acked
//     whoami(cb)                 acknowledges with {sid, nsp, transport, auth, header}
//                                (header: the X-Tether-Test request header, or null)
//     kick()                     disconnects this socket from the namespace (DISCONNECT)
//     drop()                     closes the Engine.IO connection (the client reconnects)
//     drop_then_emit(...args)    closes the Engine.IO connection, then emits "missed"
//                                once per argument to this socket's room: the client
//                                misses them, and gets them back on recovery
//   Once upgraded from polling to websocket, each socket gets "upgraded" with
//   the new transport's name.
//   "/private"  a middleware refuses any auth but {token: "secret"}, with an
//               error whose message is "not authorized" and data {reason: "bad token"}
// It exits when stdin closes, so that it never outlives the test that started it.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const HEARTBEAT = { pingInterval: 300, pingTimeout: 400 };
const PARSER =
  process.argv[2] === 'msgpack' ? { parser: (await import('socket.io-msgpack-parser')).default } : {};

function handlers(io, socket) {
  socket.on('echo', (...args) => socket.emit('echo', ...args));
  socket.on('echo_ack', (...args) => {
    const cb = args.pop();
    cb(...args);
  });
  socket.on('ask', (...args) => {
    socket.emit('question', ...args, (...answer) => socket.emit('answer', ...answer));
  });
  socket.on('whoami', (cb) =>
    cb({
      sid: socket.id,
      nsp: socket.nsp.name,
      transport: socket.conn.transport.name,
      auth: socket.handshake.auth,
      header: socket.handshake.headers['x-tether-test'] ?? null,
    }),
  );
  socket.on('kick', () => socket.disconnect());
  socket.on('drop', () => socket.conn.close());
  socket.on('drop_then_emit', (...args) => {
    const sid = socket.id;
    socket.conn.close();
    // The Engine.IO socket is closing: these are stored (with their offset)
    // but not delivered.
    for (const arg of args) io.of(socket.nsp.name).to(sid).emit('missed', arg);
  });
  // The upgrade may be over before the namespace is connected.
  const announce = () => socket.emit('upgraded', socket.conn.transport.name);
  if (socket.conn.upgraded) announce();
  else socket.conn.once('upgrade', announce);
}

function start(options) {
  const httpServer = createServer();
  const io = new Server(httpServer, { ...HEARTBEAT, ...PARSER, ...options });
  for (const name of ['/', '/chat']) {
    io.of(name).on('connection', (socket) => handlers(io, socket));
  }
  const priv = io.of('/private');
  priv.use((socket, next) => {
    if (socket.handshake.auth && socket.handshake.auth.token === 'secret') return next();
    const err = new Error('not authorized');
    err.data = { reason: 'bad token' };
    next(err);
  });
  priv.on('connection', (socket) => handlers(io, socket));
  return new Promise((resolve) => {
    httpServer.listen(0, '127.0.0.1', () => resolve(httpServer.address().port));
  });
}

const port = await start({});
const recoveryPort = await start({
  connectionStateRecovery: { maxDisconnectionDuration: 60 * 1000, skipMiddlewares: true },
});
process.stdout.write(`${JSON.stringify({ event: 'listening', port, recoveryPort })}\n`);

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
