"""Streams, bitmaps, HyperLogLog, geo, SORT and DUMP/RESTORE through the server: the same
command sequences as a real redis-server 7 give the same replies (RESP2 and RESP3), DUMP
payloads cross between the two servers, blocking XREAD/XREADGROUP, verify mode (the PM copy
equals the DRAM copy), and SIGKILL under load of the families' writes."""

from __future__ import annotations

import random
import signal
import socket
import threading
import time

import pytest
import redis

from conftest import ServerProc

SCRIPTS = {
    "bitmaps": [
        "SETBIT b 7 1", "SETBIT b 7 0", "SETBIT b 100 1", "GET b", "GETBIT b 100",
        "GETBIT b 1000", "GETBIT nokey 3", "SETBIT b -1 1", "SETBIT b 4294967296 1",
        "SETBIT b 1 2", "SET s foobar", "BITCOUNT s", "BITCOUNT s 1 1", "BITCOUNT s 5 30 BIT",
        "BITCOUNT s -5 -1 BIT", "BITCOUNT s -1 -5", "BITCOUNT s 0", "BITCOUNT s 0 1 FOO",
        "BITPOS s 1", "BITPOS s 0", "BITPOS s 1 2 -1 BYTE", "BITPOS s 1 7 15 BIT",
        "BITPOS s 0 0 -1", "BITPOS nokey 0", "BITPOS nokey 1", "BITPOS s 2",
        "SET k1 foobar", "SET k2 abcdef", "BITOP AND dest k1 k2", "GET dest",
        "BITOP OR dest k1 k2", "BITOP XOR dest k1 k2 nokey", "GET dest", "BITOP NOT dest k1",
        "GET dest", "BITOP NOT dest k1 k2", "BITOP FOO dest k1", "BITOP AND dest nokey",
        "EXISTS dest", "LPUSH lst a", "BITOP AND dest lst", "GETBIT lst 0",
        "BITFIELD bf SET i8 0 100 GET i8 0", "BITFIELD bf INCRBY i8 0 100",
        "BITFIELD bf OVERFLOW SAT INCRBY i8 0 100", "BITFIELD bf OVERFLOW FAIL INCRBY i8 0 100",
        "BITFIELD bf SET u4 #2 7 GET u4 #2 GET u4 8", "BITFIELD bf SET i64 0 -1 GET u63 0",
        "BITFIELD bf OVERFLOW SAT SET u8 0 -1", "BITFIELD bf GET u64 0", "BITFIELD bf GET i8 -1",
        "BITFIELD bf OVERFLOW FOO", "BITFIELD bf FOO", "BITFIELD_RO bf GET i8 0 GET u3 5",
        "BITFIELD_RO bf SET i8 0 1", "BITFIELD nk3 SET u1 3 1", "GET nk3", "GET bf",
    ],
    "streams": [
        "XADD s 1-1 a 1", "XADD s 1-1 a 1", "XADD s 1-* b 2", "XADD s 2 c 3", "XADD s 0-0 a 1",
        "XADD s 5-x a 1", "XADD s 10-1 a", "XADD s2 NOMKSTREAM 11-1 a b",
        "XADD s MAXLEN 2 12-0 d 4", "XRANGE s - +", "XADD s MAXLEN = 2 MINID 1 13-0 d 4",
        "XADD s LIMIT 10 13-0 d 4", "XADD s MAXLEN 2 LIMIT 10 13-0 d 4",
        "XADD s MAXLEN -1 13-0 d 4", "XADD s MINID 12 14-0 d 5", "XRANGE s - +",
        "XADD big 1 a 1", "XADD big 2 a 2", "XADD big 3 a 3", "XADD big 4 a 4",
        "XRANGE big (1 (4", "XRANGE big (1 4 COUNT 2", "XRANGE big 2 4 COUNT 0",
        "XREVRANGE big + - COUNT 2", "XRANGE big abc +", "XRANGE nokey - +", "XDEL big 2 3 99",
        "XLEN big", "XTRIM big MAXLEN 1", "XTRIM big", "XTRIM big MAXLEN 1 LIMIT 10",
        "SET str x", "XADD str 1 a b", "XGROUP CREATE s g 0", "XGROUP CREATE s g 0",
        "XGROUP CREATE nokey g 0", "XGROUP CREATE newk g $ MKSTREAM",
        "XGROUP CREATE s g3 $ ENTRIESREAD -5", "XGROUP FOO s g", "XGROUP CREATE s",
        "XREADGROUP GROUP g alice COUNT 1 STREAMS s >", "XREADGROUP GROUP g bob STREAMS s >",
        "XREADGROUP GROUP g alice STREAMS s 0", "XREADGROUP GROUP g alice STREAMS s $",
        "XREADGROUP GROUP nog alice STREAMS s >", "XREAD COUNT 1 STREAMS s big 0 0",
        "XREAD STREAMS s >", "XPENDING s g", "XPENDING s nog", "XACK s g 1-1 1-1 2-0",
        "XGROUP CREATECONSUMER s g carol", "XGROUP DELCONSUMER s g bob",
        "XGROUP SETID s g $ ENTRIESREAD 2", "XGROUP DESTROY s g3", "XINFO GROUPS s",
        "XINFO STREAM s", "XINFO STREAM nokey", "XINFO FOO s", "XSETID s 5-0",
        "XSETID s 200-0 ENTRIESADDED 100 MAXDELETEDID 150-0", "XINFO STREAM s",
        "XCLAIM s g c2 0 12-0 99-0 JUSTID", "XCLAIM s g c2 abc 1-1",
        "XAUTOCLAIM s g c3 0 0 COUNT 0", "XAUTOCLAIM s g c3 0 0 JUSTID", "TYPE s",
    ],
    "hyperloglog": [
        "PFADD h", "PFADD h", "PFCOUNT h", "PFADD h a b c d e", "GET h", "PFCOUNT h", "GET h",
        "PFADD h2 x y z a", "PFCOUNT h h2", "PFMERGE hm h h2", "PFCOUNT hm", "GET hm",
        "SET str foo", "PFADD str a", "PFCOUNT str", "PFMERGE str h", "PFCOUNT nokey",
    ],
    "geo": [
        "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
        "GEOADD Sicily NX XX 1 1 a", "GEOADD Sicily 200 100 bad", "GEOADD Sicily 1 abc bad",
        "ZRANGE Sicily 0 -1 WITHSCORES", "GEODIST Sicily Palermo Catania km",
        "GEODIST Sicily Palermo Catania foo", "GEOHASH Sicily Palermo Catania nobody",
        "GEOPOS Sicily Palermo nobody", "GEORADIUS Sicily 15 37 200 km WITHDIST WITHCOORD ASC",
        "GEORADIUS Sicily 15 37 200 km COUNT 0", "GEORADIUS Sicily 15 37 -1 km",
        "GEORADIUS Sicily 15 37 200 km STOREDIST d", "ZRANGE d 0 -1 WITHSCORES",
        "GEORADIUSBYMEMBER Sicily Palermo 300 km ASC WITHDIST",
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHDIST WITHHASH",
        "GEOSEARCH Sicily BYRADIUS 10 km", "GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 5 km ANY",
        "GEOSEARCHSTORE d2 Sicily FROMMEMBER Palermo BYRADIUS 500 km DESC COUNT 1",
        "ZRANGE d2 0 -1 WITHSCORES", "GEOSEARCH nokey FROMLONLAT 15 37 BYBOX 1 1 km",
    ],
    "lcs": [
        "SET v1 ohmytext", "SET v2 mynewtext", "LCS v1 v2", "LCS v1 v2 LEN", "LCS v1 v2 IDX",
        "LCS v1 v2 IDX MINMATCHLEN 4 WITHMATCHLEN", "LCS v1 v2 IDX LEN", "LCS v1 v2 FOO",
        "SET a1 ACCGGTCGAGTGCGCGGAAGCCGGCCGAA", "SET a2 GTCGTTCGGAATGCCGTTGCTCTGTAAA",
        "LCS a1 a2", "LCS a1 a2 IDX WITHMATCHLEN", "LCS a1 nokey", "LPUSH l x", "LCS a1 l",
    ],
    "sort": [
        "RPUSH l 3 1 2 10", "SORT l", "SORT l DESC", "SORT l ALPHA", "SORT l LIMIT 1 2",
        "SORT l LIMIT 10 2", "MSET w_1 30 w_2 20 w_3 10 w_10 0", "SORT l BY w_*",
        "SORT l BY nosort", "SORT l BY nosort DESC LIMIT 0 2", "SORT l GET # GET w_*",
        "HSET o_1 f a", "HSET o_2 f b", "SORT l BY w_* GET o_*->f", "SORT l STORE dst",
        "LRANGE dst 0 -1", "SORT_RO l DESC", "SORT_RO l STORE x", "RPUSH bad 1 x",
        "SORT bad", "SORT l FOO", "SET str v", "SORT str", "SORT nokey", "SORT nokey STORE dst",
        "EXISTS dst", "SADD s c a b", "SORT s ALPHA", "SORT s BY nosort STORE ds",
        "LRANGE ds 0 -1", "ZADD z 1 x 2 y 3 z", "SORT z BY nosort DESC",
        "COMMAND GETKEYS SORT abc STORE invalid STORE stillbad STORE def",
        "COMMAND GETKEYS SORT abc GET store BY x LIMIT 0 1",
    ],
}


def _raw(port: int, protocol: int) -> redis.Redis:
    c = redis.Redis(port=port, protocol=protocol)
    c.response_callbacks.clear()
    return c


def _run(c: redis.Redis, script: list) -> list:
    out = []
    for line in script:
        try:
            v = c.execute_command(*line.split())
        except redis.ResponseError as e:
            v = ("error", str(e))
        if line.startswith(("XINFO STREAM", "XPENDING")) and isinstance(v, list | dict):
            v = repr(v)  # (compared whole: no idle times in these scripts)
        out.append(v)
    return out


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_family_replies_equal_redis(name, protocol, server, real_redis):
    port = real_redis.connection_pool.connection_kwargs["port"]
    ours, theirs = _raw(server.port, protocol), _raw(port, protocol)
    ours.flushall()
    theirs.flushall()
    a, b = _run(ours, SCRIPTS[name]), _run(theirs, SCRIPTS[name])
    ours.close()
    theirs.close()
    diffs = [(cmd, x, y) for cmd, x, y in zip(SCRIPTS[name], a, b, strict=True) if x != y]
    assert not diffs, "\n".join(f"{c!r}: ours={x!r} redis={y!r}" for c, x, y in diffs)


def _fill(c: redis.Redis) -> None:
    c.set("s", "hello")
    c.set("i", "-12345")
    c.set("big", "x" * 5000)
    c.rpush("l", "a", "1", *[str(i) for i in range(300)])
    c.sadd("si", 1, 2, 3, -5, 70000)
    c.sadd("ss", *[f"m{i}" for i in range(600)])
    c.zadd("z", {"a": 1.5, "b": -2, "c": 1e300})
    c.zadd("bz", {f"m{i}": i for i in range(300)})
    c.hset("h", mapping={"f": "v", "n": "12"})
    c.hset("bh", mapping={f"f{i}": "v" * i for i in range(200)})
    c.execute_command("XADD", "st", "1-1", "a", "1")
    c.execute_command("XADD", "st", "2-1", "a", "2", "b", "3")
    c.execute_command("XADD", "st", "3-0", "a", "4")
    c.execute_command("XGROUP", "CREATE", "st", "g", "0")
    c.execute_command("XREADGROUP", "GROUP", "g", "c1", "COUNT", "2", "STREAMS", "st", ">")
    c.execute_command("XDEL", "st", "2-1")
    c.pfadd("hll", "a", "b", "c")


def _show(c: redis.Redis, k: bytes) -> object:
    t = c.type(k)
    if t == b"string":
        return c.get(k)
    if t == b"list":
        return c.lrange(k, 0, -1)
    if t == b"set":
        return sorted(c.smembers(k))
    if t == b"zset":
        return c.zrange(k, 0, -1, withscores=True)
    if t == b"hash":
        flat = c.hgetall(k)
        return sorted(zip(flat[0::2], flat[1::2], strict=True))
    return (c.execute_command("XRANGE", k, "-", "+"), c.execute_command("XPENDING", k, "g"),
            c.execute_command("XINFO", "GROUPS", k))


def test_dump_payloads_cross_between_redis_and_here(server, real_redis):
    ours, theirs = _raw(server.port, 2), _raw(real_redis.connection_pool.connection_kwargs[
        "port"], 2)
    ours.flushall()
    theirs.flushall()
    _fill(ours)
    _fill(theirs)
    keys = sorted(ours.keys())
    assert len(keys) == 12
    for k in keys:
        ours.restore(b"r:" + k, 0, theirs.dump(k))  # redis-server's DUMP restores here
        assert _show(ours, b"r:" + k) == _show(theirs, k), k
        theirs.restore(b"o:" + k, 0, ours.dump(k))  # and ours there
        assert _show(theirs, b"o:" + k) == _show(ours, k), k
    with pytest.raises(redis.ResponseError, match="BUSYKEY"):
        ours.restore(b"s", 0, ours.dump(b"s"))
    with pytest.raises(redis.ResponseError, match="checksum"):
        ours.restore(b"x", 0, b"\x00\x01a\x0a\x00" + bytes(8))
    ours.restore(b"s", 100000, ours.dump(b"i"), replace=True)
    assert ours.get(b"s") == b"-12345" and 0 < ours.pttl(b"s") <= 100000
    ours.close()
    theirs.close()


def test_blocking_xread_and_xreadgroup(r, server):
    r.xgroup_create("bs", "g", "$", mkstream=True)
    got: dict = {}

    def reader(name: str, *args: str) -> None:
        c = _raw(server.port, 2)
        try:
            got[name] = c.execute_command(*args)
        except redis.ResponseError as e:
            got[name] = e
        c.close()

    threads = [
        threading.Thread(target=reader, args=("x", "XREAD", "BLOCK", "5000", "STREAMS", "bs",
                                              "$")),
        threading.Thread(target=reader, args=("g", "XREADGROUP", "GROUP", "g", "alice",
                                              "BLOCK", "5000", "STREAMS", "bs", ">")),
        threading.Thread(target=reader, args=("t", "XREAD", "BLOCK", "50", "STREAMS",
                                              "nokey", "0")),
    ]
    for t in threads:
        t.start()
    time.sleep(0.4)
    r.execute_command("XADD", "bs", "7-1", "f", "v")
    for t in threads:
        t.join(10)
    assert got["x"] == [[b"bs", [[b"7-1", [b"f", b"v"]]]]]
    assert got["g"] == [[b"bs", [[b"7-1", [b"f", b"v"]]]]]
    assert got["t"] is None  # timed out
    # the served XREADGROUP was a logged write: the entry is pending for alice
    assert r.xpending("bs", "g")["pending"] == 1
    # a group destroyed under a blocked reader answers NOGROUP
    t = threading.Thread(target=reader, args=("d", "XREADGROUP", "GROUP", "g", "bob", "BLOCK",
                                              "0", "STREAMS", "bs", ">"))
    t.start()
    time.sleep(0.3)
    r.execute_command("XGROUP", "DESTROY", "bs", "g")
    t.join(10)
    assert isinstance(got["d"], redis.ResponseError) and "NOGROUP" in str(got["d"])
    assert r.info("commandstats")["cmdstat_xreadgroup"]["failed_calls"] >= 1
    assert r.info("errorstats")["errorstat_NOGROUP"]["count"] >= 1


def test_a_command_split_after_a_type_byte_is_not_inline(server):
    """A chunk that ends in the '$' of a bulk header (hiredis consumes that byte) is part of
    a command: the next chunk is not an inline command."""
    s = socket.create_connection(("127.0.0.1", server.port))
    args = [b"PFADD", b"splitkey", *[b"%d" % i for i in range(50)]]
    req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)
    cut = req.index(b"$", 40) + 1
    s.sendall(req[:cut])
    time.sleep(0.2)
    s.sendall(req[cut:] + b"*1\r\n$4\r\nPING\r\n")
    buf = b""
    s.settimeout(5)
    while b"PONG" not in buf and b"-ERR" not in buf:
        buf += s.recv(4096)
    s.close()
    assert buf == b":1\r\n+PONG\r\n"


def _family_writes(c: redis.Redis, rng: random.Random, i: int) -> None:
    p = c.pipeline(transaction=False)
    p.execute_command("XADD", "vs", "MAXLEN", "~", "50", "*", "i", i)
    p.execute_command("XREADGROUP", "GROUP", "g", f"c{i % 3}", "COUNT", "2", "STREAMS", "vs",
                      ">")
    p.execute_command("XACK", "vs", "g", f"{i}-0")
    p.execute_command("XAUTOCLAIM", "vs", "g", "c9", "0", "0", "COUNT", "2")
    p.setbit("vb", rng.randrange(4000), 1)
    p.execute_command("BITFIELD", "vf", "OVERFLOW", "WRAP", "INCRBY", "u7", "#3", "100")
    p.pfadd("vh", *[f"e{rng.randrange(100000)}" for _ in range(20)])
    p.pfcount("vh")
    p.geoadd("vg", (rng.uniform(-179, 179), rng.uniform(-84, 84), f"p{rng.randrange(300)}"))
    p.execute_command("GEOSEARCHSTORE", "vgs", "vg", "FROMLONLAT", "0", "0", "BYRADIUS",
                      "8000", "km", "ASC", "COUNT", "5")
    p.rpush("vl", rng.randrange(1000))
    p.execute_command("SORT", "vl", "DESC", "LIMIT", "0", "3", "STORE", "vtop")
    p.execute()


def test_verify_mode_pm_copy_equals_dram_copy_for_every_family():
    """In verify mode the shadow compares every operation's reply and the whole state's
    digest: a family whose PM copy diverged would be reported (diverged > 0)."""
    srv = ServerProc("persimmon", extra=("--verify",)).start()
    try:
        c = srv.client()
        c.config_set("stream-node-max-entries", 7)
        c.config_set("hll-sparse-max-bytes", 400)
        c.xgroup_create("vs", "g", "$", mkstream=True)
        rng = random.Random(3)
        for i in range(120):
            _family_writes(c, rng, i)
        p = c.pipeline(transaction=True)  # and the same inside one transaction
        p.execute_command("XADD", "vs", "*", "in", "multi").pfadd("vh", "m").setbit("vb", 1, 0)
        p.execute_command("XREADGROUP", "GROUP", "g", "cm", "BLOCK", "100", "STREAMS", "vs",
                          ">")
        res = p.execute()
        assert res[3] is not None
        restored = c.dump("vs")
        c.restore("vs2", 0, restored)
        assert c.save()
        info = c.info("persimmon")
        assert info["diverged"] == 0 and info["shadow_errors"] == 0, info.get("shadow_message")
        assert c.xlen("vs") <= 60 and c.pfcount("vh") > 1000
        c.close()
    finally:
        srv.cleanup()


def test_sigkill_under_family_load_keeps_acknowledged_writes():
    srv = ServerProc("persimmon")
    try:
        acked_ids: list = []
        acked_bits: list = []
        acked_geo: list = []
        acked_hll: list = []
        for round_ in range(3):
            srv.start()
            stop = threading.Event()

            def load(rnd: int = round_, stop: threading.Event = stop) -> None:
                c = redis.Redis(port=srv.port, socket_timeout=5)
                i = 0
                try:
                    while not stop.is_set():
                        xid = c.execute_command("XADD", "cs", "*", "r", rnd, "i", i)
                        acked_ids.append(xid)
                        c.setbit("cb", rnd * 100000 + i, 1)
                        acked_bits.append(rnd * 100000 + i)
                        c.geoadd("cg", (i % 360 - 179.5, (i % 170) - 84.5, f"r{rnd}i{i}"))
                        acked_geo.append(f"r{rnd}i{i}".encode())
                        c.pfadd("ch", f"r{rnd}i{i}")
                        acked_hll.append(i)
                        i += 1
                except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
                    pass

            t = threading.Thread(target=load)
            before = len(acked_ids)
            t.start()
            deadline = time.monotonic() + 20  # (a loaded machine: wait for some progress)
            while len(acked_ids) < before + 15 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(random.Random(round_).uniform(0, 0.3))
            srv.kill(signal.SIGKILL)
            stop.set()
            t.join(10)
            srv.start()
            c = srv.client()
            ids = [e[0] for e in c.xrange("cs")]
            assert set(acked_ids) <= set(ids), "an acknowledged XADD was lost"
            assert ids == sorted(ids, key=lambda b: tuple(map(int, b.split(b"-"))))
            bits = c.get("cb") or b""
            assert all(bits[b >> 3] >> (7 - (b & 7)) & 1 for b in acked_bits)
            members = set(c.zrange("cg", 0, -1))
            assert set(acked_geo) <= members
            assert c.pfcount("ch") >= 0.9 * len(acked_hll)
            c.close()
            srv.stop()
        assert len(acked_ids) > 30
    finally:
        srv.cleanup()
