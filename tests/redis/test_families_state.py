"""The data-plane families (streams, bitmaps, HyperLogLog, geo, SORT, RESTORE) as state-machine
operations: the same operations give the same replies and state on two DRAM copies and on
the PM copy (through proxies, as the shadow runs them), and the representations are
Redis's (HLL bytes, geohash scores, CRC-64, stream trimming by nodes)."""

from __future__ import annotations

import random

import pytest

from persimmon.digest import digest
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice
from persimmon_redis import geohash, hll, rdb
from persimmon_redis.state import RedisState


def family_ops(seed: int, n: int = 500) -> list:
    rng = random.Random(seed)
    out = []
    now = 1_700_000_000_000
    sid = [0]

    def xid() -> bytes:
        sid[0] += rng.randrange(1, 3)
        return b"%d-%d" % (sid[0] // 3, sid[0] % 3)

    for i in range(n):
        now += rng.randrange(0, 40)
        s = b"s%d" % rng.randrange(3)
        g = b"g%d" % rng.randrange(2)
        c = b"c%d" % rng.randrange(3)
        argv = rng.choice([
            (b"xadd", s, b"*", b"f", b"%d" % i),
            (b"xadd", s, b"MAXLEN", b"~", b"5", b"*", b"f", b"%d" % i),
            (b"xadd", s, b"MINID", b"0-1", xid(), b"a", b"b"),
            (b"xadd", s, b"NOMKSTREAM", b"%d-*" % (now + 1), b"x", b"y"),
            (b"xdel", s, b"%d-0" % (now - rng.randrange(200))),
            (b"xtrim", s, b"MAXLEN", b"3"),
            (b"xgroup", b"CREATE", s, g, b"0", b"MKSTREAM"),
            (b"xgroup", b"SETID", s, g, b"0"),
            (b"xgroup", b"CREATECONSUMER", s, g, c),
            (b"xgroup", b"DELCONSUMER", s, g, c),
            (b"\x00xreadgroup", b"GROUP", g, c, b"COUNT", b"2", b"STREAMS", s, b">"),
            (b"\x00xreadgroup", b"GROUP", g, c, b"STREAMS", s, b"0"),
            (b"xack", s, g, b"%d-0" % (now - rng.randrange(100))),
            (b"xclaim", s, g, c, b"0", b"%d-0" % (now - rng.randrange(100)), b"FORCE"),
            (b"xautoclaim", s, g, c, b"10", b"0", b"COUNT", b"3"),
            (b"copy", s, b"scopy", b"REPLACE"),
            (b"setbit", b"bm", b"%d" % rng.randrange(500), b"%d" % rng.randrange(2)),
            (b"bitop", b"XOR", b"bx", b"bm", b"bm2"),
            (b"bitfield", b"bm2", b"OVERFLOW", b"SAT", b"INCRBY", b"i5", b"#%d" % rng.randrange(9),
             b"%d" % rng.randrange(-20, 20)),
            (b"pfadd", b"h%d" % rng.randrange(2), *[b"e%d" % rng.randrange(5000)
                                                    for _ in range(rng.randrange(1, 40))]),
            (b"pfcount", b"h0"),
            (b"pfmerge", b"hm", b"h0", b"h1"),
            (b"geoadd", b"geo", b"%f" % rng.uniform(-180, 180), b"%f" % rng.uniform(-85, 85),
             b"p%d" % rng.randrange(50)),
            (b"georadius", b"geo", b"0", b"0", b"5000", b"km", b"STORE", b"near"),
            (b"geosearchstore", b"gs", b"geo", b"FROMLONLAT", b"10", b"10", b"BYBOX", b"9000",
             b"9000", b"km", b"ASC", b"COUNT", b"5", b"STOREDIST"),
            (b"rpush", b"nums", b"%d" % rng.randrange(100)),
            (b"sadd", b"set", b"%d" % rng.randrange(30)),
            (b"sort", b"set", b"BY", b"nosort", b"STORE", b"sorted"),
            (b"sort", b"nums", b"DESC", b"LIMIT", b"0", b"5", b"STORE", b"top"),
            (b"\x00datacfg", b"stream-node-max-entries", b"%d" % rng.choice([2, 3, 100])),
            (b"\x00datacfg", b"hll-sparse-max-bytes", b"%d" % rng.choice([40, 3000])),
            (b"exec", (b"xadd", b"sx", b"*", b"k", b"v"), (b"setbit", b"bx2", b"3", b"1"),
             (b"pfadd", b"hx", b"a", b"b")),
        ])
        out.append((0, now, argv))
    return out


def _restores(seed: int) -> list:
    """RESTORE of DUMP payloads of family values (the payloads made on a DRAM copy)."""
    st = RedisState(1)
    ops = family_ops(seed, 200)
    for op in ops:
        st.apply(op)
    now = ops[-1][1]
    out = []
    for k in sorted(st.dbs[0].data):
        v = st.dbs[0].data[k]
        out.append((0, now, (b"restore", b"r:" + k, b"0", rdb.dump(v), b"REPLACE")))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_same_family_ops_same_state(seed):
    a, b = RedisState(1), RedisState(1)
    ops = family_ops(seed)
    ra = [a.apply(op) for op in ops]
    rb = [b.apply(op) for op in ops]
    assert repr(ra) == repr(rb) and digest(a) == digest(b)
    kinds = {type(v).__name__ for v in a.dbs[0].data.values()}
    assert {"Stream", "bytes", "ZSet", "deque"} <= kinds


@pytest.mark.parametrize("seed", [3, 4])
def test_pm_copy_runs_the_families_like_the_dram_copy(seed):
    """Every family's operations on the DRAM copy and on the PM copy through proxies, op by
    op: equal replies, and equal digests of the whole state after a commit and reopen."""
    dram = RedisState(1)
    heap = Heap.create(SimDevice(16 << 20), RedisState(1))
    pm = heap.root
    ops = family_ops(seed, 400) + _restores(seed)
    for i, op in enumerate(ops):
        r1, r2 = dram.apply(op), pm.apply(op)
        heap.end_op()
        assert repr(r1) == repr(r2), (i, op[2][:3])
        if i % 60 == 59:
            heap.commit(i)
            pm = heap.root
    heap.commit(len(ops))
    assert digest(heap.materialize()) == digest(dram)


# ---------------------------------------------------------------------------- representations
def test_hll_bytes_are_redis():
    # the empty HLL: header and one XZERO of 16384 registers
    assert hll.empty() == b"HYLL\x01\x00\x00\x00" + bytes(8) + b"\x7f\xff"
    st = RedisState(1)
    # what redis-server 7.0 stores for PFADD h a b c, then after PFCOUNT (cached 3)
    st.apply((0, 1, (b"pfadd", b"abc", b"a", b"b", b"c")))
    body = b"`\xf3\x80P\xb1\x84K\xfb\x80BZ"
    assert st.dbs[0].data[b"abc"] == b"HYLL\x01" + bytes(10) + b"\x80" + body
    assert st.apply((0, 1, (b"pfcount", b"abc"))) == 3
    assert st.dbs[0].data[b"abc"] == b"HYLL\x01\x00\x00\x00\x03" + bytes(7) + body
    assert st.apply((0, 1, (b"pfadd", b"h"))) == 1
    assert st.apply((0, 1, (b"pfadd", b"h"))) == 0
    assert st.apply((0, 1, (b"pfcount", b"h"))) == 0
    items = [b"%d" % i for i in range(20000)]
    st.apply((0, 1, (b"pfadd", b"h", *items)))
    card = st.apply((0, 1, (b"pfcount", b"h")))
    assert abs(card - 20000) < 20000 * 0.02
    v = st.dbs[0].data[b"h"]
    assert v[4] == hll.DENSE and len(v) == hll.DENSE_SIZE
    assert hll.cached(v) == card  # PFCOUNT cached the cardinality in the header


def test_hll_sparse_promotes_at_the_configured_size():
    st = RedisState(1)
    st.apply((0, 1, (b"\x00datacfg", b"hll-sparse-max-bytes", b"100")))
    st.apply((0, 1, (b"pfadd", b"h", *[b"%d" % i for i in range(5)])))
    assert st.dbs[0].data[b"h"][4] == hll.SPARSE
    st.apply((0, 1, (b"pfadd", b"h", *[b"%d" % i for i in range(200)])))
    assert st.dbs[0].data[b"h"][4] == hll.DENSE


def test_corrupted_hll_is_an_error_not_a_crash():
    st = RedisState(1)
    st.apply((0, 1, (b"pfadd", b"h", b"a", b"b", b"c")))  # (the cached count is stale)
    st.apply((0, 1, (b"append", b"h", b"hello")))
    assert "INVALIDOBJ" in st.apply((0, 1, (b"pfcount", b"h"))).msg
    st.apply((0, 1, (b"set", b"h", b"HYLL\x07" + bytes(20))))
    assert "WRONGTYPE" in st.apply((0, 1, (b"pfadd", b"h", b"x"))).msg


def test_geohash_scores_and_strings_are_redis():
    # Palermo as Redis stores it (GEOADD Sicily 13.361389 38.115556 Palermo)
    assert geohash.encode(13.361389, 38.115556) == 3479099956230698
    lon, lat = geohash.decode(3479099956230698)
    assert geohash.human(lon) == b"13.36138933897018433"
    assert geohash.human(lat) == b"38.11555639549629859"
    assert geohash.hash_string(3479099956230698.0) == b"sqc8b49rny0"
    assert geohash.encode(15.087269, 37.502669) == 3479447370796909  # Catania
    d = geohash.distance(lon, lat, *geohash.decode(3479447370796909))  # GEODIST: stored points
    assert geohash.fixed4(d / 1000) == b"166.2742"


def test_crc64_and_payload_footer_are_redis():
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    p = rdb.dump(b"hello")
    assert p == b"\x00\x05hello\x0a\x00" + p[-8:] and rdb.check(p)
    assert not rdb.check(p[:-1] + bytes([p[-1] ^ 1]))
    assert rdb.load(rdb.dump(b"-123")) == b"-123"


def test_stream_approximate_trim_removes_whole_nodes():
    st = RedisState(1)
    st.apply((0, 1, (b"\x00datacfg", b"stream-node-max-entries", b"10")))
    for _ in range(100):
        st.apply((0, 1, (b"xadd", b"s", b"*", b"f", b"v")))
    assert st.apply((0, 1, (b"xadd", b"s", b"MAXLEN", b"~", b"55", b"LIMIT", b"30", b"*",
                             b"f", b"v"))) is not None
    assert st.apply((0, 1, (b"xlen", b"s"))) == 71
    assert st.apply((0, 1, (b"xtrim", b"s", b"MAXLEN", b"~", b"1"))) == 70
    assert st.apply((0, 1, (b"xtrim", b"s", b"MAXLEN", b"0"))) == 1


def test_star_ids_come_from_the_operation_clock():
    st = RedisState(1)
    assert st.apply((0, 5000, (b"xadd", b"s", b"*", b"a", b"1"))) == b"5000-0"
    assert st.apply((0, 5000, (b"xadd", b"s", b"*", b"a", b"1"))) == b"5000-1"
    assert st.apply((0, 4000, (b"xadd", b"s", b"*", b"a", b"1"))) == b"5000-2"  # clock back
    assert st.apply((0, 6000, (b"xadd", b"s", b"6000-*", b"a", b"1"))) == b"6000-0"


def test_xreadgroup_delivery_times_are_the_operation_clock():
    st = RedisState(1)
    st.apply((0, 100, (b"xadd", b"s", b"1-1", b"a", b"1")))
    st.apply((0, 100, (b"xgroup", b"CREATE", b"s", b"g", b"0")))
    st.apply((0, 200, (b"\x00xreadgroup", b"GROUP", b"g", b"c", b"STREAMS", b"s", b">")))
    assert st.apply((0, 1200, (b"xpending", b"s", b"g", b"-", b"+", b"10"))) == \
        [[b"1-1", b"c", 1000, 1]]
    assert st.apply((0, 1300, (b"xpending", b"s", b"g", b"IDLE", b"1200", b"-", b"+",
                               b"10"))) == []


def test_hll_vectorised_and_plain_paths_agree(monkeypatch):
    """numpy (when installed) only speeds up hashing and register conversions: the plain
    Python path gives the same registers, bytes and counts."""
    rng = random.Random(8)
    elements = [b"%r" % rng.random() for _ in range(3000)] + [bytes(rng.randrange(256) for _ in
                                                                    range(rng.randrange(40)))
                                                              for _ in range(500)]
    fast = hll.pat_lens(elements)
    h = hll.Hll(hll.empty())
    for i, c in fast:
        h.set(i, c, 3000)
    v = h.encode()
    regs = hll.registers(v)
    monkeypatch.setattr(hll, "_np", None)
    assert hll.pat_lens(elements) == fast == [hll.pat_len(e) for e in elements]
    assert hll.registers(v) == regs and v[4] == hll.DENSE
    assert hll.dense_from_registers(regs) == bytearray(v[hll.HDR:])
    assert hll.maxed(regs, bytes(hll.REGISTERS)) == regs
