'use strict';
// Peer server on Node's `ws`, written the way ws's README does it: one http server,
// a WebSocketServer in noServer mode, routing on the upgrade request's path.
//
//   node server.js [--listen HOST:PORT]     (default 127.0.0.1:9001)
//
//   /echo               every text or binary message is sent back to its sender
//   /broadcast/<room>   every message goes to all members of <room>, sender included
//
// Node runs JavaScript on one thread, so this peer is single-threaded like the Rust ones.
// ws's defaults are kept (no permessage-deflate on the server, 100 MiB max payload).

const http = require('node:http');
const { WebSocketServer } = require('ws');

function parseListen(argv) {
  let listen = '127.0.0.1:9001';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--listen' && i + 1 < argv.length) {
      listen = argv[++i];
    } else if (argv[i].startsWith('--listen=')) {
      listen = argv[i].slice('--listen='.length);
    } else {
      console.error(`usage: node server.js [--listen HOST:PORT] (unknown argument ${argv[i]})`);
      process.exit(2);
    }
  }
  const colon = listen.lastIndexOf(':');
  const port = Number(listen.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port)) {
    console.error(`--listen wants HOST:PORT, got ${listen}`);
    process.exit(2);
  }
  return { host: listen.slice(0, colon).replace(/^\[|\]$/g, ''), port };
}

// room name -> Set of the sockets in it; a room disappears with its last member.
const rooms = new Map();

function join(room, ws) {
  let members = rooms.get(room);
  if (!members) {
    members = new Set();
    rooms.set(room, members);
  }
  members.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const member of members) {
      if (member.readyState === member.OPEN) {
        member.send(data, { binary: isBinary });
      }
    }
  });
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0 && rooms.get(room) === members) {
      rooms.delete(room);
    }
  });
}

function echo(ws) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

const wss = new WebSocketServer({ noServer: true });
const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket endpoints: /echo, /broadcast/<room>\n');
});

// Until ws owns the socket, its errors (e.g. a reset during the handshake) are ours.
function onSocketError() {
  this.destroy();
}

server.on('upgrade', (req, socket, head) => {
  socket.on('error', onSocketError);
  const path = new URL(req.url, 'http://localhost').pathname;
  let route;
  if (path === '/echo') {
    route = echo;
  } else if (path.startsWith('/broadcast/') && path.length > '/broadcast/'.length) {
    const room = path.slice('/broadcast/'.length);
    route = (ws) => join(room, ws);
  } else {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  socket.setNoDelay(true);
  socket.removeListener('error', onSocketError);
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => ws.terminate());
    route(ws);
  });
});

const { host, port } = parseListen(process.argv.slice(2));
server.listen(port, host, () => {
  const addr = server.address();
  console.log(`peer-node-ws listening on ${addr.address}:${addr.port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
