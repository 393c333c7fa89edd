"""INFO's ``rdb_changes_since_last_save`` (Redis's ``server.dirty``) counts changes as
Redis 7.0 does for the commands that report them (SETBIT, BITFIELD, DEL, SADD, SREM), one
per other successful write, nothing for errors and reads; SAVE resets it.  Compared with a
real redis-server."""

from __future__ import annotations


def _dirty(c) -> int:
    return int(c.info("persistence")["rdb_changes_since_last_save"])


def _deltas(c) -> list[int]:
    c.flushall()
    c.save()
    out = []
    steps = [
        lambda: c.setbit("foo", 0, 0),            # creates the key: 1
        lambda: c.bitfield("foo2").set("i5", 0, 0).execute(),  # creates: 1
        lambda: c.setbit("foo", 0, 0),            # no change: 0
        lambda: c.bitfield("foo2").set("i5", 0, 0).execute(),  # no change: 0
        lambda: c.setbit("foo", 0, 1),            # 1
        lambda: c.bitfield("foo2").set("i5", 0, 1).set("i5", 0, 1).set("i5", 5, 3).execute(),
        lambda: c.bitfield("foo2").incrby("u2", 100, 1, "FAIL").incrby("u2", 100, 9,
                                                                     "FAIL").execute(),
        lambda: c.get("foo"),                     # a read: 0
        lambda: c.sadd("s", "a", "b", "a"),       # 2
        lambda: c.sadd("s", "a"),                 # 0
        lambda: c.srem("s", "a", "zz"),           # 1
        lambda: c.delete("s", "foo", "nope"),     # 2
        lambda: c.set("x", "1"),                  # 1
    ]
    for step in steps:
        before = _dirty(c)
        step()
        out.append(_dirty(c) - before)
    before = _dirty(c)
    try:
        c.lpush("x", "a")  # an error (WRONGTYPE): 0
    except Exception as e:
        out.append(str(e)[:9])
    out.append(_dirty(c) - before)
    out.append(_dirty(c) > 0)
    c.save()
    out.append(_dirty(c))
    return out


def test_dirty_counter_counts_changes_as_redis_does(server, real_redis):
    want = _deltas(real_redis)
    assert want[:5] == [1, 1, 0, 0, 1]  # (what the unit/bitops test checks)
    assert _deltas(server.client()) == want


def test_only_the_servers_own_copy_counts_changes(tmp_path):
    # execute_op counts changes on a plain state (the server's copy) and not on a copy
    # behind a transparent proxy (a Persimmon shadow's PM copy: nobody reads its count,
    # and the count cost its replay about 0.2 us per write)
    from persimmon.heap import Heap
    from persimmon_redis.keyspace import DIRTY
    from persimmon_redis.state import RedisState

    plain = RedisState(1)
    before = DIRTY[0]
    plain.apply((0, 0, (b"SET", b"k", b"v")))
    plain.apply((0, 0, (b"SADD", b"s", b"a", b"b")))
    assert DIRTY[0] == before + 3
    heap = Heap.create(str(tmp_path / "r.pool"), RedisState(1))
    try:
        pm = heap.root
        before = DIRTY[0]
        assert pm.apply((0, 0, (b"SET", b"k", b"v"))) == plain.apply((0, 0, (b"SET", b"k", b"v")))
        before = DIRTY[0]  # (after the plain copy's SET, which counted)
        assert pm.apply((0, 0, (b"SADD", b"s", b"a", b"b"))) == 2
        heap.end_op()
        assert DIRTY[0] == before
        assert dict(pm.dbs[0].data)[b"k"] == b"v" and set(pm.dbs[0].data[b"s"]) == {b"a", b"b"}
        before = DIRTY[0]
        plain.apply((0, 0, (b"DEL", b"k", b"s")))  # the plain copy counts again
        assert DIRTY[0] == before + 2
    finally:
        heap.close()
