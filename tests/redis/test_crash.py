"""Crash tests of the server: SIGKILL under load, restart on the same pool, and every
acknowledged write must be there, in a prefix state; the shadow killed while serving."""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time

import redis

from conftest import ServerProc


def _write_until_cut(port: int, step, acked: list, stop: threading.Event) -> None:
    """Call ``step(client)`` until ``stop`` or the server goes away; ``acked`` gets what
    each acknowledged step returned."""
    c = redis.Redis(port=port, socket_timeout=5)
    try:
        while not stop.is_set():
            acked.append(step(c))
    except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
        pass


def _sigkill_while_writing(srv: ServerProc, step, seconds: float) -> list:
    """Start the server, call ``step(client)`` from a thread, SIGKILL the server after
    ``seconds`` and start it again on the same pool (recovery); returns what each
    acknowledged step returned."""
    srv.start()
    acked: list = []
    stop = threading.Event()
    t = threading.Thread(target=_write_until_cut, args=(srv.port, step, acked, stop))
    t.start()
    time.sleep(seconds)
    srv.kill(signal.SIGKILL)
    stop.set()
    t.join(10)
    srv.start()  # recovery on the same pool
    return acked


def _log_appender(start: int):
    numbers = itertools.count(start)

    def step(c: redis.Redis) -> int:
        i = next(numbers)
        c.rpush("log", i)
        c.set("last", i)
        return i

    return step


def test_sigkill_under_load_keeps_every_acknowledged_write():
    rng = random.Random(11)
    srv = ServerProc("persimmon")
    try:
        expected_len = 0
        for _ in range(6):
            acked = _sigkill_while_writing(srv, _log_appender(expected_len),
                                           rng.uniform(0.2, 0.8))
            c = srv.client()
            log = [int(x) for x in c.lrange("log", 0, -1)]
            assert log == list(range(len(log))), "recovered state is not a prefix"
            if acked:
                assert len(log) >= acked[-1] + 1, f"acknowledged write {acked[-1]} lost"
                assert int(c.get("last")) >= acked[-1]
            expected_len = len(log)
            c.close()
            srv.stop()
        assert expected_len > 50
    finally:
        srv.cleanup()


def _transaction(c: redis.Redis) -> int:
    p = c.pipeline(transaction=True)
    # connection commands ride along: answered around the EXEC's one operation
    p.incr("a").ping().rpush("seq", "x").execute_command("UNWATCH").incr("b")
    return p.execute()[0]


def test_sigkill_never_splits_a_transaction():
    rng = random.Random(5)
    srv = ServerProc("persimmon")
    try:
        last = 0
        for _ in range(4):
            acked = _sigkill_while_writing(srv, _transaction, rng.uniform(0.3, 0.8))
            c = srv.client()
            a, b = int(c.get("a") or 0), int(c.get("b") or 0)
            assert a == b == c.llen("seq"), "a transaction was split by the crash"
            if acked:
                assert a >= acked[-1], f"acknowledged transaction {acked[-1]} lost"
            assert a >= last
            last = a
            c.close()
            srv.stop()
        assert last > 20
    finally:
        srv.cleanup()


def test_shadow_killed_while_serving():
    srv = ServerProc("persimmon").start()
    try:
        c = srv.client()
        for i in range(500):
            c.rpush("log", i)
        pid = int(c.info("persimmon")["shadow_pid"])
        os.kill(pid, signal.SIGKILL)
        for i in range(500, 3000):
            c.rpush("log", i)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = c.info("persimmon")
            if st["shadow_restarts"] >= 1 and st["shadow_lag_ops"] == 0:
                break
            time.sleep(0.1)
        assert st["shadow_restarts"] >= 1 and int(st["shadow_pid"]) != pid
        c.close()
        srv.kill(signal.SIGKILL)
        srv.start()
        c = srv.client()
        assert [int(x) for x in c.lrange("log", 0, -1)] == list(range(3000))
        c.close()
    finally:
        srv.cleanup()


def test_restart_recovers_all_types_and_expiry():
    srv = ServerProc("persimmon").start()
    try:
        c = srv.client()
        c.set("s", "v")
        c.set("ttl", "v", ex=1000)
        c.hset("h", mapping={"a": 1, "b": 2})
        c.rpush("l", 1, 2, 3)
        c.sadd("set", "x", "y")
        c.zadd("z", {"m": 1.5, "n": 2})
        c.select(3)
        c.set("db3", "yes")
        c.close()
        srv.stop()
        srv.start()
        c = srv.client()
        assert c.get("s") == b"v" and 990 < c.ttl("ttl") <= 1000
        assert c.hgetall("h") == {b"a": b"1", b"b": b"2"}
        assert c.lrange("l", 0, -1) == [b"1", b"2", b"3"]
        assert c.smembers("set") == {b"x", b"y"}
        assert c.zrange("z", 0, -1, withscores=True) == [(b"m", 1.5), (b"n", 2.0)]
        c.select(3)
        assert c.get("db3") == b"yes"
        assert c.info("persistence")["persimmon_recovered"] == 1
        c.close()
    finally:
        srv.cleanup()


def test_sigkill_keeps_raw_marks_with_the_strings_they_describe():
    # Db.raw (which strings APPEND/SETRANGE/SETBIT made raw) is state like the data: after
    # a SIGKILL under such writes, every acknowledged APPEND is there and its key still
    # reports raw; keys last written by SET do not.
    srv = ServerProc("persimmon")
    numbers = itertools.count()

    def step(c: redis.Redis) -> int:
        i = next(numbers)
        c.append(f"a{i % 20}", "x")   # (existing after the first round: raw)
        c.setrange(f"r{i % 20}", 1, "yz")
        c.set(f"s{i % 20}", i)        # a whole value: int, no mark
        c.setbit(f"b{i % 20}", 9, 1)
        return i

    try:
        acked = _sigkill_while_writing(srv, step, 0.8)
        assert len(acked) > 40
        c = srv.client()
        n = acked[-1] + 1
        for k in range(20):
            appends = (n - 1 - k) // 20 + 1  # acknowledged APPENDs to a{k}
            got = c.strlen(f"a{k}")
            assert got >= appends, f"acknowledged APPEND to a{k} lost"
            assert c.object("encoding", f"a{k}") == (b"raw" if got > 1 else b"embstr")
            assert c.object("encoding", f"r{k}") == b"raw"
            assert c.object("encoding", f"b{k}") == b"raw"
            assert c.object("encoding", f"s{k}") == b"int"
        c.set("a0", "fresh")
        assert c.object("encoding", "a0") == b"embstr"
        c.close()
    finally:
        srv.cleanup()
