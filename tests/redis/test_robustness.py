"""No request takes the server down, and no stranger gets in: pathological glob patterns,
SIGTERM during a long command, protected mode."""

from __future__ import annotations

import re
import signal
import socket
import time

import pytest
import redis

from conftest import ServerProc
from persimmon_redis.server import DENIED, is_local_address


def test_keys_with_a_pathological_pattern_answers_in_milliseconds(r):
    r.set(b"a" * 40, 1)
    r.set(b"a" * 39 + b"b", 2)
    pattern = "a*" * 20 + "b"  # "a*a*...*a*b", the unit/keyspace regression
    t = time.perf_counter()
    assert r.keys(pattern) == [b"a" * 39 + b"b"]
    assert r.keys("a*" * 20 + "c") == []
    assert r.scan(0, match=pattern, count=1000)[1] == [b"a" * 39 + b"b"]
    assert time.perf_counter() - t < 0.5
    # worse: 2000 stars (beyond Redis's nesting limit: no match) against a long key
    r.set(b"x" * 5000, 1)
    t = time.perf_counter()
    assert r.keys("*x" * 2000 + "*y") == []
    assert time.perf_counter() - t < 2.0
    assert r.ping()


def test_psubscribe_with_a_pathological_pattern_does_not_stall_publish(r, server):
    p = server.client().pubsub()
    p.psubscribe("a*" * 30 + "b")
    p.get_message(timeout=2)
    t = time.perf_counter()
    assert r.publish("a" * 60, "m") == 0
    assert time.perf_counter() - t < 0.5
    p.close()


def _closed_after(log: bytes) -> float:
    m = re.search(rb"pool closed ([0-9.]+) s after the signal", log)
    assert m, log
    return float(m.group(1))


def _exit_seconds(proc, sig: int) -> float:
    t = time.monotonic()
    proc.send_signal(sig)
    proc.wait(30)
    return time.monotonic() - t


@pytest.mark.parametrize("mode", ["persimmon", "none"])
def test_sigterm_during_a_long_command_shuts_down_cleanly_within_a_second(mode):
    s = ServerProc(mode).start()
    try:
        c = s.client()
        c.set("k", "v")
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.sendall(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$2\r\n30\r\n")
        time.sleep(0.5)  # the server is now inside the command
        took = _exit_seconds(s.proc, signal.SIGTERM)
        assert s.proc.returncode == 0
        log = open(s.log_path, "rb").read()
        assert b"ready to exit" in log and b"abandoning it to shut down" in log
        # the server's own measure, signal to pool closed; the process exit after it adds
        # the interpreter's teardown (and waits for CPU on a shared machine)
        assert _closed_after(log) < 1.0, log
        assert took < 3.0, took
        slow.close()
        c.close()
        # the pool was closed cleanly: it opens again with the data
        s.start()
        assert s.client().get("k") == (b"v" if mode == "persimmon" else None)
    finally:
        s.cleanup()


def test_sigterm_during_a_long_keys_scan():
    s = ServerProc("none").start()
    try:
        c = s.client()
        pipe = c.pipeline(transaction=False)
        for i in range(150_000):
            pipe.set(f"key:{i:06d}:{'x' * 30}", 1)
        pipe.execute()
        slow = socket.create_connection(("127.0.0.1", s.port))
        # many stars: the general matcher, about a second or more over these keys
        pat = b"*k*e*y*:*9*9*x*x*x*x*x*x*x*x*x*x*x*x*z"
        slow.sendall(b"*2\r\n$4\r\nKEYS\r\n$%d\r\n%b\r\n" % (len(pat), pat))
        time.sleep(0.3)
        assert _exit_seconds(s.proc, signal.SIGTERM) < 3.0
        log = open(s.log_path, "rb").read()
        assert b"[b'KEYS'] interrupted by the shutdown" in log
        assert _closed_after(log) < 1.0, log
        slow.close()
        c.close()
    finally:
        s.cleanup()


def test_is_local_address_is_redis_islocalclient():
    assert is_local_address("127.0.0.1") and is_local_address("::1")
    assert is_local_address("::ffff:127.0.0.1")
    assert not is_local_address("127.0.0.2")  # loopback, but not local for Redis
    assert not is_local_address("10.1.2.3") and not is_local_address("::ffff:10.0.0.1")


def _connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.settimeout(3)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_protected_mode_refuses_non_local_clients_without_a_password():
    # A client connecting from 127.0.0.2 is not "local" for Redis (only 127.0.0.1 and ::1
    # are): a real non-loopback peer as far as the server's check goes, on any machine.
    s = ServerProc("none", extra=("--bind", "0.0.0.0")).start()
    try:
        far = _connect_from("127.0.0.2", s.port)
        assert _read_all(far) == DENIED  # at once, and the connection is closed
        far.close()
        near = s.client()
        assert near.ping()
        assert near.info("stats")["rejected_connections"] == 1
        assert near.config_get("protected-mode") == {"protected-mode": "yes"}
        # CONFIG SET protected-mode no (from the loopback interface) lets them in
        near.config_set("protected-mode", "no")
        far = _connect_from("127.0.0.2", s.port)
        far.sendall(b"PING\r\n")
        assert far.recv(100) == b"+PONG\r\n"
        far.close()
        # a password also lets them in (to authenticate)
        near.config_set("protected-mode", "yes")
        near.config_set("requirepass", "pw")
        far = _connect_from("127.0.0.2", s.port)
        far.sendall(b"PING\r\n")
        assert far.recv(100).startswith(b"-NOAUTH")
        far.close()
        near.close()
    finally:
        s.cleanup()


def test_protected_mode_off_from_the_command_line():
    s = ServerProc("none", extra=("--bind", "0.0.0.0", "--protected-mode", "no")).start()
    try:
        far = _connect_from("127.0.0.2", s.port)
        far.sendall(b"PING\r\n")
        assert far.recv(100) == b"+PONG\r\n"
        far.close()
        with pytest.raises(redis.ResponseError, match="immutable"):
            s.client().config_set("port", "1")
    finally:
        s.cleanup()
