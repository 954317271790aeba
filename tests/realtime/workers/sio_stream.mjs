// One official socket.io-client 4.8 socket (default transports, reconnection
// on) receiving a stream of 100 events while the worker that holds its session
// is killed (tests/realtime/workers/test_supervisor.py drives it).
//
// Usage: node sio_stream.mjs '{"url": "http://127.0.0.1:PORT", "count": 100, "pause_at": 30}'
//
// The consumer joins room "stream"; a producer socket, on another worker than
// the consumer's, asks the server to emit "tick" n to the room for n = 1..count,
// one at a time. Prints JSON lines on stdout:
//   {"consumer": pid, "producer": pid}   the workers holding each session
//   {"paused": n}                       the consumer got n; the producer waits for
//                                       {"resume": true} on stdin (kill the worker now)
//   {"done": [...], "recovered": bool}  every tick the consumer got, in order, and
//                                       whether its reconnection recovered the session
//   {"failed": message}
import readline from 'node:readline';
import { io } from 'socket.io-client';

const config = JSON.parse(process.argv[2]);
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const received = [];
const waiters = [];
let recovered = false;
let resume;
const resumed = new Promise((resolve) => { resume = resolve; });

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => { if (JSON.parse(line).resume) resume(); });
lines.on('close', () => process.exit(0));

function untilReceived(n) {
  if (received.length >= n) return Promise.resolve();
  return new Promise((resolve) => waiters.push([n, resolve]));
}

function connected(options) {
  return new Promise((resolve, reject) => {
    const socket = io(config.url, { forceNew: true, ...options });
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function main() {
  const consumer = await connected({});
  consumer.on('tick', (n) => {
    received.push(n);
    for (const [at, resolve] of waiters) if (received.length >= at) resolve();
  });
  consumer.on('connect', () => { if (consumer.recovered) recovered = true; });
  const { pid: consumerPid } = await consumer.timeout(10000).emitWithAck('join', 'stream');
  let producer;
  let producerPid;
  for (let tries = 0; tries < 50; tries += 1) {
    producer = await connected({ reconnection: false });
    ({ pid: producerPid } = await producer.timeout(10000).emitWithAck('join', 'producers'));
    if (producerPid !== consumerPid) break;
    producer.disconnect();
  }
  if (producerPid === consumerPid) throw new Error('every producer landed on the consumer\'s worker');
  print({ consumer: consumerPid, producer: producerPid });
  for (let n = 1; n <= config.count; n += 1) {
    await producer.timeout(10000).emitWithAck('tick', 'stream', n);
    if (n === config.pause_at) {
      await untilReceived(n);
      print({ paused: n });
      await resumed;
    }
  }
  await Promise.race([
    untilReceived(config.count),
    new Promise((resolve) => { setTimeout(resolve, 30000); }),
  ]);
  print({ done: received, recovered });
}

main().catch((error) => print({ failed: error.message }));
