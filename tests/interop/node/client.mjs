// A WebSocket client on a Node.js library, remote-controlled by tether's
// interop tests (tests/interop/peer_clients.py drives it; the server it talks
// to follows the script described in tests/interop/peers.py).
//
// Usage: node client.mjs LIBRARY URL ['{"deflate": ..., "protocols": [...]}']
//
//   LIBRARY    "ws" or "websocket-node" (the npm package `websocket`)
//   deflate    false (default), true, or ws's perMessageDeflate options
//              (threshold defaults to 0: every message is compressed);
//              WebSocket-Node has no permessage-deflate and ignores it
//   protocols  subprotocols to offer
//
// Commands, one JSON object per line on stdin (binary data as hex):
//   {"op": "send", "text": "..."} or {"op": "send", "hex": "..."}
//   {"op": "fragments", "binary": false, "parts": [{"hex": "..."}, {"ping": "..."}, ...]}
//       one message as one frame per {"hex"} part (split anywhere, even inside a
//       UTF-8 sequence), with a ping frame sent where a {"ping"} part stands
//   {"op": "ping", "hex": "..."}
//   {"op": "close", "code": N, "reason": "..."}
// Events, one JSON object per line on stdout, in the order they happened:
//   {"event": "open", "protocol": "..." | null, "extensions": "..." | null}
//   {"event": "message", "text": "..."} or {"event": "message", "hex": "..."}
//   {"event": "pong", "hex": "..."}
//   {"event": "close", "code": N, "reason": "..."}   the close frame received
//   {"event": "error", "message": "..."}
// It exits when stdin closes, so that it never outlives the test that started it.
import readline from 'node:readline';
import websocketNode from 'websocket';
import { WebSocket } from 'ws';

const [library, url, optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson ?? '{}');
const MAX_SIZE = 8 * 1024 * 1024;

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function data(value, isBinary) {
  return isBinary ? { hex: Buffer.from(value).toString('hex') } : { text: value.toString() };
}

// Each library behind the same few calls: send(buffer, isBinary),
// frame(buffer, isBinary, first, fin), ping(buffer), close(code, reason).
function openWs() {
  const deflate = options.deflate
    ? { threshold: 0, ...(options.deflate === true ? {} : options.deflate) }
    : false;
  const ws = new WebSocket(url, options.protocols ?? [], {
    perMessageDeflate: deflate,
    maxPayload: MAX_SIZE,
  });
  let extensions = null;
  ws.on('upgrade', (response) => {
    extensions = response.headers['sec-websocket-extensions'] ?? null;
  });
  ws.on('open', () => print({ event: 'open', protocol: ws.protocol || null, extensions }));
  ws.on('message', (value, isBinary) => print({ event: 'message', ...data(value, isBinary) }));
  ws.on('pong', (value) => print({ event: 'pong', hex: value.toString('hex') }));
  ws.on('close', (code, reason) => print({ event: 'close', code, reason: reason.toString() }));
  ws.on('error', (error) => print({ event: 'error', message: error.message }));
  return {
    send: (buffer, isBinary) => ws.send(buffer, { binary: isBinary }),
    frame: (buffer, isBinary, first, fin) => ws.send(buffer, { binary: isBinary, fin }),
    ping: (buffer) => ws.ping(buffer),
    close: (code, reason) => ws.close(code, reason),
  };
}

function openWebsocketNode() {
  const { client: Client, frame: Frame } = websocketNode;
  const client = new Client({
    maxReceivedFrameSize: MAX_SIZE,
    maxReceivedMessageSize: MAX_SIZE,
    fragmentOutgoingMessages: false,
  });
  let connection = null;
  const pending = [];
  client.on('connectFailed', (error) => print({ event: 'error', message: error.message }));
  client.on('connect', (conn) => {
    connection = conn;
    const extensions = client.response.headers['sec-websocket-extensions'] ?? null;
    print({ event: 'open', protocol: conn.protocol || null, extensions });
    conn.on('message', (m) =>
      print({ event: 'message', ...(m.type === 'utf8' ? { text: m.utf8Data } : data(m.binaryData, true)) }),
    );
    conn.on('pong', (value) => print({ event: 'pong', hex: value.toString('hex') }));
    conn.on('close', (code, reason) => print({ event: 'close', code, reason }));
    conn.on('error', (error) => print({ event: 'error', message: error.message }));
    for (const call of pending.splice(0)) call();
  });
  client.connect(url, options.protocols ?? []);
  const later = (call) => (connection ? call() : pending.push(call));
  return {
    send: (buffer, isBinary) =>
      later(() => (isBinary ? connection.sendBytes(buffer) : connection.sendUTF(buffer.toString()))),
    // WebSocket-Node fragments only by size; these frames are built as its
    // own fragmentAndSend builds them.
    frame: (buffer, isBinary, first, fin) =>
      later(() => {
        const frame = new Frame(connection.maskBytes, connection.frameHeader, connection.config);
        frame.opcode = first ? (isBinary ? 0x02 : 0x01) : 0x00;
        frame.fin = fin;
        frame.binaryPayload = buffer;
        connection.sendFrame(frame);
      }),
    ping: (buffer) => later(() => connection.ping(buffer)),
    close: (code, reason) => later(() => connection.close(code, reason)),
  };
}

const peer = library === 'ws' ? openWs() : library === 'websocket-node' ? openWebsocketNode() : null;
if (peer === null) {
  print({ event: 'error', message: `unknown library ${library}` });
  process.exit(1);
}

function run(command) {
  if (command.op === 'send') {
    const isBinary = 'hex' in command;
    peer.send(isBinary ? Buffer.from(command.hex, 'hex') : Buffer.from(command.text), isBinary);
  } else if (command.op === 'fragments') {
    const frames = command.parts.filter((part) => 'hex' in part);
    let index = 0;
    for (const part of command.parts) {
      if ('ping' in part) {
        peer.ping(Buffer.from(part.ping, 'hex'));
        continue;
      }
      peer.frame(Buffer.from(part.hex, 'hex'), command.binary, index === 0, index === frames.length - 1);
      index += 1;
    }
  } else if (command.op === 'ping') {
    peer.ping(Buffer.from(command.hex, 'hex'));
  } else if (command.op === 'close') {
    peer.close(command.code, command.reason);
  } else {
    print({ event: 'error', message: `unknown command ${command.op}` });
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => run(JSON.parse(line)));
lines.on('close', () => process.exit(0));
