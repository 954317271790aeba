// Node.js ws peer: `node ws_server.mjs PORT` (protocol: _common.py in this folder).
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const MAX_SIZE = 4 * 1024 * 1024;
const FANOUT_PAYLOAD = Buffer.alloc(64, 'x');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  maxPayload: MAX_SIZE,
});

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.length >= 6 && data.toString('latin1', 0, 6) === 'fanout') {
      for (const other of wss.clients) {
        if (other !== ws && other.readyState === 1) other.send(FANOUT_PAYLOAD);
      }
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});

wss.on('listening', () => process.stdout.write('ready\n'));
