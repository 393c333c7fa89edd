"""persimmon-redis on a disk pool with ``--commit-overlap yes``: the batch's commit is
written by a thread while the loop goes on (``persimmon._commitio``, or a Python thread
without it).  A SIGKILL in the middle of a write load loses no write a client was told had
succeeded, and no reply ever showed a write the crash then lost."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import pytest
import redis
from test_disk_pool import _disk_dir

from conftest import ServerProc
from persimmon.native import commit_writer_type

WRITERS = 6


def _load(s: ServerProc, w: int, acked: list, seen: list, stop: threading.Event) -> None:
    """Client ``w``: INCR its counter and SET a key per step; ``acked[w]`` is the last
    step whose replies arrived, ``seen[w]`` the highest counter value another client's
    GET showed it."""
    c = s.client(socket_timeout=5)
    other = f"n{(w + 1) % WRITERS}"
    try:
        while not stop.is_set():
            p = c.pipeline(transaction=False)
            p.incr(f"n{w}")
            p.set(f"k{w}-{acked[w] + 1}", b"v" * 50)
            p.get(other)
            n, ok, got = p.execute()
            assert ok is True and n == acked[w] + 1
            acked[w] = n
            if got is not None:
                seen[(w + 1) % WRITERS] = max(seen[(w + 1) % WRITERS], int(got))
    except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
        pass  # (the kill)


@pytest.mark.parametrize("writer", ["compiled", "python-thread"])
def test_sigkill_under_load_with_overlapped_commits_loses_no_acknowledged_write(writer):
    if writer == "compiled" and commit_writer_type() is None:
        pytest.skip("PERSIMMON_PURE_PYTHON: the compiled writer is not loaded")
    root = tempfile.mkdtemp(prefix="persimmon-redis-overlap-", dir=_disk_dir())
    env = {"PERSIMMON_PURE_PYTHON": "1"} if writer == "python-thread" else {}
    s = ServerProc(pool_dir=os.path.join(root, "pool"), extra=("--commit-overlap", "yes"),
                   env=env)
    try:
        for round_ in range(3):
            s.start()
            info = s.client().info("persimmon")
            assert info["commit_overlap"] == "yes"
            assert info["background_commits"] == ("compiled-thread" if writer == "compiled"
                                                  else "no")
            base = [int(s.client().get(f"n{w}") or 0) for w in range(WRITERS)]
            acked, seen = list(base), list(base)
            stop = threading.Event()
            threads = [threading.Thread(target=_load, args=(s, w, acked, seen, stop))
                       for w in range(WRITERS)]
            for t in threads:
                t.start()
            time.sleep(0.6 + 0.3 * round_)
            assert sum(acked) - sum(base) > 50, "the load did not run"
            s.kill()
            stop.set()
            for t in threads:
                t.join(10)
            s.start()
            c = s.client()
            for w in range(WRITERS):
                n = int(c.get(f"n{w}") or 0)
                # every acknowledged INCR is there, and every value a reply showed
                assert n >= acked[w], (w, n, acked[w])
                assert n >= seen[w], (w, n, seen[w])
                assert n <= acked[w] + 1  # (at most the one in flight)
                for k in (acked[w], max(base[w], 1)):
                    if k > base[w]:
                        assert c.get(f"k{w}-{k}") == b"v" * 50
            s.stop()
    finally:
        s.cleanup()
        shutil.rmtree(root, ignore_errors=True)
