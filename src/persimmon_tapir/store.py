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
* ``s.prepared``: txn id -> ``(ts, reads, writes, coord)`` of transactions prepared
  (PREPARE-OK) and not yet committed or aborted here; ``coord`` names the Prepare operation
  at every participant shard, ``((shard, request id), ...)``, for a backup coordinator.
* ``s.decided``: txn id -> commit timestamp, or ``None`` when aborted.

A timestamp is ``(microseconds, client id)``.  A transaction is ``(txn_id, ts, reads,
writes)`` with reads ``((key, version_ts), ...)`` and writes ``((key, value), ...)``.
"""

from __future__ import annotations

__all__ = ["ZERO", "OK", "ABSTAIN", "ABORT", "RETRY", "occ_check", "prepare", "commit",
           "abort", "get", "versions", "result_name"]

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


def _prepared_writes(s, key, txn_id):
    for tid, p in s.prepared.items():
        if tid == txn_id:
            continue
        for k, _v in p[2]:
            if k == key:
                yield tuple(p[0])
                break


def _prepared_read_after(s, key, ts, txn_id) -> bool:
    for tid, p in s.prepared.items():
        if tid == txn_id or tuple(p[0]) <= ts:
            continue
        for k, _v in p[1]:
            if k == key:
                return True
    return False


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
        for wts in _prepared_writes(s, key, txn_id):
            if version < wts < ts:
                return (ABSTAIN, None)  # a prepared write would invalidate the read
    for key, _value in writes:
        # a committed transaction read a version older than ts at a timestamp after ts:
        # writing at ts would change what it read
        later = [tuple(rts) for version, rts in (s.reads.get(key) or {}).items()
                 if tuple(version) < ts < tuple(rts)]
        if later:
            return (RETRY, max(later))
        if _prepared_read_after(s, key, ts, txn_id):
            return (ABSTAIN, None)
    return (OK, None)


def prepare(s, txn_id: int, ts: tuple, reads, writes, coord=()) -> tuple:
    """Prepare as a consensus operation's execution: check, and record PREPARE-OK."""
    ts = tuple(ts)
    if txn_id in s.decided:
        return (OK, None) if s.decided[txn_id] is not None else (ABORT, None)
    p = s.prepared.get(txn_id)
    if p is not None:
        if tuple(p[0]) == ts:
            return (OK, None)
        del s.prepared[txn_id]  # a retry at a new timestamp: check again
    result = occ_check(s, txn_id, ts, reads, writes)
    if result[0] == OK:
        s.prepared[txn_id] = (ts, tuple(reads), tuple(writes), tuple(coord))
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
    s.prepared.pop(txn_id, None)
    s.decided[txn_id] = ts


def abort(s, txn_id: int) -> None:
    """Abort (an inconsistent operation): drop the prepared entry; idempotent."""
    if txn_id in s.decided:
        return
    s.prepared.pop(txn_id, None)
    s.decided[txn_id] = None
