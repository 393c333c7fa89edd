"""Redis compatibility the test suites and client libraries rely on: CONFIG, INFO, OBJECT
ENCODING, keyspace notifications, CLIENT REPLY/UNBLOCK, SCAN's guarantee, WATCH."""

from __future__ import annotations

import threading
import time

import pytest
import redis


def test_info_reports_a_plain_redis_version_and_persimmons_own(r):
    info = r.info()
    assert info["redis_version"] == "7.0.15"
    assert tuple(int(x) for x in info["redis_version"].split(".")) >= (7, 0, 0)
    assert info["persimmon_version"]
    r.set("x", 1)
    r.get("x")
    stats = r.info("commandstats")
    assert stats["cmdstat_get"]["calls"] >= 1 and "rejected_calls" in stats["cmdstat_get"]
    assert "used_memory" in r.info("memory") and "used_cpu_user" in r.info("cpu")
    with pytest.raises(redis.ResponseError):
        r.execute_command("INCR", "x", "y")
    assert r.info("errorstats")["errorstat_ERR"]["count"] >= 1


def test_config_knows_redis_parameters_under_old_and_new_names(r):
    old = r.config_get("hash-max-ziplist-entries")["hash-max-ziplist-entries"]
    try:
        r.config_set("hash-max-ziplist-entries", 2)
        assert r.config_get("hash-max-listpack-entries") == {"hash-max-listpack-entries": "2"}
        r.hset("h", mapping={"a": 1, "b": 2})
        assert r.object("encoding", "h") == b"listpack"
        r.hset("h", "c", 3)
        assert r.object("encoding", "h") == b"hashtable"
        r.config_set("zset-max-ziplist-value", "1kb")
        assert r.config_get("zset-max-listpack-value")["zset-max-listpack-value"] == "1024"
        with pytest.raises(redis.ResponseError, match="argument couldn't be parsed into an "
                           "integer"):
            r.config_set("set-max-intset-entries", "many")
        with pytest.raises(redis.ResponseError, match="Unknown option"):
            r.config_set("no-such-parameter", "1")
        with pytest.raises(redis.ResponseError, match="must be one of the following"):
            r.config_set("maxmemory-policy", "sometimes")
        assert len(r.config_get("*")) > 150
    finally:
        r.config_set("hash-max-ziplist-entries", old)
        r.config_set("zset-max-ziplist-value", 64)
    r.sadd("ints", 1, 2, 3)
    assert r.object("encoding", "ints") == b"intset"
    r.sadd("ints", "x")
    assert r.object("encoding", "ints") == b"hashtable"
    r.set("n", 12345)
    assert r.object("encoding", "n") == b"int"
    r.set("s", "x" * 45)
    assert r.object("encoding", "s") == b"raw"
    assert r.memory_usage("s") > 45


def test_keyspace_notifications(r, server):
    r.config_set("notify-keyspace-events", "KEA")
    try:
        p = server.client().pubsub()
        p.psubscribe("__key*__:*")
        assert p.get_message(timeout=2)["type"] == "psubscribe"
        r.set("k", "v")
        r.rpush("l", "a")
        r.rpop("l")  # emptied: rpop, then del
        got = []
        deadline = time.monotonic() + 3
        while len(got) < 8 and time.monotonic() < deadline:
            m = p.get_message(timeout=0.5)
            if m and m["type"] == "pmessage":
                got.append((m["channel"], m["data"]))
        db = r.connection_pool.connection_kwargs.get("db", 0)
        ks, ke = b"__keyspace@%d__:" % db, b"__keyevent@%d__:" % db
        assert got == [(ks + b"k", b"set"), (ke + b"set", b"k"),
                       (ks + b"l", b"rpush"), (ke + b"rpush", b"l"),
                       (ks + b"l", b"rpop"), (ke + b"rpop", b"l"),
                       (ks + b"l", b"del"), (ke + b"del", b"l")]
        assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": "AKE"}
        p.close()
    finally:
        r.config_set("notify-keyspace-events", "")


def test_client_reply_off_skip_on(server):
    import socket

    def cmd(*args: bytes) -> bytes:
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a)
                                                   for a in args)

    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(cmd(b"CLIENT", b"REPLY", b"OFF") + cmd(b"SET", b"a", b"1")
                  + cmd(b"CLIENT", b"REPLY", b"ON") + cmd(b"CLIENT", b"REPLY", b"SKIP")
                  + cmd(b"GET", b"a") + cmd(b"GET", b"a"))
        data = b""
        while data.count(b"\r\n") < 3:
            data += s.recv(100)
        # OFF, SET, SKIP and the skipped GET send nothing; ON and the last GET answer
        assert data == b"+OK\r\n$1\r\n1\r\n"


def test_client_unblock(r, server):
    blocked = server.client()
    cid = blocked.client_id()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", blocked.blpop("nolist", 0)))
    t.start()
    deadline = time.monotonic() + 5
    while r.info("clients")["blocked_clients"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.client_unblock(cid) == 1
    t.join(5)
    assert out["r"] is None
    assert r.client_unblock(cid) == 0


def test_sscan_returns_every_element_present_throughout_even_if_the_set_shrinks(r):
    r.sadd("big", *range(1000))
    seen: set = set()
    cursor, steps = 0, 0
    while True:
        cursor, items = r.sscan("big", cursor, count=20)
        seen.update(int(x) for x in items)
        steps += 1
        if steps == 3:
            r.srem("big", *range(100, 1000))
        if cursor == 0:
            break
    assert set(range(100)) <= seen


def test_watch_is_touched_by_flushall_and_swapdb_and_expiry(r):
    r.set("w", 1)
    with r.pipeline() as p:
        p.watch("w")
        r.flushall()
        p.multi()
        p.ping()
        with pytest.raises(redis.WatchError):
            p.execute()
    with r.pipeline() as p:
        p.watch("absent")
        r.flushall()  # the key did not exist: nothing changed for it
        p.multi()
        p.ping()
        assert p.execute() == [True]
    r.set("e", 1, px=50)
    with r.pipeline() as p:
        p.watch("e")
        time.sleep(0.1)  # expires while watched
        p.multi()
        p.ping()
        with pytest.raises(redis.WatchError):
            p.execute()


def test_expire_overflow_and_setrange_limits(r):
    r.set("foo", "bar")
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'expire'"):
        r.expire("foo", 9223370399119966)
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'getex'"):
        r.getex("foo", ex=10000000000000000)
    assert r.ttl("foo") == -1
    with pytest.raises(redis.ResponseError, match="maximum allowed size"):
        r.setrange("foo", 512 * 1024 * 1024, "x")
    with pytest.raises(redis.ResponseError, match="offset is out of range"):
        r.setrange("foo", -1, "x")
    assert r.get("foo") == b"bar"


def test_strings_changed_in_place_are_raw_encoded_as_in_redis(server, real_redis):
    """APPEND/SETRANGE/SETBIT/BITFIELD leave a string ``raw`` (Redis never converts it
    back); a SET, a DEL or a FLUSHDB ends that; APPEND creating a key keeps the argument's
    encoding."""
    def script(c):
        c.flushall()
        out = []
        c.set("k", 1234)
        out.append(c.object("encoding", "k"))
        c.setrange("k", 0, "2")
        out += [c.get("k"), c.object("encoding", "k")]
        c.set("k", 1234)
        out.append(c.object("encoding", "k"))
        c.append("k", "5")
        out.append(c.object("encoding", "k"))
        c.delete("k")
        c.append("k", "77")
        out.append(c.object("encoding", "k"))
        c.setbit("b", 1, 1)
        c.set("i", 12)
        c.bitfield("i").set("u8", 0, 0x31).execute()
        out += [c.object("encoding", "b"), c.object("encoding", "i"), c.get("i")]
        c.setrange("r", 0, "x")
        out.append(c.object("encoding", "r"))
        c.flushdb()
        c.set("r", "x")
        out.append(c.object("encoding", "r"))
        return out

    want = script(real_redis)
    assert want[:3] == [b"int", b"2234", b"raw"]
    assert script(server.client()) == want
