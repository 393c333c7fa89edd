"""The state machine is deterministic: the same operations give the same state, and apply()
never reads the clock or a random number."""

from __future__ import annotations

import random
import time

import pytest

from persimmon.heap import Heap
from persimmon.simdevice import SimDevice
from persimmon_redis.commands import COMMANDS
from persimmon_redis.state import RedisState, dump


def ops(seed: int, n: int = 400) -> list:
    rng = random.Random(seed)
    out = []
    now = 1_700_000_000_000
    for i in range(n):
        now += rng.randrange(0, 50)
        k = b"k%d" % rng.randrange(20)
        m = b"m%d" % rng.randrange(10)
        argv = rng.choice([
            (b"set", k, b"v%d" % i), (b"set", k, b"v", b"px", b"30"), (b"incr", k),
            (b"append", k, b"x"), (b"del", k), (b"hset", k, m, b"%d" % i),
            (b"hincrby", k, m, b"2"), (b"lpush", k, m), (b"rpop", k), (b"sadd", k, m),
            (b"srem", k, m), (b"zadd", k, b"%d" % rng.randrange(100), m), (b"zpopmin", k),
            (b"expire", k, b"1"), (b"\x00expired", k), (b"rename", k, b"k0"),
            (b"exec", (b"incr", b"ctr"), (b"lpush", b"lst", m), (b"select", b"2"),
             (b"set", b"indb2", m)),
            (b"zunionstore", b"zu", b"2", k, b"k1"), (b"sinterstore", b"si", k, b"k2"),
            (b"swapdb", b"0", b"%d" % rng.randrange(3)),
            (b"exec", (b"set", k, m), (b"swapdb", b"1", b"2"), (b"incr", k), (b"get", k)),
        ])
        out.append((rng.randrange(3), now, argv))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_ops_same_state(seed):
    # the two states take turns, op by op (the databases resolved for one must never
    # serve the other), and SWAPDB in and outside transactions is among the operations
    a, b = RedisState(4), RedisState(4)
    ra, rb = [], []
    for op in ops(seed):
        ra.append(a.apply(op))
        rb.append(b.apply(op))
    assert ra == rb and dump(a) == dump(b)
    c = RedisState(4)  # and the same as a state that ran alone
    assert [c.apply(op) for op in ops(seed)] == ra and dump(c) == dump(a)


@pytest.mark.parametrize("seed", [4, 5])
def test_pm_copy_reaches_the_dram_state_op_by_op(seed):
    """The same operations on the DRAM copy and on the PM copy (through proxies, as the
    shadow runs them), interleaved: equal replies, and equal datasets after a reopen."""
    dram = RedisState(4)
    heap = Heap.create(SimDevice(4 << 20), RedisState(4))
    pm = heap.root
    for i, op in enumerate(ops(seed, 600)):
        r1, r2 = dram.apply(op), pm.apply(op)
        heap.end_op()
        assert repr(r1) == repr(r2), (i, op)
        if i % 50 == 49:
            heap.commit(i)
            pm = heap.root  # a fresh root proxy after a commit, as the shadow takes
    heap.commit(600)
    assert dump(heap.materialize()) == dump(dram)


def test_apply_reads_no_clock_and_no_randomness(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("apply() must not read the clock or random numbers")

    for name in ("time", "time_ns", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, forbidden)
    for name in ("random", "randrange", "choice", "sample", "shuffle", "randint"):
        monkeypatch.setattr(random, name, forbidden)
    s = RedisState(4)
    import persimmon_redis.state as st_mod

    for op in _fixed_ops():
        st_mod.RedisState.apply(s, op)


def _fixed_ops() -> list:
    rng = random.Random(9)
    lst = ops(9)
    del rng
    return lst


def test_every_write_command_is_in_the_table():
    writes = {n for n, c in COMMANDS.items() if c.write}
    assert {b"set", b"del", b"lpush", b"zadd", b"hset", b"sadd", b"expire"} <= writes


def test_plain_set_replaces_expired_and_other_typed_values_and_drops_the_ttl():
    s = RedisState(1)
    t = 1_700_000_000_000
    s.apply((0, t, (b"set", b"a", b"1", b"px", b"5")))
    s.apply((0, t, (b"rpush", b"l", b"x")))
    s.apply((0, t, (b"set", b"b", b"1", b"ex", b"100")))
    assert s.apply((0, t + 10, (b"set", b"a", b"2"))) == s.apply((0, t, (b"set", b"l", b"s")))
    s.apply((0, t + 10, (b"set", b"b", b"2")))
    db = s.dbs[0]
    assert db.data == {b"a": b"2", b"l": b"s", b"b": b"2"} and db.expires == {}


def test_state_digest_is_stable_and_sees_every_database():
    # Verify mode compares digests of the DRAM and the PM state.  Each object's
    # attributes were fed through a temporary dict keyed by id(): a later temporary could
    # reuse that id and be fed as a back-reference to it, so the digest of one unchanged
    # state changed from call to call (and the foreground and the shadow disagreed: a
    # false "divergence" after SADD in about one run in four).
    from persimmon.digest import digest

    st = RedisState(16)
    st.apply((0, 1, (b"SADD", b"s", *[b"m%d" % i for i in range(200)])))
    base = digest(st)
    for i in range(16):
        st.dbs[i].data[b"x"] = b"1"
        assert digest(st) != base, i
        del st.dbs[i].data[b"x"]
        assert digest(st) == base, i


def test_a_pool_made_before_db_raw_existed_marks_raw_strings_on_first_use():
    # (Db.raw is new: an old pool's databases have only the class default, None)
    from persimmon_redis.keyspace import Ctx, forget_views
    from persimmon_redis.state import RedisState
    st = RedisState(2)
    for db in st.dbs:
        del db.raw
    forget_views()
    assert st.apply((0, 0, (b"set", b"k", b"12"))) == "OK"
    assert st.apply((0, 0, (b"setrange", b"k", b"0", b"3"))) == 2
    assert st.dbs[0].raw == {b"k"}
    from persimmon_redis.registry import COMMANDS
    assert COMMANDS[b"object"].fn(Ctx(st, 0, 0), [b"object", b"encoding", b"k"]) == b"raw"
    assert st.apply((0, 0, (b"del", b"k"))) == 1
    assert st.dbs[0].raw == set()
