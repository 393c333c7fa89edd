"""persimmon-redis when its shadow fails at the same operation every time it replays it:
the shadow is given up (not restarted forever), the server goes on serving until the log is
full and then stops with exit status 1, every acknowledged write survives, and the next
start (with the bug gone) replays the log."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import redis

from conftest import free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))


def test_a_shadow_that_keeps_failing_stops_the_server_with_status_1_and_loses_nothing(
        tmp_path):
    fuse = tmp_path / "fuse"
    fuse.write_text("armed")
    pool_dir = f"/dev/shm/persimmon-redis-test-{uuid.uuid4().hex}"
    port = free_port()
    log_path = tmp_path / "server.log"
    args = ["--port", str(port), "--dir", pool_dir, "--log-size", "1mb"]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "shadow_bomb_server.py"),
                                 str(fuse), *args], stdout=logf, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        c = redis.Redis(port=port, socket_timeout=30)
        assert c.set("a", "1") and c.set("shadow-bomb", "x") and c.set("b", "2")
        acknowledged = {b"a": b"1", b"shadow-bomb": b"x", b"b": b"2"}
        value = b"v" * 20000
        try:  # ~50 of these fill the 1 MB log, which the failed shadow cannot drain
            for i in range(500):
                c.set(f"k{i}", value)
                acknowledged[f"k{i}".encode()] = value
        except redis.ConnectionError:
            pass
        assert 20 < len(acknowledged) < 100
        assert proc.wait(timeout=60) == 1
        text = log_path.read_text(errors="replace")
        assert "failed 3 times in a row" in text and "the bomb went off" in text
        assert "Traceback" in text  # (the shadow's, on the server's log)
        assert "persimmon-redis is now ready to exit" in text  # (a clean stop, no raise)
        assert "ShadowError" not in text
        fuse.unlink()
        proc = subprocess.Popen([sys.executable, "-m", "persimmon_redis", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, proc)
        c = redis.Redis(port=port)
        assert c.dbsize() == len(acknowledged)
        assert {k: c.get(k) for k in acknowledged} == acknowledged
        c.shutdown(nosave=True)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", pool_dir, f"{pool_dir}.log"])
