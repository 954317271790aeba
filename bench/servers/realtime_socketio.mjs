// socket.io on Node for bench/realtime.py: `node realtime_socketio.mjs`.
// The protocol is realtime_tether.py's; every option at socket.io's default
// (perMessageDeflate off, polling and WebSocket both allowed).
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http);

io.on('connection', (socket) => {
  socket.on('echo', (data) => socket.emit('echo', data));
  socket.on('join', () => {
    socket.join('room');
    socket.emit('joined');
  });
  socket.on('fanout', (data) => io.to('room').emit('msg', data));
});

http.listen(0, '127.0.0.1', () => process.stdout.write(`ready ${http.address().port}\n`));
