#!/usr/bin/env python3
"""TLS cost, measured: echo throughput and server CPU per message over wss:// and ws://, for
corecast and for the tokio-tungstenite peer serving TLS itself (tokio-rustls), with the same
client (loadgen) in the same run; CPU per broadcast delivery (frames encoded once, encrypted
per member); and idle memory per connection over wss:// and ws://.

    benches/tls.py                     3 repetitions, 5 s runs, 2,000 idle connections
    benches/tls.py --quick             1 repetition, 2 s runs, 1,000 idle connections
    benches/tls.py --tests echo --servers corecast-ws --baseline OTHER_BUILD --reps 5
                                       plain echo only, this build against another
    benches/tls.py --help

Every server runs alone, pinned to one core (corecast with --workers 1), loadgen pinned to
another, closed loop (one message in flight per connection, 100 x 512 B by default). The
servers take turns within each repetition, so a noisy phase of a shared machine hits them
alike; the report is the median. CPU per message is the server's user+system time between
the first of loadgen's progress lines in the traffic phase and the last one that saw new
messages (handshakes, drain and closes excluded), divided by the messages received meanwhile;
msgs/s is loadgen's own figure for its measured window. The broadcast run is open loop, so its
deliveries/s is the offered rate when a server keeps up. Idle memory: the server's RSS
with N upgraded connections that have been silent past --rest-after, minus its RSS before,
divided by N.

The certificate is a self-signed one made with openssl (the README's recipe); loadgen trusts
it with --ca. Output: a table on stdout, results in $CARGO_TARGET_DIR/tls-bench/results.json
(target/ by default) and every run's loadgen report and log beside it.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET
PEERS_TARGET = TARGET / "peers" if "CARGO_TARGET_DIR" in os.environ else ROOT / "benches/peers/target"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRAFFIC = re.compile(r"\[\s*([\d.]+)s\] traffic: .* received (\d+)")

SERVERS = ["corecast-ws", "corecast-wss", "tokio-tungstenite-ws", "tokio-tungstenite-wss"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 repetition, 2 s runs, 1,000 idle connections")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="measured seconds per echo run")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--idle-conns", type=int, default=2000)
    p.add_argument("--room", type=int, default=100, help="members of the broadcast room")
    p.add_argument("--bcast-rate", type=int, default=500,
                   help="publishes/s in the broadcast run (deliveries/s = this x --room)")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--tests", default="echo,bcast,idle", help="which of echo,bcast,idle to run")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--baseline", metavar="BIN",
                   help="another corecast binary (e.g. built from main) measured over ws:// as "
                        "corecast-baseline-ws, to check that plain traffic costs what it did")
    args = p.parse_args()
    if args.quick:
        args.reps, args.duration, args.idle_conns = 1, 2, 1000
    args.servers = args.servers.split(",")
    if args.baseline:
        args.servers.append("corecast-baseline-ws")
    for s in args.servers:
        if s not in SERVERS + ["corecast-baseline-ws"]:
            p.error(f"unknown server {s} (servers: {','.join(SERVERS)})")
    return args


def build():
    run = lambda *cmd, cwd=ROOT, env=None: subprocess.run(cmd, cwd=cwd, check=True, env=env)
    run("cargo", "build", "--release", "--quiet", "--bin", "corecast")
    run("cargo", "build", "--release", "--quiet", "-p", "loadgen")
    env = dict(os.environ, CARGO_TARGET_DIR=str(PEERS_TARGET))
    run("cargo", "build", "--release", "--quiet", "-p", "peer-tokio-tungstenite",
        cwd=ROOT / "benches/peers", env=env)


def make_cert(out):
    """A self-signed P-256 certificate for localhost and 127.0.0.1 (the README's recipe)."""
    cert, key = out / "cert.pem", out / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(name, port, cert, key, cpu, log, baseline=None):
    tls = name.endswith("-wss")
    if name.startswith("corecast"):
        binary = baseline if name == "corecast-baseline-ws" else TARGET / "release/corecast"
        cmd = [str(binary), "--listen", f"127.0.0.1:{port}", "--workers", "1",
               "--stats-interval", "0", "--no-pin"]
    else:
        cmd = [str(PEERS_TARGET / "release/peer-tokio-tungstenite"), "--listen", f"127.0.0.1:{port}"]
    if tls:
        cmd += ["--tls-cert", str(cert), "--tls-key", str(key)]
    proc = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=log, stderr=log)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"tls.py: {name} did not start listening (log {log.name})")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def loadgen(url, cert, args, extra, report, log):
    cmd = [str(TARGET / "release/loadgen"), "--url", url, "--threads", "1",
           "--cpus", str(args.client_cpu), "--progress-interval", "500ms", "--json", str(report)]
    if url.startswith("wss://"):
        cmd += ["--ca", str(cert)]
    return subprocess.Popen(cmd + extra, stdout=log, stderr=subprocess.PIPE, text=True)


def echo_run(name, args, cert, key, out, rep):
    return traffic_run("echo", "/echo", name, args, cert, key, out, rep,
                       ["--conns", str(args.conns), "--size", str(args.size), "--rate", "max",
                        "--warmup", "1s", "--duration", f"{args.duration}s"])


def bcast_run(name, args, cert, key, out, rep):
    """One room of --room members, one publisher at --bcast-rate: open loop, so every server
    does the same deliveries per second and CPU per delivery compares like with like."""
    return traffic_run("bcast", f"/broadcast/bench{rep}", name, args, cert, key, out, rep,
                       ["--mode", "broadcast", "--conns", str(args.room), "--publishers", "1",
                        "--size", "64", "--rate", str(args.bcast_rate),
                        "--warmup", "1s", "--duration", f"{args.duration}s"])


def traffic_run(test, path, name, args, cert, key, out, rep, extra):
    port = free_port()
    run = f"{test}.{name}.{rep}"
    with open(out / f"{run}.server.log", "w") as slog, open(out / f"{run}.loadgen.log", "w") as llog:
        server = start_server(name, port, cert, key, args.server_cpu, slog, args.baseline)
        scheme = "wss" if name.endswith("-wss") else "ws"
        client = loadgen(f"{scheme}://127.0.0.1:{port}{path}", cert, args, extra,
                         out / f"{run}.json", llog)
        samples = []
        for line in client.stderr:
            llog.write(line)
            m = TRAFFIC.search(line)
            if m:
                samples.append((float(m.group(1)), cpu_ticks(server.pid), int(m.group(2))))
        rc = client.wait()
        stop(server)
    if rc != 0 or len(samples) < 3:
        print(f"tls.py: {run}: loadgen exited {rc} with {len(samples)} traffic samples", file=sys.stderr)
        return None
    # The window ends at the last line that saw new messages: after the traffic, lines go on
    # through the drain with nothing new, which would dilute the rate.
    while len(samples) > 2 and samples[-1][2] == samples[-2][2]:
        samples.pop()
    (_, c0, r0), (_, c1, r1) = samples[0], samples[-1]
    # The rate is loadgen's own, over its measured window (warmup excluded).
    rate = json.loads((out / f"{run}.json").read_text())["rate"]["received"]
    return {"msgs_per_s": rate, "cpu_us_per_msg": (c1 - c0) / CLK_TCK / (r1 - r0) * 1e6}


def idle_run(name, args, cert, key, out, rep):
    port = free_port()
    run = f"idle.{name}.{rep}"
    with open(out / f"{run}.server.log", "w") as slog, open(out / f"{run}.loadgen.log", "w") as llog:
        server = start_server(name, port, cert, key, args.server_cpu, slog, args.baseline)
        time.sleep(0.5)
        base = rss_kb(server.pid)
        scheme = "wss" if name.endswith("-wss") else "ws"
        client = loadgen(f"{scheme}://127.0.0.1:{port}/echo", cert, args,
                         ["--conns", str(args.idle_conns), "--size", "64", "--rate", "0",
                          "--connect-rate", "2000", "--connect-timeout", "30s", "--duration", "12s"],
                         out / f"{run}.json", llog)
        rss = None
        for line in client.stderr:
            llog.write(line)
            if rss is None and TRAFFIC.search(line):
                # Every connection is upgraded; past corecast's --rest-after (1 s) they rest.
                time.sleep(5)
                rss = rss_kb(server.pid)
        rc = client.wait()
        stop(server)
    if rss is None:
        print(f"tls.py: {run}: never reached the traffic phase (loadgen exit {rc})", file=sys.stderr)
        return None
    return {"rss_per_conn_b": (rss - base) * 1024 / args.idle_conns}


def median(runs, key):
    values = [r[key] for r in runs if r]
    return statistics.median(values) if values else None


def main():
    args = parse_args()
    out = TARGET / "tls-bench"
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_build:
        build()
    cert, key = make_cert(out)
    results = {name: {"echo": [], "bcast": [], "idle": []} for name in args.servers}
    for rep in range(1, args.reps + 1):
        for name in args.servers if "echo" in args.tests else []:
            print(f"[{time.strftime('%H:%M:%S')}] echo {args.conns}x{args.size}: {name} "
                  f"(rep {rep}/{args.reps})", file=sys.stderr)
            results[name]["echo"].append(echo_run(name, args, cert, key, out, rep))
        for name in args.servers if "bcast" in args.tests else []:
            print(f"[{time.strftime('%H:%M:%S')}] broadcast {args.room} members x "
                  f"{args.bcast_rate}/s: {name} (rep {rep}/{args.reps})", file=sys.stderr)
            results[name]["bcast"].append(bcast_run(name, args, cert, key, out, rep))
        for name in args.servers if "idle" in args.tests else []:
            print(f"[{time.strftime('%H:%M:%S')}] idle {args.idle_conns}: {name} "
                  f"(rep {rep}/{args.reps})", file=sys.stderr)
            results[name]["idle"].append(idle_run(name, args, cert, key, out, rep))
    summary = {name: {"msgs_per_s": median(r["echo"], "msgs_per_s"),
                      "cpu_us_per_msg": median(r["echo"], "cpu_us_per_msg"),
                      "bcast_deliveries_per_s": median(r["bcast"], "msgs_per_s"),
                      "bcast_cpu_us_per_delivery": median(r["bcast"], "cpu_us_per_msg"),
                      "idle_rss_per_conn_b": median(r["idle"], "rss_per_conn_b")}
               for name, r in results.items()}
    fmt = lambda v, spec: "failed" if v is None else format(v, spec)
    print(f"\necho: {args.conns} x {args.size} B closed loop; broadcast: one room of {args.room}, "
          f"{args.bcast_rate} publishes/s of 64 B; idle: {args.idle_conns} connections; "
          f"median of {args.reps}\n")
    print("| server | echo msgs/s | server CPU µs/echo | deliveries/s | server CPU µs/delivery "
          "| idle RSS per connection |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        print(f"| {name} | {fmt(s['msgs_per_s'], ',.0f')} | {fmt(s['cpu_us_per_msg'], '.2f')} | "
              f"{fmt(s['bcast_deliveries_per_s'], ',.0f')} | "
              f"{fmt(s['bcast_cpu_us_per_delivery'], '.2f')} | "
              f"{fmt(s['idle_rss_per_conn_b'], ',.0f')} B |")
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "summary": summary, "runs": results}, indent=2))
    print(f"\nresults: {out / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
