"""``persimmon-tapir cluster ...`` and ``persimmon-tapir replica ...``."""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time

from .config import ClusterConfig, ConfigError
from .server import run_replica

__all__ = ["main"]


def _free_ports(n: int) -> list:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def make_config(directory: str, shards: int, replicas: int, persistence: str,
                port_base: int | None) -> ClusterConfig:
    """The cluster's config: DIR/cluster.json as it is, or a new one written there."""
    path = os.path.join(directory, "cluster.json")
    if os.path.exists(path):
        cfg = ClusterConfig.load(path)
        if len(cfg.shards) != shards or cfg.n != replicas or cfg.persistence != persistence:
            raise ConfigError(
                f"{path} describes {len(cfg.shards)} shards of {cfg.n} replicas "
                f"(persistence {cfg.persistence}), not {shards} of {replicas} ({persistence}); "
                "use another --dir or remove it")
        return cfg
    if replicas < 1 or replicas % 2 == 0:
        raise ConfigError("--replicas must be odd (2f+1)")
    if shards < 1:
        raise ConfigError("--shards must be at least 1")
    count = shards * replicas
    ports = (list(range(port_base, port_base + count)) if port_base else _free_ports(count))
    cfg = ClusterConfig(random.SystemRandom().getrandbits(31), (replicas - 1) // 2, tuple(
        tuple(("127.0.0.1", ports[s * replicas + r]) for r in range(replicas))
        for s in range(shards)), persistence)
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(cfg.to_json())
    os.replace(tmp, path)
    return cfg


def cluster(args) -> int:
    try:
        cfg = make_config(args.dir, args.shards, args.replicas, args.persistence, args.port_base)
    except ConfigError as e:
        print(f"persimmon-tapir: {e}", file=sys.stderr)
        return 2
    path = os.path.join(args.dir, "cluster.json")
    procs = []
    for s in range(len(cfg.shards)):
        for r in range(cfg.n):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "persimmon_tapir", "replica", "--config", path,
                 "--shard", str(s), "--replica", str(r), "--dir", args.dir]))
    print(f"persimmon-tapir: {len(procs)} replicas ({len(cfg.shards)} shards x {cfg.n}), "
          f"config {path}", file=sys.stderr, flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    bad = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    return 1 if bad and not stopping else 0


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(prog="persimmon-tapir",
                                 description="TAPIR on Persimmon: a replicated transactional "
                                             "key-value store with persistent replicas")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cluster", help="run a local cluster, one process per replica")
    c.add_argument("--shards", type=int, default=1)
    c.add_argument("--replicas", type=int, default=3)
    c.add_argument("--dir", required=True)
    c.add_argument("--persistence", choices=("persimmon", "none"), default="persimmon")
    c.add_argument("--port-base", type=int, default=None)
    r = sub.add_parser("replica", help="run one replica")
    r.add_argument("--config", required=True)
    r.add_argument("--shard", type=int, required=True)
    r.add_argument("--replica", type=int, required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--persistence", choices=("persimmon", "none"), default=None,
                   help="default: the config's")
    args = ap.parse_args(argv)
    level = os.environ.get("PERSIMMON_TAPIR_LOG", "WARNING").upper()  # INFO: view changes
    logging.basicConfig(level=getattr(logging, level, logging.WARNING),
                        format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "cluster":
        return cluster(args)
    return run_replica(args.config, args.shard, args.replica, args.dir, args.persistence)
