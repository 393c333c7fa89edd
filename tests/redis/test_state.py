"""The state machine is deterministic: the same operations give the same state, and apply()
never reads the clock or a random number."""

from __future__ import annotations

import random
import time

import pytest

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
        ])
        out.append((rng.randrange(3), now, argv))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_ops_same_state(seed):
    a, b = RedisState(4), RedisState(4)
    ra = [a.apply(op) for op in ops(seed)]
    rb = [b.apply(op) for op in ops(seed)]
    assert ra == rb and dump(a) == dump(b)


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
