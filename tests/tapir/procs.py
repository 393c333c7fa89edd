"""Real replica processes for the tests: start, SIGKILL, restart, wait until serving."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

from persimmon_tapir.cli import make_config

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


class LocalCluster:
    def __init__(self, shards: int = 2, replicas: int = 3, persistence: str = "persimmon",
                 directory: str | None = None) -> None:
        self.dir = directory or f"/dev/shm/tapir-test-{uuid.uuid4().hex[:10]}"
        self.cfg = make_config(self.dir, shards, replicas, persistence, None)
        self.config_path = os.path.join(self.dir, "cluster.json")
        self.procs: dict = {}
        self.events: dict = {}

    def start(self, s: int, r: int, extra: list | None = None) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
        p = subprocess.Popen(
            [sys.executable, "-m", "persimmon_tapir", "replica", "--config", self.config_path,
             "--shard", str(s), "--replica", str(r), "--dir", self.dir] + (extra or []),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.procs[(s, r)] = p
        evs: list = []
        self.events[(s, r)] = evs

        def read():
            for line in p.stdout:
                try:
                    evs.append(json.loads(line))
                except ValueError:
                    pass
        threading.Thread(target=read, daemon=True).start()
        return p

    def start_all(self) -> None:
        for s in range(len(self.cfg.shards)):
            for r in range(self.cfg.n):
                self.start(s, r)

    def wait_serving(self, keys=None, timeout: float = 60.0) -> None:
        keys = keys or list(self.procs)
        end = time.monotonic() + timeout
        for k in keys:
            while not any(e.get("event") == "serving" for e in self.events[k]):
                p = self.procs[k]
                if p.poll() is not None:
                    raise RuntimeError(f"replica {k} exited {p.returncode}: {p.stderr.read()}")
                if time.monotonic() > end:
                    raise TimeoutError(f"replica {k} not serving: {self.events[k]}")
                time.sleep(0.02)

    def event(self, k, name: str) -> dict:
        return next(e for e in self.events[k] if e.get("event") == name)

    def kill(self, s: int, r: int, sig: int = signal.SIGKILL) -> None:
        p = self.procs[(s, r)]
        p.send_signal(sig)
        p.wait()

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(sig)
        for p in self.procs.values():
            p.wait()

    def close(self) -> None:
        self.kill_all(signal.SIGTERM)
        for p in self.procs.values():
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()
        # a killed replica's shadow lets go of its pool when it notices; then remove
        time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)
