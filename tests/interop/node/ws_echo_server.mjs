// A scripted `ws` server for tether's interop tests (see tests/interop/peers.py).
//
// Usage: node ws_echo_server.mjs ['{"perMessageDeflate": ..., "protocols": [...]}']
//
//   perMessageDeflate  false (default), true, or ws's perMessageDeflate options;
//                      threshold defaults to 0 so that every message is compressed
//   protocols          subprotocols we accept, in our order of preference
//
// Listens on 127.0.0.1, port 0, and writes JSON lines on stdout:
//   {"event": "listening", "port": N}                      once, first
//   {"event": "open", "protocol": "...", "offer": "...", "extensions": "..."}
//       per connection; offer is the client's Sec-WebSocket-Extensions request
//       header (null if absent), extensions that of our 101 response
//   {"event": "close", "code": N, "reason": "..."}          the close frame received
// It exits when stdin closes, so that it never outlives the test that started it.
import { WebSocketServer } from 'ws';

const options = JSON.parse(process.argv[2] ?? '{}');

function deflateOptions(value) {
  if (!value) return false;
  return { threshold: 0, ...(value === true ? {} : value) };
}

function report(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 8 * 1024 * 1024,
  perMessageDeflate: deflateOptions(options.perMessageDeflate),
  handleProtocols: (offered) => (options.protocols ?? []).find((p) => offered.has(p)) ?? false,
});

let responseExtensions = null;
server.on('headers', (headers) => {
  const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
  responseExtensions = line ? line.slice(line.indexOf(':') + 1).trim() : null;
});

function runCommand(ws, text) {
  if (text.startsWith('cmd:close ')) {
    const [, code, ...reason] = text.split(' ');
    ws.close(Number(code), reason.join(' '));
  } else if (text === 'cmd:fragments') {
    ws.send('frag-', { fin: false });
    ws.send('ment', { fin: false });
    ws.send('ed', { fin: true });
    ws.send(Buffer.from([0, 1]), { fin: false });
    ws.send(Buffer.from([2]), { fin: true });
  } else if (text === 'cmd:ping') {
    const payload = Buffer.from('from-ws');
    const onPong = (data) => {
      if (!data.equals(payload)) return;
      ws.off('pong', onPong);
      ws.send('cmd:pong-received');
    };
    ws.on('pong', onPong);
    ws.ping(payload);
  } else {
    return false;
  }
  return true;
}

server.on('connection', (ws, request) => {
  const offer = request.headers['sec-websocket-extensions'] ?? null;
  report({ event: 'open', protocol: ws.protocol, offer, extensions: responseExtensions });
  ws.on('message', (data, isBinary) => {
    if (!isBinary && runCommand(ws, data.toString())) return;
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => report({ event: 'close', code, reason: reason.toString() }));
});

server.on('listening', () => report({ event: 'listening', port: server.address().port }));

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
