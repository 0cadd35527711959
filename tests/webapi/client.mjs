// Drives a corecast server with the WHATWG WebSocket API (Node's built-in client, the same
// API and handshake rules browsers implement). Usage: node --experimental-websocket client.mjs ws://HOST:PORT
// Prints one line per check and exits non-zero on any failure.
const base = process.argv[2];
if (!base) {
  console.error("usage: client.mjs ws://HOST:PORT");
  process.exit(2);
}

function open(path, protocols) {
  return new Promise((resolve, reject) => {
    const ws = protocols ? new WebSocket(base + path, protocols) : new WebSocket(base + path);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error(`could not open ${path}`));
  });
}

function next(ws) {
  return new Promise((resolve, reject) => {
    ws.onmessage = (e) => resolve(e.data);
    ws.onclose = (e) => reject(new Error(`closed ${e.code} while waiting for a message`));
  });
}

function closed(ws) {
  return new Promise((resolve) => {
    ws.onclose = (e) => resolve(e);
  });
}

const checks = [];
function check(name, fn) {
  checks.push([name, fn]);
}

check("subprotocol chat is negotiated", async () => {
  const ws = await open("/echo", ["chat"]);
  if (ws.protocol !== "chat") throw new Error(`protocol ${JSON.stringify(ws.protocol)}`);
  ws.close();
});

check("no subprotocol offered, none answered", async () => {
  const ws = await open("/echo");
  if (ws.protocol !== "") throw new Error(`protocol ${JSON.stringify(ws.protocol)}`);
  ws.close();
});

check("text echoes as text", async () => {
  const ws = await open("/echo", ["chat"]);
  const reply = next(ws);
  ws.send("héllo wörld ✓");
  const got = await reply;
  if (got !== "héllo wörld ✓") throw new Error(`got ${JSON.stringify(got)}`);
  ws.close();
});

check("binary echoes as binary", async () => {
  const ws = await open("/echo");
  const bytes = new Uint8Array(70000).map((_, i) => i % 251);
  const reply = next(ws);
  ws.send(bytes);
  const got = new Uint8Array(await reply);
  if (got.length !== bytes.length || got.some((b, i) => b !== bytes[i])) throw new Error("payload differs");
  ws.close();
});

check("broadcast reaches every member of the room", async () => {
  const a = await open("/broadcast/webapi");
  const b = await open("/broadcast/webapi");
  const toA = next(a);
  const toB = next(b);
  a.send("to the room");
  const [gotA, gotB] = await Promise.all([toA, toB]);
  if (gotA !== "to the room" || gotB !== "to the room") throw new Error(`${gotA} / ${gotB}`);
  a.close();
  b.close();
});

check("close handshake is clean with the client's code", async () => {
  const ws = await open("/echo");
  const done = closed(ws);
  ws.close(4000, "done here");
  const e = await done;
  if (!e.wasClean || e.code !== 4000) throw new Error(`wasClean=${e.wasClean} code=${e.code}`);
});

check("unknown path fails the connection", async () => {
  let opened = false;
  try {
    const ws = await open("/nowhere");
    opened = true;
    ws.close();
  } catch (_) {}
  if (opened) throw new Error("a 404 path opened");
});

let failed = 0;
for (const [name, fn] of checks) {
  try {
    await Promise.race([fn(), new Promise((_, rej) => setTimeout(() => rej(new Error("timeout")), 10000))]);
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
console.log(`webapi: ${checks.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
