'use strict';
// Smoke test for any peer (or corecast): echo and broadcast over real sockets.
//
//   node smoke.js ws://127.0.0.1:9001
//
// Checks that /echo returns a text and a binary message unchanged (type included), and
// that in /broadcast/<fresh room> each of 3 members receives every member's message,
// its own included. Prints "smoke: ok" and exits 0, or says what went wrong and exits 1.

const { WebSocket } = require('ws');

const base = (process.argv[2] || 'ws://127.0.0.1:9001').replace(/\/$/, '');
const deadline = setTimeout(() => fail('timed out after 10 s'), 10000);

function fail(why) {
  console.error(`smoke: FAILED: ${why}`);
  process.exit(1);
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Resolves with the next `count` messages on `ws` as [{ text, binary }].
function collect(ws, count) {
  return new Promise((resolve) => {
    const got = [];
    ws.on('message', (data, isBinary) => {
      got.push({ text: data.toString('latin1'), binary: isBinary });
      if (got.length === count) resolve(got);
    });
  });
}

async function checkEcho() {
  const ws = await open(`${base}/echo`);
  const replies = collect(ws, 2);
  ws.send('hello, echo');
  ws.send(Buffer.from([0, 1, 2, 255]), { binary: true });
  const [text, binary] = await replies;
  if (text.text !== 'hello, echo' || text.binary) fail(`echo text came back as ${JSON.stringify(text)}`);
  if (binary.text !== '\x00\x01\x02\xff' || !binary.binary) fail(`echo binary came back as ${JSON.stringify(binary)}`);
  ws.close(1000);
}

async function checkBroadcast() {
  const room = `smoke-${process.pid}-${Date.now()}`;
  const members = await Promise.all([0, 1, 2].map(() => open(`${base}/broadcast/${room}`)));
  const inboxes = members.map((ws) => collect(ws, members.length));
  // A server may add a member to its room just after sending 101: give it a moment.
  await new Promise((r) => setTimeout(r, 200));
  members.forEach((ws, i) => ws.send(`from member ${i}`));
  const received = await Promise.all(inboxes);
  received.forEach((msgs, i) => {
    const texts = msgs.map((m) => m.text).sort();
    const want = members.map((_, j) => `from member ${j}`);
    if (JSON.stringify(texts) !== JSON.stringify(want)) {
      fail(`member ${i} received ${JSON.stringify(texts)}, wanted ${JSON.stringify(want)}`);
    }
  });
  members.forEach((ws) => ws.close(1000));
}

(async () => {
  await checkEcho();
  await checkBroadcast();
  clearTimeout(deadline);
  console.log(`smoke: ok (${base}: echo text+binary, broadcast 3 members)`);
})().catch((e) => fail(e.message || String(e)));
