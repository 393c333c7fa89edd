"""TAPIR-KV's multi-versioned store in its flat form (``[us, cid, value, ...]`` per key)."""

from __future__ import annotations

from persimmon_tapir import store
from persimmon_tapir.state import ReplicaState


def _commit(s, txn, ts, writes, reads=()):
    store.commit(s, txn, ts, reads, writes)


def test_versions_stay_sorted_whatever_order_commits_arrive_in():
    s = ReplicaState((1, 0, 0, 3, 1))
    assert store.get(s, b"k") == (None, store.ZERO) and store.versions(s, b"k") == []
    for txn, ts, v in ((1, (50, 2), b"b"), (2, (10, 7), b"a"), (3, (90, 1), b"d"),
                       (4, (50, 3), b"c"), (5, (5, 9), b"0")):
        _commit(s, txn, ts, ((b"k", v),))
    assert store.versions(s, b"k") == [((5, 9), b"0"), ((10, 7), b"a"), ((50, 2), b"b"),
                                       ((50, 3), b"c"), ((90, 1), b"d")]
    assert store.get(s, b"k") == (b"d", (90, 1))
    # the same timestamp again (another transaction id): the value at that version changes
    _commit(s, 6, (50, 2), ((b"k", b"B"),))
    assert store.versions(s, b"k")[2] == ((50, 2), b"B") and len(store.versions(s, b"k")) == 5
    # a commit already decided changes nothing
    _commit(s, 1, (50, 2), ((b"k", b"x"),))
    assert store.versions(s, b"k")[2] == ((50, 2), b"B")


def test_occ_check_sees_the_next_version_after_the_one_read():
    s = ReplicaState((1, 0, 0, 3, 1))
    _commit(s, 1, (10, 1), ((b"k", b"a"),))
    _commit(s, 2, (30, 1), ((b"k", b"b"),))
    # read version (10, 1); a version (30, 1) was committed before ts 40: abort
    assert store.occ_check(s, 3, (40, 1), (((b"k"), (10, 1)),), ())[0] == store.ABORT
    # at ts 20 the read is still the latest version before it
    assert store.occ_check(s, 4, (20, 1), (((b"k"), (10, 1)),), ())[0] == store.OK
    # reading the latest version is fine at any later timestamp
    assert store.occ_check(s, 5, (99, 1), (((b"k"), (30, 1)),), ())[0] == store.OK
