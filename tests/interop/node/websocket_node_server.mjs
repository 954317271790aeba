// A scripted WebSocket-Node server (the npm package `websocket`) for tether's
// interop tests (see tests/interop/peers.py). WebSocket-Node has no
// permessage-deflate, so it never negotiates an extension.
//
// Usage: node websocket_node_server.mjs ['{"protocols": [...]}']
//
//   protocols  subprotocols we accept, in our order of preference
//
// Listens on 127.0.0.1, port 0, and writes the same JSON lines on stdout as
// ws_echo_server.mjs: "listening" once, then "open" and "close" per connection.
// It exits when stdin closes, so that it never outlives the test that started it.
import http from 'node:http';
import websocketNode from 'websocket';

const { server: WebSocketServer, frame: Frame } = websocketNode;
const options = JSON.parse(process.argv[2] ?? '{}');
const MAX_SIZE = 8 * 1024 * 1024;

function report(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const httpServer = http.createServer((request, response) => {
  response.writeHead(404);
  response.end();
});
const server = new WebSocketServer({
  httpServer,
  autoAcceptConnections: false,
  keepalive: false,
  maxReceivedFrameSize: MAX_SIZE,
  maxReceivedMessageSize: MAX_SIZE,
  fragmentOutgoingMessages: false,
});

// One message as explicit frames: WebSocket-Node fragments only by size, so
// these are built as its own fragmentAndSend builds them.
function sendFragments(connection, parts, isBinary) {
  parts.forEach((part, index) => {
    const frame = new Frame(connection.maskBytes, connection.frameHeader, connection.config);
    frame.opcode = index === 0 ? (isBinary ? 0x02 : 0x01) : 0x00;
    frame.fin = index === parts.length - 1;
    frame.binaryPayload = Buffer.from(part);
    connection.sendFrame(frame);
  });
}

function runCommand(connection, text) {
  if (text.startsWith('cmd:close ')) {
    const [, code, ...reason] = text.split(' ');
    connection.close(Number(code), reason.join(' '));
  } else if (text === 'cmd:fragments') {
    sendFragments(connection, ['frag-', 'ment', 'ed'], false);
    sendFragments(connection, [[0, 1], [2]], true);
  } else if (text === 'cmd:ping') {
    const payload = Buffer.from('from-websocket-node');
    const onPong = (data) => {
      if (!data.equals(payload)) return;
      connection.removeListener('pong', onPong);
      connection.sendUTF('cmd:pong-received');
    };
    connection.on('pong', onPong);
    connection.ping(payload);
  } else {
    return false;
  }
  return true;
}

server.on('request', (request) => {
  const protocol = (options.protocols ?? []).find((p) => request.requestedProtocols.includes(p)) ?? null;
  const offer = request.httpRequest.headers['sec-websocket-extensions'] ?? null;
  const connection = request.accept(protocol, request.origin);
  report({ event: 'open', protocol: connection.protocol ?? null, offer, extensions: null });
  connection.on('message', (message) => {
    if (message.type === 'utf8') {
      if (!runCommand(connection, message.utf8Data)) connection.sendUTF(message.utf8Data);
    } else {
      connection.sendBytes(message.binaryData);
    }
  });
  connection.on('close', (code, reason) => report({ event: 'close', code, reason }));
});

httpServer.listen(0, '127.0.0.1', () => report({ event: 'listening', port: httpServer.address().port }));

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
