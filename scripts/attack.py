#!/usr/bin/env python3
"""Hostile load against a running corecast: what one client machine can make the server hold.

Attacks (one per run):
  frames     CONNS connections each send the header of one SIZE-byte binary frame and SENT bytes
             of its payload, then stall for HOLD seconds (nothing more, nothing read).
  fragments  CONNS connections each send a binary message in 1 MiB fragments, SENT bytes in
             all, never the final fragment, then stall.
  flood      CONNS upgrade requests at once (past the server's capacity), then the answers are
             counted: 101, 503, other, none within TIMEOUT.

Meanwhile one well-behaved echo client sends a message every 10 ms and a /healthz probe runs
every 100 ms; both report latency. The server's RSS (from /proc/PID/status, so it must run
on this machine) is printed every second, during the attack and for AFTER seconds after the
attackers leave.

  scripts/attack.py --addr 127.0.0.1:9998 --pid PID frames --conns 200 --size 16000000 --sent 15000000
  scripts/attack.py --addr 127.0.0.1:9998 --pid PID fragments --conns 200 --sent 15000000
  scripts/attack.py --addr 127.0.0.1:9998 --pid PID flood --conns 20500

Only the standard library; loopback only.
"""

import argparse
import base64
import os
import socket
import struct
import sys
import threading
import time

KEY = base64.b64encode(b"corecast-attack!").decode()


def upgrade(addr, path="/echo", timeout=10.0, source=None):
    s = socket.create_connection(addr, timeout=timeout, source_address=source)
    s.sendall(
        (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return s


def read_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("closed before the answer")
        head += chunk
    return head.decode(errors="replace")


def header(opcode_byte, length):
    """A client frame header with mask key zero (the payload then goes as it is)."""
    if length < 126:
        return struct.pack("!BB", opcode_byte, 0x80 | length) + b"\0\0\0\0"
    if length < 65536:
        return struct.pack("!BBH", opcode_byte, 0x80 | 126, length) + b"\0\0\0\0"
    return struct.pack("!BBQ", opcode_byte, 0x80 | 127, length) + b"\0\0\0\0"


def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Probe(threading.Thread):
    """A healthy echo client, or /healthz probes, recording round-trip times."""

    def __init__(self, addr, kind):
        super().__init__(daemon=True)
        self.addr, self.kind = addr, kind
        self.latencies, self.failures, self.stop = [], 0, threading.Event()

    def run(self):
        ws = None
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                if self.kind == "echo":
                    if ws is None:
                        ws = upgrade(self.addr)
                        assert read_head(ws).startswith("HTTP/1.1 101")
                    payload = b"healthy %d" % len(self.latencies)
                    ws.sendall(header(0x81, len(payload)) + payload)
                    got = b""
                    while len(got) < 2 + len(payload):
                        chunk = ws.recv(4096)
                        if not chunk:
                            raise ConnectionError("echo connection closed")
                        got += chunk
                else:
                    s = socket.create_connection(self.addr, timeout=10)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if not read_head(s).startswith("HTTP/1.1 200"):
                        raise ConnectionError("healthz not 200")
                    s.close()
                self.latencies.append((time.monotonic() - start) * 1000)
            except (OSError, AssertionError, ConnectionError):
                self.failures += 1
                ws = None
            time.sleep(0.01 if self.kind == "echo" else 0.1)

    def summary(self):
        return (f"{self.kind}: {len(self.latencies)} ok, {self.failures} failed, "
                f"p50 {percentile(self.latencies, 50):.2f} ms, p99 {percentile(self.latencies, 99):.2f} ms, "
                f"max {max(self.latencies, default=float('nan')):.2f} ms")


def stall(addr, first, chunks, hold, results, index):
    """One attacker: sends `first` then every chunk, then holds the socket open."""
    try:
        s = upgrade(addr, source=(f"127.0.0.{2 + index // 20000}", 0))
        if not read_head(s).startswith("HTTP/1.1 101"):
            results[index] = "refused"
            return
        s.sendall(first)
        for chunk in chunks:
            s.sendall(chunk)
        results[index] = "sent"
    except OSError:
        results[index] = "cut"
        return
    s.settimeout(hold)
    try:
        data = s.recv(64)
        if len(data) >= 4 and data[0] == 0x88:
            results[index] = "closed %d" % struct.unpack("!H", data[2:4])[0]
        elif not data:
            results[index] = "eof"
    except socket.timeout:
        pass
    except OSError:
        results[index] = "cut"
    time.sleep(max(0.0, hold - 0.1))
    s.close()


def sample_rss(pid, seconds, label, stop=None):
    for t in range(int(seconds)):
        if stop is not None and stop():
            return
        value = rss(pid)
        print(f"  {label} t={t:3d}s  RSS {value / 2**20:8.1f} MiB" if value else f"  {label} t={t}s  RSS ?",
              flush=True)
        time.sleep(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", default="127.0.0.1:9998")
    ap.add_argument("--pid", type=int, required=True, help="the server's PID, for its RSS")
    ap.add_argument("--hold", type=float, default=20, help="seconds the attackers stall")
    ap.add_argument("--after", type=float, default=30, help="seconds of RSS samples after they leave")
    ap.add_argument("attack", choices=["frames", "fragments", "flood"])
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--size", type=int, default=16_000_000, help="frames: the frame's payload length")
    ap.add_argument("--sent", type=int, default=15_000_000, help="payload bytes each attacker sends")
    ap.add_argument("--timeout", type=float, default=25, help="flood: seconds to wait for each answer")
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    addr = (host, int(port))

    baseline = rss(args.pid)
    print(f"{args.attack}: {args.conns} connections; server RSS at start {baseline / 2**20:.1f} MiB", flush=True)
    # The probes run in a process of their own, so the attackers' threads cannot delay them
    # (one interpreter lock); they stop and report when the pipe closes.
    stop_r, stop_w = os.pipe()
    prober = os.fork()
    if prober == 0:
        os.close(stop_w)
        # Two hundred runnable attacker threads would otherwise make the probes wait for the
        # CPU scheduler, not for the server; raise their weight where allowed (root).
        try:
            os.nice(-10)
        except OSError:
            pass
        probes = [Probe(addr, "echo"), Probe(addr, "healthz")]
        for p in probes:
            p.start()
        os.read(stop_r, 1)
        for p in probes:
            p.stop.set()
        for p in probes:
            p.join(timeout=15)
            print("  " + p.summary(), flush=True)
        os._exit(0)
    os.close(stop_r)
    time.sleep(0.5)

    if args.attack == "flood":
        answers, sockets = {}, []
        for i in range(args.conns):
            try:
                sockets.append(upgrade(addr, timeout=args.timeout, source=(f"127.0.0.{2 + i // 20000}", 0)))
            except OSError:
                answers["connect failed"] = answers.get("connect failed", 0) + 1
        print(f"  {len(sockets)} requests sent", flush=True)
        deadline = time.monotonic() + args.timeout
        for s in sockets:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                status = read_head(s).split(" ", 2)[1]
            except (OSError, ConnectionError):
                status = "none"
            answers[status] = answers.get(status, 0) + 1
        print("  answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())), flush=True)
        for s in sockets:
            s.close()
    else:
        if args.attack == "frames":
            first = header(0x82, args.size) + bytes(min(args.sent, 1 << 20))
            rest = args.sent - min(args.sent, 1 << 20)
            chunks = [bytes(1 << 20)] * (rest // (1 << 20)) + [bytes(rest % (1 << 20))]
        else:
            frag = bytes(1 << 20)
            first = header(0x02, len(frag)) + frag
            chunks = [header(0x00, len(frag)) + frag] * (args.sent // len(frag) - 1)
        results = [None] * args.conns
        threads = [threading.Thread(target=stall, args=(addr, first, chunks, args.hold, results, i), daemon=True)
                   for i in range(args.conns)]
        for t in threads:
            t.start()
        sample_rss(args.pid, args.hold, "attack", stop=lambda: not any(t.is_alive() for t in threads))
        for t in threads:
            t.join()
        tally = {}
        for r in results:
            tally[r] = tally.get(r, 0) + 1
        print("  attackers: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.items(), key=str)), flush=True)
    print("  attackers gone", flush=True)
    sample_rss(args.pid, args.after, "after")
    final = rss(args.pid)
    os.close(stop_w)
    os.waitpid(prober, 0)
    print(f"  RSS {final / 2**20:.1f} MiB at the end, {(final - baseline) / 2**20:+.1f} MiB from the start", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
