"""Bank transfers on real replica processes (2 shards x 3 replicas, UDP): SIGKILL one
replica and restart it; SIGKILL every replica at once and restart them all.  The total never
changes and every transfer a client was told committed is there.  The in-memory mode, run the
same way, loses it all."""

from __future__ import annotations

import random
import threading
import time

from persimmon_tapir import Client

from .procs import LocalCluster

ACCOUNTS = [b"acct-%02d" % i for i in range(12)]
START = 100


def _setup(path: str) -> None:
    with Client(path) as c:
        t = c.begin()
        for a in ACCOUNTS:
            t.put(a, b"%d" % START)
        assert t.commit()


def _balances(path: str) -> dict:
    with Client(path) as c:
        while True:  # a validated (committed) read of every account
            t = c.begin()
            got = {a: t.get(a) for a in ACCOUNTS}
            if t.commit():
                return {a: (int(v) if v is not None else None) for a, v in got.items()}


class Transfers:
    def __init__(self, path: str, seed: int) -> None:
        self.path, self.rng = path, random.Random(seed)
        self.committed: list = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with Client(self.path) as c:
                while not self.stop.is_set():
                    a, b = self.rng.sample(ACCOUNTS, 2)
                    amount = self.rng.randint(1, 10)
                    t = c.begin()
                    va, vb = int(t.get(a)), int(t.get(b))
                    if va < amount:
                        t.abort()
                        continue
                    t.put(a, b"%d" % (va - amount))
                    t.put(b, b"%d" % (vb + amount))
                    if t.commit():
                        self.committed.append((a, b, amount))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def _expected(workers) -> dict:
    want = {a: START for a in ACCOUNTS}
    for w in workers:
        for a, b, amount in w.committed:
            want[a] -= amount
            want[b] += amount
    return want


def _run_transfers(path, seconds, workers=None):
    workers = workers or [Transfers(path, seed) for seed in (1, 2)]
    for w in workers:
        if not w.thread.is_alive() and not w.stop.is_set():
            w.thread.start()
    time.sleep(seconds)
    return workers


def _finish(workers):
    for w in workers:
        w.stop.set()
    for w in workers:
        w.thread.join(60)
        assert not w.thread.is_alive(), "a client never finished its transaction"
        assert w.error is None, w.error


def test_sigkill_one_replica_then_all_replicas_persistent():
    cl = LocalCluster(shards=2, persistence="persimmon")
    try:
        cl.start_all()
        cl.wait_serving()
        _setup(cl.config_path)
        workers = _run_transfers(cl.config_path, 1.5)
        cl.kill(0, 1)  # one replica of shard 0, under load
        time.sleep(0.5)
        cl.start(0, 1)
        cl.wait_serving([(0, 1)])
        assert cl.event((0, 1), "ready")["recovered"] is True
        _run_transfers(cl.config_path, 1.5, workers)
        before = sum(len(w.committed) for w in workers)
        cl.kill_all()  # a whole-cluster power loss, under load
        cl.start_all()
        cl.wait_serving()
        _run_transfers(cl.config_path, 1.0, workers)
        _finish(workers)
        after = sum(len(w.committed) for w in workers)
        assert before > 10 and after > before
        got = _balances(cl.config_path)
        assert got == _expected(workers)
        assert sum(got.values()) == START * len(ACCOUNTS)
        for k in cl.procs:
            assert cl.event(k, "ready")["recovered"] is True
    finally:
        cl.close()


def test_in_memory_cluster_loses_everything_when_all_replicas_die():
    cl = LocalCluster(shards=2, persistence="none")
    try:
        cl.start_all()
        cl.wait_serving()
        _setup(cl.config_path)
        workers = _run_transfers(cl.config_path, 1.0)
        _finish(workers)
        got = _balances(cl.config_path)
        assert got == _expected(workers)
        cl.kill(1, 2)  # one replica: recovered from its peers by a view change
        cl.start(1, 2)
        cl.wait_serving([(1, 2)])
        assert cl.event((1, 2), "ready")["status"] == "recovering"
        assert cl.event((1, 2), "serving")["view"] > 0  # it joined a view with the peers' record
        assert _balances(cl.config_path) == got
        cl.kill_all()
        cl.start_all()
        cl.wait_serving()
        assert _balances(cl.config_path) == {a: None for a in ACCOUNTS}  # all of it lost
    finally:
        cl.close()
