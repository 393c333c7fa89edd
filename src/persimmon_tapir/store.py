"""TAPIR-KV's replica logic: the multi-versioned store, the prepared set, the OCC check.

Every function here takes the replica state ``s`` (``state.ReplicaState``) and is
deterministic: it runs in the replica process on the DRAM state and, under persistence, again
in the shadow process on the persistent copy.  The data (plain containers only):

* ``s.store``: key -> the versions sorted by timestamp, flat: ``[us, cid, value, us, cid,
  value, ...]`` (a version is ``((us, cid), value)``, :func:`versions`).  One list of ints
  and bytes per key, not a list of pairs, because a persistent replica's recovery builds
  every object of the state again (three objects fewer per key made it a quarter faster).
* ``s.reads``: key -> {version ts read: largest timestamp of a committed transaction that
  read it} (the initial, absent version is ``ZERO``).  Kept apart from the versions so that
  a replica that missed the commit of a version still records, and checks writes against,
  the reads of it.
* ``s.prepared``: txn id -> ``(us, cid, packed)`` of transactions prepared (PREPARE-OK)
  and not yet committed or aborted here: the timestamp, and msgpack of the keys read, the
  keys written and ``coord`` (:func:`prepared_parts`), which names the Prepare operation at
  every participant shard, ``((shard, request id), ...)``, for a backup coordinator.  One
  flat tuple, not a tree of the read and write sets: the shadow of a persistent replica
  builds an entry on the PM copy at every Prepare and reads it back whole to free it at
  every Commit, and the values written are not needed here at all.
* ``s.prepared_reads`` and ``s.prepared_writes``: key -> the prepared transactions that
  read (write) it, flat: ``(txn_id, us, cid, txn_id, us, cid, ...)``; an index of
  ``s.prepared`` (changed only with it, by :func:`add_prepared`, :func:`drop_prepared`,
  :func:`clear_prepared`) so the OCC check looks up each key instead of reading every
  prepared transaction.  On a persistent replica's shadow, where reading a prepared entry
  from the PM copy builds its whole tree of tuples again, that scan was a third of the
  shadow's time; one flat tuple of ints per key is one object to build or free.
* ``s.decided``: txn id -> commit timestamp, or ``None`` when aborted.

A timestamp is ``(microseconds, client id)``.  A transaction is ``(txn_id, ts, reads,
writes)`` with reads ``((key, version_ts), ...)`` and writes ``((key, value), ...)``.
"""

from __future__ import annotations

import msgpack

__all__ = ["ZERO", "OK", "ABSTAIN", "ABORT", "RETRY", "occ_check", "prepare", "commit",
           "abort", "get", "versions", "result_name", "add_prepared", "drop_prepared",
           "clear_prepared", "prepared_ts", "prepared_parts"]

ZERO = (0, 0)
OK, ABSTAIN, ABORT, RETRY = 0, 1, 2, 3
_NAMES = {OK: "PREPARE-OK", ABSTAIN: "ABSTAIN", ABORT: "ABORT", RETRY: "RETRY"}


def result_name(result: tuple) -> str:
    return _NAMES.get(result[0], "?") + (f"({tuple(result[1])})" if result[0] == RETRY else "")


def get(s, key: bytes) -> tuple:
    """The latest committed version: ``(value or None, version ts)``."""
    v = s.store.get(key)
    if not v:
        return (None, ZERO)
    return (v[-1], (v[-3], v[-2]))


def versions(s, key: bytes) -> list:
    """Every committed version of ``key`` this replica has, oldest first: ``[(ts, value)]``."""
    v = s.store.get(key) or []
    return [((v[i], v[i + 1]), v[i + 2]) for i in range(0, len(v), 3)]


def prepared_ts(p: tuple) -> tuple:
    """The timestamp of prepared set entry ``p``."""
    return (p[0], p[1])


def prepared_parts(p: tuple) -> tuple:
    """``(keys read, keys written, coord)`` of prepared set entry ``p``."""
    return msgpack.unpackb(p[2], raw=False, use_list=False)


def add_prepared(s, txn_id: int, ts: tuple, reads, writes, coord) -> None:
    """Put the transaction in the prepared set (replacing its entry, if any) and its keys in
    the index."""
    if txn_id in s.prepared:
        drop_prepared(s, txn_id)
    read_keys = tuple(k for k, _v in reads)
    write_keys = tuple(k for k, _v in writes)
    us, cid = ts
    s.prepared[txn_id] = (us, cid, msgpack.packb((read_keys, write_keys, tuple(coord)),
                                                 use_bin_type=True))
    mark = (txn_id, us, cid)
    for index, keys in ((s.prepared_reads, read_keys), (s.prepared_writes, write_keys)):
        for key in keys:
            old = index.get(key)
            index[key] = mark if old is None else tuple(old) + mark


def drop_prepared(s, txn_id: int) -> None:
    """Take the transaction out of the prepared set and the index (if it is there)."""
    p = s.prepared.pop(txn_id, None)
    if p is None:
        return
    read_keys, write_keys, _coord = prepared_parts(p)
    for index, keys in ((s.prepared_reads, read_keys), (s.prepared_writes, write_keys)):
        for key in keys:
            old = index.get(key)
            if old is None:
                continue
            if len(old) == 3:
                if old[0] == txn_id:
                    del index[key]
                continue
            kept = tuple(x for i in range(0, len(old), 3) if old[i] != txn_id
                         for x in old[i:i + 3])
            if kept:
                index[key] = kept
            else:
                del index[key]


def clear_prepared(s) -> None:
    s.prepared.clear()
    s.prepared_reads.clear()
    s.prepared_writes.clear()


def occ_check(s, txn_id: int, ts: tuple, reads, writes) -> tuple:
    """TAPIR-OCC-CHECK at timestamp ``ts`` (serializable mode): the result, nothing changed."""
    ts = tuple(ts)
    for key, version in reads:
        version = tuple(version)
        if version >= ts:
            return (ABORT, None)
        # the first version after the one read, whether or not this replica has that one
        # (a replica that missed a commit still knows the later ones it has)
        nxt = None
        v = s.store.get(key) or ()
        for i in range(0, len(v), 3):
            if (v[i], v[i + 1]) > version:
                nxt = (v[i], v[i + 1])
                break
        if nxt is not None and nxt < ts:
            return (ABORT, None)  # a newer version was committed before ts
        w = s.prepared_writes.get(key)
        if w is not None:
            for i in range(0, len(w), 3):
                if w[i] != txn_id and version < (w[i + 1], w[i + 2]) < ts:
                    return (ABSTAIN, None)  # a prepared write would invalidate the read
    for key, _value in writes:
        # a committed transaction read a version older than ts at a timestamp after ts:
        # writing at ts would change what it read
        later = [tuple(rts) for version, rts in (s.reads.get(key) or {}).items()
                 if tuple(version) < ts < tuple(rts)]
        if later:
            return (RETRY, max(later))
        r = s.prepared_reads.get(key)
        if r is not None:
            for i in range(0, len(r), 3):
                if r[i] != txn_id and (r[i + 1], r[i + 2]) > ts:
                    return (ABSTAIN, None)  # a later prepared transaction read the key
    return (OK, None)


def prepare(s, txn_id: int, ts: tuple, reads, writes, coord=()) -> tuple:
    """Prepare as a consensus operation's execution: check, and record PREPARE-OK."""
    ts = tuple(ts)
    if txn_id in s.decided:
        return (OK, None) if s.decided[txn_id] is not None else (ABORT, None)
    p = s.prepared.get(txn_id)
    if p is not None:
        if prepared_ts(p) == ts:
            return (OK, None)
        drop_prepared(s, txn_id)  # a retry at a new timestamp: check again
    result = occ_check(s, txn_id, ts, reads, writes)
    if result[0] == OK:
        add_prepared(s, txn_id, ts, reads, writes, coord)
    return result


def commit(s, txn_id: int, ts: tuple, reads, writes) -> None:
    """Commit (an inconsistent operation): apply the writes at ``ts``; idempotent."""
    ts = tuple(ts)
    if txn_id in s.decided:
        return
    for key, version in reads:
        version = tuple(version)
        seen = s.reads.get(key)
        if seen is None:
            s.reads[key] = {version: ts}
        elif version not in seen or tuple(seen[version]) < ts:
            seen[version] = ts
    us, cid = ts
    for key, value in writes:
        v = s.store.get(key)
        if v is None:
            s.store[key] = [us, cid, value]
            continue
        i = len(v)
        while i > 0 and (v[i - 3], v[i - 2]) > ts:
            i -= 3
        if i > 0 and (v[i - 3], v[i - 2]) == ts:
            v[i - 1] = value
        elif i == len(v):
            v.append(us)
            v.append(cid)
            v.append(value)
        else:
            v.insert(i, value)
            v.insert(i, cid)
            v.insert(i, us)
    drop_prepared(s, txn_id)
    s.decided[txn_id] = ts


def abort(s, txn_id: int) -> None:
    """Abort (an inconsistent operation): drop the prepared entry; idempotent."""
    if txn_id in s.decided:
        return
    drop_prepared(s, txn_id)
    s.decided[txn_id] = None
