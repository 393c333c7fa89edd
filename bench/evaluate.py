"""The paper's evaluation, reproduced in one command: writes docs/evaluation.md and the PNG
plots under docs/figures/.

    python bench/evaluate.py [--quick] [--only sweep,sustained,recovery,effort]

What it measures, side by side on this machine (client, servers and shadows share its cores):
  1. throughput and latency (mean, p99) against the write share (0-100 %), Zipf keys over a
     preloaded key space, 100-byte values, 50 clients, unpipelined and -P 16, for
     persimmon-redis (pool on /dev/shm and on a disk directory), persimmon-redis without
     persistence, and redis-server without persistence, with AOF `always` and `everysec`
     (its AOF on the same disk directory); every measurement visits the servers in turn,
     every other round in the reverse order;
  2. sustained 100 % writes: requests per second and the shadow's lag every second;
  3. recovery time against the dataset size, after SIGKILL, split into its phases, against
     redis-server loading the same data from its AOF and from an RDB file;
  4. memory per key (server + shadow, pool bytes) against redis-server;
  5. the port's lines of code in the paper's categories.

Load generator: resp-benchmark (PyPI; Rust, multi-threaded), because its Lua command generator
makes a read/write mix and Zipf-distributed keys, which redis-benchmark cannot; it reports
the mean and the 99th percentile latency (not the median).  `--quick` (about 10 minutes)
uses a smaller key space, shorter runs and smaller recovery sizes.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))

from machine import busy_jiffies, calibration_line, cpu_seconds, queued_ns  # noqa: E402

SHARES = (0, 10, 25, 50, 75, 100)
SERVERS = ("persimmon", "persimmon-disk", "none", "redis", "redis-aof-always",
           "redis-aof-everysec")
LABEL = {
    "persimmon": "persimmon-redis, pool on /dev/shm (--dir)",
    "persimmon-disk": "persimmon-redis, pool on disk (as the default)",
    "none": "persimmon-redis --persistence none",
    "redis": "redis-server, no persistence",
    "redis-aof-always": "redis-server, AOF always",
    "redis-aof-everysec": "redis-server, AOF everysec",
}
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f} s] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(port: int, *args: str, timeout: float = 600) -> bytes:
    """One RESP command over a raw socket; the raw reply."""
    out = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                break
            if data.startswith(b"$"):
                n = int(data[1:data.index(b"\r\n")])
                if n < 0 or len(data) >= data.index(b"\r\n") + 2 + n + 2:
                    break
    return data


def info(port: int) -> dict[str, str]:
    raw = command(port, "INFO", "everything").decode("utf-8", "replace")
    out = {}
    for line in raw.split("\r\n"):
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def wait_ready(port: int, timeout: float = 900) -> float:
    """Seconds until the server answers PING with PONG (not LOADING)."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        try:
            if command(port, "PING", timeout=5).startswith(b"+PONG"):
                return time.monotonic() - t
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"the server on {port} did not come up")


class Server:
    def __init__(self, kind: str, workdir: str, diskdir: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.dir = (os.path.join(diskdir, f"{kind}-{uuid.uuid4().hex[:8]}")
                    if kind in ("persimmon-disk", "redis-aof-always", "redis-aof-everysec")
                    or kind.startswith("redis") else
                    os.path.join("/dev/shm", f"evaluate-{uuid.uuid4().hex}"))
        os.makedirs(self.dir, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def cmd(self, rdb: bool = False) -> list[str]:
        if self.kind.startswith("redis"):
            c = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                 self.dir, "--save", "", "--dbfilename", "dump.rdb"]
            if self.kind == "redis":
                return c + ["--appendonly", "no"]
            return c + ["--appendonly", "yes", "--appendfsync", self.kind.split("-")[-1]]
        mode = "none" if self.kind == "none" else "persimmon"
        return [sys.executable, "-m", "persimmon_redis", "--port", str(self.port),
                "--persistence", mode, "--dir", self.dir]

    def start(self) -> float:
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        self.proc = subprocess.Popen(self.cmd(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        return wait_ready(self.port)

    def kids(self) -> list[int]:
        if self.proc is None:
            return []
        # (every thread's: a shadow restarted by the supervisor thread is that thread's)
        pids = []
        for task in glob.glob(f"/proc/{self.proc.pid}/task/*/children"):
            try:
                with open(task) as f:
                    pids += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return pids

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def lua_mix(keys: int, share: int) -> str:
    return (f"local k = bench.key({keys}, 'zipfian', 'k'); local v = bench.value(100); "
            f"function generate() if math.random(100) <= {share} then "
            "return {'SET', k(), v()} else return {'GET', k()} end end")


def load(port: int, keys: int) -> None:
    subprocess.run(
        ["resp-benchmark", "-p", str(port), "--load", "-n", str(keys), "-c", "32", "-P", "16",
         "--lua", f"local k = bench.key({keys}, 'sequence', 'k'); local v = bench.value(100); "
         "function generate() return {'SET', k(), v()} end"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=3600)


_LINE = re.compile(r"qps: (\d+), conn: \d+, cnt: (\d+), avg: ([\d.]+)(us|ms|s), "
                   r"p99: ([\d.]+)(us|ms|s)")


def _ms(v: str, unit: str) -> float:
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def bench(port: int, keys: int, share: int, pipeline: int, seconds: int) -> dict:
    """One resp-benchmark run: requests/s, mean and p99 latency (ms), requests made, and the
    CPU seconds the load generator spent (it shares the machine's cores with the server)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(
        ["resp-benchmark", "-p", str(port), "-c", "50", "-P", str(pipeline), "-s",
         str(seconds), "--lua", lua_mix(keys, share)],
        capture_output=True, text=True, timeout=seconds + 120)
    text = p.stdout.replace("\x1b[F\x1b[2K", "\n") + p.stderr.replace("\x1b[F\x1b[2K", "\n")
    m = _LINE.findall(text)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    if not m:
        return {"rps": 0.0, "avg_ms": 0.0, "p99_ms": 0.0, "count": 0, "client_s": client}
    q, cnt, a, au, p99, pu = m[-1]
    return {"rps": float(q), "avg_ms": _ms(a, au), "p99_ms": _ms(p99, pu), "count": int(cnt),
            "client_s": client}


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def measured(s: Server, keys: int, share: int, pipeline: int, seconds: int) -> dict:
    """:func:`bench`, with the CPU the server and its shadow spent per request (the shadow
    counted until it has caught up: SAVE), how busy the machine's cores were, and the share
    of the run the server's event loop spent waiting for a core (``queued``: runnable, not
    running; the client, the server and its shadow share the cores)."""
    pid, kids = s.proc.pid, s.kids()  # type: ignore[union-attr]
    c0, k0, b0 = cpu_seconds(pid), sum(cpu_seconds(x) for x in kids), busy_jiffies()
    q0, t0 = queued_ns(pid), time.monotonic_ns()
    r = bench(s.port, keys, share, pipeline, seconds)
    c1, b1 = cpu_seconds(pid), busy_jiffies()
    queued = (queued_ns(pid) - q0) / max(1, time.monotonic_ns() - t0)
    if s.kind.startswith("persimmon"):
        command(s.port, "SAVE")  # (the shadow catches up: its work for these requests)
    k1 = sum(cpu_seconds(x) for x in kids)
    n = r["count"]
    return r | {"server_us": (c1 - c0) / n * 1e6 if n else 0.0,
                "shadow_us": (k1 - k0) / n * 1e6 if n else 0.0,
                "client_us": r["client_s"] / n * 1e6 if n else 0.0,
                "busy": (b1[0] - b0[0]) / max(1, b1[1] - b0[1]), "queued": queued}


# ---------------------------------------------------------------------- 1 + 6: the sweep
def sweep(args, workdir: str, diskdir: str, results: dict) -> None:
    kinds = [k for k in SERVERS if k in args.servers]
    servers = {k: Server(k, workdir, diskdir) for k in kinds}
    try:
        for k, s in servers.items():
            s.start()
            say(f"sweep: {k} on port {s.port}, loading {args.keys:,} keys")
            load(s.port, args.keys)
            if k.startswith("persimmon"):
                command(s.port, "SAVE")  # (the shadow catches up before the measurements)
        total = len(SHARES) * len(args.pipelines) * args.rounds
        step = 0
        rows: dict = {}
        for pl in args.pipelines:
            for share in SHARES:
                for _round in range(args.rounds):
                    step += 1
                    order = kinds if (step % 2) else kinds[::-1]
                    for k in order:
                        r = measured(servers[k], args.keys, share, pl, args.seconds)
                        rows.setdefault(f"{k}|{pl}|{share}", []).append(r)
                    say(f"sweep {step}/{total}: P{pl} {share:3d} % writes: " + ", ".join(
                        f"{k} {rows[f'{k}|{pl}|{share}'][-1]['rps']:,.0f}" for k in kinds))
        for key, rs in rows.items():
            srt = sorted(rs, key=lambda r: r["rps"])
            results.setdefault("sweep", {})[key] = srt[len(srt) // 2] | {
                "rounds_rps": [r["rps"] for r in rs]}  # (in round order: pairs by round)
    finally:
        for s in servers.values():
            s.remove()


# ---------------------------------------------------------------------- 2: sustained
def sustained(args, workdir: str, diskdir: str, results: dict) -> None:
    out = {}
    for kind in ("persimmon", "persimmon-disk"):
        s = Server(kind, workdir, diskdir)
        try:
            s.start()
            say(f"sustained: {kind}, {args.sustained} s of 100 % writes")
            p = subprocess.Popen(
                ["resp-benchmark", "-p", str(s.port), "-c", "50", "-s", str(args.sustained),
                 "--lua", lua_mix(args.keys, 100)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            series = []
            last = None
            t0 = time.monotonic()
            while p.poll() is None:
                time.sleep(1.0)
                try:
                    inf = info(s.port)
                except OSError:
                    continue
                n = int(inf.get("total_commands_processed", 0))
                t = time.monotonic() - t0
                if last is not None and p.poll() is None:  # (not the window after the end)
                    series.append({
                        "t": round(t, 2), "rps": (n - last[1]) / (t - last[0]),
                        "lag_ops": int(inf.get("shadow_lag_ops", 0)),
                        "log_usage": float(inf.get("log_usage", 0)),
                        "full_waits": int(inf.get("full_waits", 0))})
                last = (t, n)
            out[kind] = series
            say(f"sustained {kind}: mean {sum(x['rps'] for x in series) / max(1, len(series)):,.0f}"
                f" requests/s, max lag {max((x['lag_ops'] for x in series), default=0):,} ops")
        finally:
            s.remove()
    results["sustained"] = out


# ---------------------------------------------------------------------- 3 + 4: recovery
def recovery(args, workdir: str, diskdir: str, results: dict) -> None:
    rec: dict = {}
    mem: dict = {}
    for size in args.sizes:
        for kind in ("persimmon", "persimmon-disk", "redis-aof", "redis-rdb"):
            base = {"redis-aof": "redis-aof-everysec", "redis-rdb": "redis"}.get(kind, kind)
            s = Server(base, workdir, diskdir)
            try:
                s.start()
                say(f"recovery: {kind}, loading {size:,} keys")
                load(s.port, size)
                if kind == "redis-rdb":
                    command(s.port, "SAVE")
                if kind.startswith("persimmon"):
                    command(s.port, "SAVE")  # (so the restart replays little: the PM copy)
                if size == args.sizes[-1] or size == 1_000_000:
                    inf = info(s.port)
                    pool = os.path.join(s.dir, "persimmon-redis.pool")
                    m = {"keys": size, "server": rss_kb(s.proc.pid),
                         "shadow": [rss_kb(k) for k in s.kids()],
                         "pool_bytes": os.path.getsize(pool) if os.path.exists(pool) else 0,
                         "used_memory": int(inf.get("used_memory", 0))}
                    mem[f"{kind}|{size}"] = m
                time.sleep(1.5)  # (an AOF everysec flush)
                s.kill()
                if kind.startswith("persimmon"):
                    time.sleep(0.5)  # (the orphaned shadow notices and exits)
                if kind == "redis-aof" or kind == "redis-rdb":
                    s.kind = "redis-aof-everysec" if kind == "redis-aof" else "redis"
                t = s.start()
                r = {"first_reply_s": t}
                if kind.startswith("persimmon"):
                    inf = info(s.port)
                    for ph in ("rollback", "materialize", "replay", "total"):
                        r[ph] = float(inf.get(f"recovery_times_{ph}", 0))
                    r["replayed_ops"] = float(inf.get("recovery_times_replayed_ops", 0))
                keys = command(s.port, "DBSIZE")
                r["dbsize"] = int(keys[1:].strip() or 0)
                rec[f"{kind}|{size}"] = r
                say(f"recovery {kind} {size:,}: first reply after {t:.2f} s "
                    f"({r['dbsize']:,} keys)")
            finally:
                s.remove()
    results["recovery"] = rec
    results["memory"] = mem


# ---------------------------------------------------------------------- 5: effort
def effort() -> dict:
    """Lines of code (no blank, comment or docstring lines) of the port, per method, in the
    paper's categories."""
    path = os.path.join(ROOT, "src", "persimmon_redis", "persistence.py")
    src = open(path).read()
    tree = ast.parse(src)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                doc_lines.update(range(first.lineno, first.end_lineno + 1))
    lines = src.splitlines()

    def code(a: int, b: int) -> int:
        return sum(1 for i in range(a, b + 1) if i not in doc_lines
                   and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))

    cats = {"initialise Persimmon (open the pool, close, SAVE, INFO)": 0,
            "serialise an operation / group commit (execute_rw, log_write, sync)": 0,
            "the none mode (baseline, not a Persimmon change)": 0,
            "imports and module lines": 0}
    counted: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    n = code(item.lineno, item.end_lineno)
                    counted.update(range(item.lineno, item.end_lineno + 1))
                    if node.name == "NoPersistence":
                        cats["the none mode (baseline, not a Persimmon change)"] += n
                    elif item.name == "__init__":
                        body = ast.get_source_segment(src, item) or ""
                        rw = sum(1 for x in body.splitlines()
                                 if not x.strip().startswith("#") and (
                                     "execute_rw" in x or "log_write" in x
                                     or "self.sync" in x))
                        cats["serialise an operation / group commit (execute_rw, log_write, "
                             "sync)"] += rw
                        cats["initialise Persimmon (open the pool, close, SAVE, INFO)"] += n - rw
                    else:
                        cats["initialise Persimmon (open the pool, close, SAVE, INFO)"] += n
    total = code(1, len(lines))
    cats["imports and module lines"] = total - sum(cats.values())
    return {"total": total, "categories": cats}


# ---------------------------------------------------------------------- the report
def plots(results: dict, figdir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    sw = results.get("sweep", {})
    pls = sorted({int(k.split("|")[1]) for k in sw})
    for pl in pls:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for kind in SERVERS:
            xs = [s for s in SHARES if f"{kind}|{pl}|{s}" in sw]
            if not xs:
                continue
            ax1.plot(xs, [sw[f"{kind}|{pl}|{s}"]["rps"] for s in xs], marker="o",
                     label=LABEL[kind])
            ax2.plot(xs, [sw[f"{kind}|{pl}|{s}"]["p99_ms"] for s in xs], marker="o",
                     label=LABEL[kind])
        ax1.set(xlabel="write share (%)", ylabel="requests/s", title=f"throughput, P{pl}")
        ax2.set(xlabel="write share (%)", ylabel="p99 latency (ms)", title=f"p99 latency, P{pl}",
                yscale="log")
        ax1.legend(fontsize=7)
        fig.tight_layout()
        name = f"throughput_vs_writes_P{pl}.png"
        fig.savefig(os.path.join(figdir, name), dpi=90)
        plt.close(fig)
        made.append(name)
    su = results.get("sustained", {})
    if su:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for kind, series in su.items():
            ax1.plot([x["t"] for x in series], [x["rps"] for x in series], label=LABEL[kind])
            ax2.plot([x["t"] for x in series], [x["lag_ops"] for x in series], label=LABEL[kind])
        ax1.set(xlabel="s", ylabel="requests/s", title="sustained 100 % writes")
        ax2.set(xlabel="s", ylabel="shadow lag (operations)", title="the shadow's lag")
        ax1.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(figdir, "sustained_writes.png"), dpi=90)
        plt.close(fig)
        made.append("sustained_writes.png")
    rec = results.get("recovery", {})
    if rec:
        fig, ax = plt.subplots(figsize=(6, 4))
        sizes = sorted({int(k.split("|")[1]) for k in rec})
        for kind in ("persimmon", "persimmon-disk", "redis-aof", "redis-rdb"):
            xs = [n for n in sizes if f"{kind}|{n}" in rec]
            ax.plot(xs, [rec[f"{kind}|{n}"]["first_reply_s"] for n in xs], marker="o",
                    label=kind)
        ax.set(xlabel="keys", ylabel="s to the first reply after SIGKILL", xscale="log",
               title="recovery time")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(figdir, "recovery_vs_size.png"), dpi=90)
        plt.close(fig)
        made.append("recovery_vs_size.png")
    return made


def server_rows(sw: dict, pl: int, cell) -> list[str]:
    """One table row per server measured at pipeline ``pl``: ``cell(kind, result)`` of each
    write share ("-" where there is no result, or the cell is None)."""
    rows = []
    for kind in SERVERS:
        cells = []
        for s in SHARES:
            r = sw.get(f"{kind}|{pl}|{s}")
            c = cell(kind, r) if r else None
            cells.append("-" if c is None else c)
        if any(c != "-" for c in cells):
            rows.append(f"| {LABEL[kind]} | " + " | ".join(cells) + " |")
    return rows


def report(results: dict, figs: list[str], args, path: str) -> None:
    m = results["machine"]
    out = ["# Evaluation", "",
           "Generated by `python bench/evaluate.py" + (" --quick" if args.quick else "")
           + f"` on {m['date']} (the whole file; do not edit by hand).", "",
           "## The machine and the method", "",
           f"* {m['calibration']}; {m['cpus']} CPUs; load average before the run "
           f"{m['load_before']}, after it {m['load_after']}.",
           "* **Noise:** this machine's 2 cores were shared with other sessions while the "
           "figures were taken (the load averages above), and its disk too: absolute "
           "figures are noisy; read the ratios of one row, measured at the same moments."
           + (" This is a `--quick` run (small key space, short runs): a full run on a quiet "
              "machine is still to be made." if args.quick else ""),
           f"* Load generator: resp-benchmark {m['resp_benchmark']} (Rust; its Lua generator "
           "makes the read/write mix and the Zipf keys; it reports mean and p99 latency, not "
           "the median), 50 connections, 100-byte values, keys Zipf-distributed over "
           f"{args.keys:,} preloaded keys; {args.seconds} s per measurement, "
           f"{args.rounds} round(s), the servers visited in turn within each (every other "
           "round in the reverse order); the median round is shown.",
           f"* Pools: /dev/shm (tmpfs, survives process crashes) and `{args.diskdir}` "
           f"({m['disk_fs']}, survives power loss: a disk directory, as the default "
           "`~/.local/share/persimmon-redis` is); redis-server's AOF and RDB in the same "
           "disk directory, `--save ''`.", ""]
    sw = results.get("sweep", {})
    for pl in sorted({int(k.split("|")[1]) for k in sw}):
        out += [f"## Throughput and latency against the write share, P{pl}", "",
                "requests/s (mean / p99 latency, ms)", "",
                "| server | " + " | ".join(f"{s} %" for s in SHARES) + " |",
                "| --- |" + " --- |" * len(SHARES)]
        out += server_rows(sw, pl, lambda kind, r: (
            f"{r['rps']:,.0f} ({r['avg_ms']:.2f} / {r['p99_ms']:.1f})"))
        out.append("")
        out.append("Ratios: the median over the rounds of the two servers' requests/s "
                   "in the same round (the range of the rounds in brackets).")
        out.append("")
        ratios = [("persimmon", "none"), ("none", "redis"), ("persimmon-disk", "redis-aof-always"),
                  ("persimmon-disk", "redis-aof-everysec")]
        out += ["| ratio | " + " | ".join(f"{s} %" for s in SHARES) + " |",
                "| --- |" + " --- |" * len(SHARES)]
        for a, b in ratios:
            cells = []
            for s in SHARES:
                ra, rb = sw.get(f"{a}|{pl}|{s}"), sw.get(f"{b}|{pl}|{s}")
                if not (ra and rb and rb["rps"]):
                    cells.append("-")
                    continue
                pairs = sorted(x / y for x, y in zip(ra["rounds_rps"], rb["rounds_rps"],
                                                     strict=True) if y)
                span = (f" ({pairs[0]:.2f}-{pairs[-1]:.2f})" if len(pairs) > 1 else "")
                cells.append(f"{pairs[len(pairs) // 2]:.2f}{span}" if pairs else "-")
            out.append(f"| {a} / {b} | " + " | ".join(cells) + " |")
        out += ["", f"![throughput, P{pl}](figures/throughput_vs_writes_P{pl}.png)", ""]
        if any("server_us" in r for r in sw.values()):
            out += [f"CPU per request, P{pl}: the server process + its shadow, us, in the "
                    "median round (the shadow counted until it had caught up); last row: how "
                    "busy the machine's cores were during the measurements (all servers, "
                    "median). Where the cores are all busy, throughput follows the CPU the "
                    "client, the server and the shadow spend per request.", "",
                    "| server | " + " | ".join(f"{s} %" for s in SHARES) + " |",
                    "| --- |" + " --- |" * len(SHARES)]
            out += server_rows(sw, pl, lambda kind, r: (
                f"{r['server_us']:.1f}" + (f" + {r['shadow_us']:.1f}"
                                           if kind.startswith("persimmon") else "")
                if "server_us" in r else None))
            busy = []
            for s in SHARES:
                bs = sorted(r["busy"] for k, r in sw.items()
                            if k.endswith(f"|{pl}|{s}") and "busy" in r)
                busy.append(f"{bs[len(bs) // 2]:.0%}" if bs else "-")
            out += ["| cores busy | " + " | ".join(busy) + " |", ""]
    if sw:
        out += ["The disk-backed pool (section 2 of issue 24) is the `persimmon-disk` row "
                "against redis-server's AOF rows: the same disk, at the same moments. It "
                "runs with its defaults: one commit of the log in flight in another thread "
                "while the loop goes on, and the replies of reads of durable data sent "
                "before the commits (docs/device.md).", ""]
    su = results.get("sustained")
    if su:
        out += ["## Sustained 100 % writes", "",
                f"{args.sustained} s of SETs (50 clients, unpipelined); INFO read every "
                "second.", "", "| pool | mean requests/s | min | max shadow lag (ops) | "
                "max log usage | full-log waits |", "| --- | --- | --- | --- | --- | --- |"]
        for kind, series in su.items():
            if not series:
                continue
            rps = [x["rps"] for x in series]
            out.append(f"| {LABEL[kind]} | {sum(rps) / len(rps):,.0f} | {min(rps):,.0f} | "
                       f"{max(x['lag_ops'] for x in series):,} | "
                       f"{max(x['log_usage'] for x in series):.1%} | "
                       f"{series[-1]['full_waits']} |")
        out += ["", "![sustained writes](figures/sustained_writes.png)", ""]
    rec = results.get("recovery")
    if rec:
        out += ["## Recovery time against the dataset size (after SIGKILL)", "",
                "Seconds from the restart to the first PONG (redis-server answers LOADING "
                "until it has loaded); for persimmon-redis the phases it logs. The data was "
                "loaded, the PM copy brought up to date (SAVE), then the server SIGKILLed.", "",
                "| server | keys | first reply (s) | rollback | materialize | replay | "
                "keys after |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, r in rec.items():
            kind, size = key.split("|")
            ph = [f"{r[p]:.3f}" if p in r else "-" for p in ("rollback", "materialize",
                                                             "replay")]
            out.append(f"| {kind} | {int(size):,} | {r['first_reply_s']:.2f} | "
                       + " | ".join(ph) + f" | {r['dbsize']:,} |")
        out += ["", "![recovery](figures/recovery_vs_size.png)", ""]
    mem = results.get("memory")
    if mem:
        out += ["## Memory per key", "",
                "| server | keys | server RSS (anon + shmem), bytes/key | shadow RSS "
                "(anon + shmem), bytes/key | pool file, bytes/key | used_memory, bytes/key |",
                "| --- | --- | --- | --- | --- | --- |"]
        for key, m in mem.items():
            kind, size = key.split("|")
            n = int(size)

            def per(d: dict, n: int = n) -> str:
                if not d:
                    return "-"
                return (f"{d.get('VmRSS', 0) * 1024 / n:,.0f} "
                        f"({d.get('RssAnon', 0) * 1024 / n:,.0f}"
                        f" + {d.get('RssShmem', 0) * 1024 / n:,.0f})")

            # (a child of redis-server is an AOF rewrite or an RDB save under way, not a
            # process it keeps: not counted)
            shadow = m["shadow"][0] if m["shadow"] and kind.startswith("persimmon") else {}
            out.append(f"| {kind} | {n:,} | {per(m['server'])} | {per(shadow)} | "
                       f"{m['pool_bytes'] / n:,.0f} | {m['used_memory'] / n:,.0f} |")
        out += ["", "(persimmon-redis reports its peak RSS as used_memory.)", ""]
    ef = results.get("effort")
    if ef:
        out += ["## Programming effort", "",
                "Lines of code (no blank, comment or docstring lines) of "
                "`src/persimmon_redis/persistence.py`, where every Persimmon-specific line of "
                "the port is; the paper's C port of Redis changed 115 lines.", "",
                "| category | lines |", "| --- | --- |"]
        out += [f"| {k} | {v} |" for k, v in ef["categories"].items()]
        out += [f"| **total** | **{ef['total']}** |", "",
                "The paper's other categories cost the port nothing: the state machine's "
                "initialisation is `RedisState()` (the server was written as a state machine), "
                "deserialising and executing an operation is `RedisState.apply`, which both "
                "copies run, and the check for read-only commands is the command table's flag "
                "in the server (reads go to the DRAM state directly).", ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 10 minutes")
    ap.add_argument("--only", default="sweep,sustained,recovery,effort")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--diskdir", default="/var/tmp",
                    help="a directory on a disk file system (not tmpfs)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "evaluation.md"))
    ap.add_argument("--replot", action="store_true",
                    help="measure nothing: rewrite the report and plots from the figures of "
                    "the last run (docs/figures/evaluation.json; give the run's --quick); the "
                    "port's line counts are counted again")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # (tiny sizes)
    for opt in ("keys", "seconds", "rounds"):
        ap.add_argument(f"--{opt}", type=int, dest=f"set_{opt}", help="override")
    ap.add_argument("--pipelines", dest="set_pipelines", help="override, e.g. 1,16")
    ap.add_argument("--shares", dest="set_shares", help="override, e.g. 10,100")
    args = ap.parse_args()
    if shutil.which("resp-benchmark") is None or shutil.which("redis-server") is None:
        sys.exit("needs resp-benchmark (pip install '.[bench]') and redis-server")
    q = args.quick
    args.keys = 100_000 if q else 1_000_000
    args.seconds = 3 if q else 10
    args.rounds = 1 if q else 3
    args.pipelines = [1, 16]
    args.sustained = 20 if q else 60
    args.sizes = [100_000, 300_000] if q else [100_000, 1_000_000, 5_000_000]
    if args.smoke:
        args.keys, args.seconds, args.sustained, args.sizes = 2000, 1, 3, [2000]
        args.pipelines = [1]
    for opt in ("keys", "seconds", "rounds"):
        if getattr(args, f"set_{opt}") is not None:
            setattr(args, opt, getattr(args, f"set_{opt}"))
    if args.set_pipelines:
        args.pipelines = [int(x) for x in args.set_pipelines.split(",")]
    global SHARES
    if args.set_shares:
        SHARES = tuple(int(x) for x in args.set_shares.split(","))
    args.servers = args.servers.split(",")
    parts = args.only.split(",")
    from persimmon.device import on_tmpfs

    if on_tmpfs(args.diskdir):
        sys.exit(f"--diskdir {args.diskdir} is on tmpfs: give a directory on a disk")
    figdir = os.path.join(os.path.dirname(args.out), "figures")
    os.makedirs(figdir, exist_ok=True)
    if args.replot:
        with open(os.path.join(figdir, "evaluation.json")) as f:
            results = json.load(f)
        if "effort" in results:  # (counted in the source, not measured: brought up to date)
            results["effort"] = effort()
            with open(os.path.join(figdir, "evaluation.json"), "w") as f:
                json.dump(results, f, indent=1)
        report(results, plots(results, figdir), args, args.out)
        say(f"rewrote {args.out} and the plots from {figdir}/evaluation.json")
        return
    fs = subprocess.run(["df", "-T", args.diskdir], capture_output=True, text=True).stdout
    ver = subprocess.run([sys.executable, "-m", "pip", "show", "resp-benchmark"],
                         capture_output=True, text=True).stdout
    results: dict = {"machine": {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "calibration": calibration_line(), "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "disk_fs": (fs.splitlines()[-1].split()[1] if fs else "?"),
        "resp_benchmark": (re.findall(r"Version: (\S+)", ver) or ["?"])[0]}}
    say(results["machine"]["calibration"])
    workdir = tempfile.mkdtemp(prefix="evaluate-", dir=args.diskdir)
    diskdir = tempfile.mkdtemp(prefix="evaluate-disk-", dir=args.diskdir)
    try:
        if "sweep" in parts:
            sweep(args, workdir, diskdir, results)
        if "sustained" in parts:
            sustained(args, workdir, diskdir, results)
        if "recovery" in parts:
            recovery(args, workdir, diskdir, results)
        if "effort" in parts:
            results["effort"] = effort()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(diskdir, ignore_errors=True)
    results["machine"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with open(os.path.join(figdir, "evaluation.json"), "w") as f:
        json.dump(results, f, indent=1)
    figs = plots(results, figdir)
    report(results, figs, args, args.out)
    say(f"wrote {args.out} and {len(figs)} plots under {figdir}")


if __name__ == "__main__":
    main()
