// A scripted `ws` client for tether's interop tests: runs an exchange against a
// server that follows tests/interop/peers.py's script and checks every answer.
//
// Usage: node ws_client.mjs URL ['{"perMessageDeflate": ..., "protocols": [...],
//                                  "close": "client" | "server", "varied": true}']
//
//   perMessageDeflate  false (default), true, or ws's perMessageDeflate options
//                      (threshold defaults to 0: every message is compressed)
//   protocols          subprotocols to offer
//   close              "client": we close with 4002 "ciao ✓"; "server" (default):
//                      we ask the server to close with 4001 "bye"
//   varied             also exchange many varied messages (compression contexts)
//
// Writes one JSON line per step on stdout, {"step": ..., "ok": true|false, ...},
// and exits 0 only if every step passed (1 on a mismatch, 2 on a timeout).
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';

const url = process.argv[2];
const options = JSON.parse(process.argv[3] ?? '{}');
let failures = 0;

function report(step, ok, extra = {}) {
  if (!ok) failures += 1;
  process.stdout.write(`${JSON.stringify({ step, ok, ...extra })}\n`);
}

setTimeout(() => {
  report('timeout', false);
  process.exit(2);
}, options.timeoutMs ?? 20000).unref();

function deflateOptions(value) {
  if (!value) return false;
  return { threshold: 0, ...(value === true ? {} : value) };
}

const ws = new WebSocket(url, options.protocols ?? [], {
  perMessageDeflate: deflateOptions(options.perMessageDeflate),
  maxPayload: 8 * 1024 * 1024,
});

// Incoming messages, read in order with next().
const inbox = [];
const readers = [];
ws.on('message', (data, isBinary) => {
  const message = { data, isBinary };
  const reader = readers.shift();
  if (reader) reader(message);
  else inbox.push(message);
});
const next = () =>
  inbox.length > 0 ? Promise.resolve(inbox.shift()) : new Promise((r) => readers.push(r));

let closing = false;
const closed = new Promise((resolve) => {
  ws.on('close', (code, reason) => {
    const got = { code, reason: reason.toString() };
    if (closing) return resolve(got);
    // The server closed in the middle of the script: fail now, not at the timeout.
    report('unexpected-close', false, got);
    process.exit(1);
  });
});
let responseExtensions = null;
ws.on('upgrade', (response) => {
  responseExtensions = response.headers['sec-websocket-extensions'] ?? null;
});
ws.on('error', (error) => {
  report('error', false, { message: error.message });
  process.exit(1);
});

function same(message, expected) {
  const isBinary = typeof expected !== 'string';
  const want = isBinary ? expected : Buffer.from(expected);
  return message.isBinary === isBinary && message.data.equals(want);
}

async function echo(step, messages) {
  for (const expected of messages) {
    ws.send(expected, { binary: typeof expected !== 'string' });
    const message = await next();
    if (!same(message, expected)) {
      return report(step, false, { isBinary: message.isBinary, length: message.data.length });
    }
  }
  report(step, true);
}

// Deterministic pseudo-random data (xorshift32), so that failures reproduce.
let seed = 2463534242;
function random() {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const words = ['tether', 'socket', 'frame', 'deflate', 'héllo', 'wörld', '日本語', '🚀'];
const text = (n) => Array.from({ length: n }, () => words[Math.floor(random() * words.length)]).join(' ');
const bytes = (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));

// Like varied_messages in conftest.py: back-references across messages and
// repeats 2 KiB apart, so that context takeover and window sizes matter.
function variedMessages() {
  const messages = [];
  for (let i = 0; i < 120; i += 1) {
    const kind = i % 4;
    if (kind === 0) messages.push(text(1 + Math.floor(random() * 300)));
    else if (kind === 1) messages.push(bytes(Math.floor(random() * 2000)));
    else if (kind === 2) messages.push(messages[Math.floor(random() * messages.length)]);
    else {
      const block = bytes(2048);
      messages.push(Buffer.concat([block, Buffer.from('-'), block]));
    }
  }
  return messages;
}

async function fragmented() {
  // A text message split inside the two bytes of "é", with a ping between
  // two of its frames (control frames may interleave, RFC 6455 §5.4).
  const pong = new Promise((resolve) => ws.once('pong', resolve));
  const cde = Buffer.from('cdé');
  ws.send('ab', { fin: false });
  ws.send(cde.subarray(0, 3), { binary: false, fin: false });
  ws.ping(Buffer.from('between-fragments'));
  ws.send(Buffer.concat([cde.subarray(3), Buffer.from('f')]), { binary: false, fin: true });
  ws.send(Buffer.from([1]), { fin: false });
  ws.send(Buffer.alloc(0), { fin: false });
  ws.send(Buffer.from([2, 3]), { fin: true });
  const ok1 =
    same(await next(), 'abcdéf') &&
    same(await next(), Buffer.from([1, 2, 3])) &&
    (await pong).toString() === 'between-fragments';
  ws.send('cmd:fragments');
  const ok2 = same(await next(), 'frag-mented') && same(await next(), Buffer.from([0, 1, 2]));
  report('fragmented', ok1 && ok2, { clientFragments: ok1, serverFragments: ok2 });
}

async function ping() {
  const payload = Buffer.from('from-ws-client');
  const pong = new Promise((resolve) => ws.once('pong', resolve));
  ws.ping(payload);
  const clientPing = (await pong).equals(payload);
  ws.send('cmd:ping');
  const serverPing = same(await next(), 'cmd:pong-received');
  report('ping', clientPing && serverPing, { clientPing, serverPing });
}

async function close() {
  const expected =
    options.close === 'client' ? { code: 4002, reason: 'ciao ✓' } : { code: 4001, reason: 'bye' };
  closing = true;
  if (options.close === 'client') ws.close(expected.code, expected.reason);
  else ws.send(`cmd:close ${expected.code} ${expected.reason}`);
  // The close frame we received: the server's own, or its echo of ours, which
  // needs the same code but may drop the reason (RFC 6455 §5.5.1).
  const got = await closed;
  const ok =
    got.code === expected.code && (options.close === 'client' || got.reason === expected.reason);
  report('close', ok, got);
}

ws.on('open', async () => {
  report('open', true, { protocol: ws.protocol, extensions: responseExtensions });
  await echo('text', ['héllo wörld ✓ 🚀', '']);
  await echo('binary', [Buffer.from([0, 255, 128, 1]), Buffer.alloc(0)]);
  await echo('large', ['tether rocks '.repeat(120000), randomBytes(1024 * 1024)]);
  await fragmented();
  await ping();
  if (options.varied) await echo('varied', variedMessages());
  await close();
  process.exit(failures === 0 ? 0 : 1);
});
