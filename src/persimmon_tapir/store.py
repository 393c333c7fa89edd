"""TAPIR-KV's replica logic: the multi-versioned store, the prepared set, the OCC check.

Every function here takes the replica state ``s`` (``state.ReplicaState``) and is
deterministic: it runs in the replica process on the DRAM state and, under persistence, again
in the shadow process on the persistent copy.  State layout 4: every map is bytes -> bytes,
each value packed (``struct``, little-endian signed 64-bit integers), so that on the PM copy
a value is one object (one load, one store: the heap's compiled paths store a bytes value
under a bytes key in one call) instead of a tree of lists and tuples built and freed in
Python:

* ``s.store``: key -> every committed version: ``n`` (u32), then the ``n`` timestamps
  ``(us, cid)`` ascending, then the values newest first, each a u32 length and the bytes
  (:func:`versions`).  The latest version, which reads and most commits touch, is the last
  timestamp and the first value.
* ``s.reads``: key -> ``(version us, cid, read-at us, cid)`` records: for each version
  read, the largest timestamp of a committed transaction that read it (the initial, absent
  version is ``ZERO``).  Kept apart from the versions so that a replica that missed the
  commit of a version still records, and checks writes against, the reads of it.
* ``s.prepared``: :func:`txn_key` -> ``(us, cid)`` and msgpack of the keys read, the keys
  written and ``coord`` (:func:`prepared_parts`), which names the Prepare operation at
  every participant shard, ``((shard, request id), ...)``, for a backup coordinator:
  transactions prepared (PREPARE-OK) and not yet committed or aborted here.
* ``s.prepared_reads`` and ``s.prepared_writes``: key -> ``(txn_id, us, cid)`` records
  of the prepared transactions that read (write) it: an index of ``s.prepared`` (changed
  only with it, by :func:`add_prepared`, :func:`drop_prepared`, :func:`clear_prepared`)
  so the OCC check looks up each key instead of reading every prepared transaction.
* ``s.decided``: :func:`txn_key` -> the commit timestamp ``(us, cid)``, or ``b""`` when
  aborted (:func:`decision`).

A timestamp is ``(microseconds, client id)``; timestamps and transaction ids are signed
64-bit (``protocol.check_op`` drops a message with others).  A transaction is ``(txn_id,
ts, reads, writes)`` with reads ``((key, version_ts), ...)`` and writes ``((key, value),
...)``.
"""

from __future__ import annotations

from struct import Struct

import msgpack

__all__ = ["ZERO", "OK", "ABSTAIN", "ABORT", "RETRY", "occ_check", "prepare", "commit",
           "abort", "get", "versions", "result_name", "add_prepared", "drop_prepared",
           "clear_prepared", "prepared_ts", "prepared_parts", "prepared_items", "txn_key",
           "decision"]

ZERO = (0, 0)
OK, ABSTAIN, ABORT, RETRY = 0, 1, 2, 3
_NAMES = {OK: "PREPARE-OK", ABSTAIN: "ABSTAIN", ABORT: "ABORT", RETRY: "RETRY"}

_TS = Struct("<qq")
_TS3 = Struct("<qqq")
_READ = Struct("<qqqq")
_N = Struct("<I")
_pack_ts, _unpack_ts = _TS.pack, _TS.unpack_from
_pack_n, _unpack_n = _N.pack, _N.unpack_from
_ts_iter, _read_iter, _mark_iter = _TS.iter_unpack, _READ.iter_unpack, _TS3.iter_unpack


def txn_key(txn_id: int) -> bytes:
    """The key of transaction ``txn_id`` in ``s.prepared`` and ``s.decided``."""
    return msgpack.packb(txn_id)


def result_name(result: tuple) -> str:
    return _NAMES.get(result[0], "?") + (f"({tuple(result[1])})" if result[0] == RETRY else "")


def _unpack_versions(v: bytes) -> tuple:
    """``(timestamps ascending, values newest first)`` of a packed ``s.store`` value."""
    n = _unpack_n(v)[0]
    end = 4 + 16 * n
    stamps = list(_ts_iter(v[4:end]))
    values = []
    pos = end
    for _ in range(n):
        ln = _unpack_n(v, pos)[0]
        values.append(v[pos + 4:pos + 4 + ln])
        pos += 4 + ln
    return stamps, values


def _pack_versions(stamps: list, values: list) -> bytes:
    return b"".join([_pack_n(len(stamps))] + [_pack_ts(*t) for t in stamps]
                    + [_pack_n(len(x)) + x for x in values])


def get(s, key: bytes) -> tuple:
    """The latest committed version: ``(value or None, version ts)``."""
    v = s.store.get(key)
    if not v:
        return (None, ZERO)
    end = 4 + 16 * _unpack_n(v)[0]
    return (v[end + 4:end + 4 + _unpack_n(v, end)[0]], _unpack_ts(v, end - 16))


def versions(s, key: bytes) -> list:
    """Every committed version of ``key`` this replica has, oldest first: ``[(ts, value)]``."""
    v = s.store.get(key)
    if not v:
        return []
    stamps, values = _unpack_versions(v)
    return list(zip(stamps, reversed(values), strict=True))


def prepared_ts(p: bytes) -> tuple:
    """The timestamp of prepared set entry ``p``."""
    return _unpack_ts(p)


def prepared_parts(p: bytes) -> tuple:
    """``(keys read, keys written, coord)`` of prepared set entry ``p``."""
    return msgpack.unpackb(p[16:], raw=False, use_list=False)


def prepared_items(s) -> list:
    """``[(txn_id, entry)]`` of the prepared set."""
    return [(msgpack.unpackb(k), p) for k, p in s.prepared.items()]


def decision(s, txn_id: int, default=None):
    """The commit timestamp of a decided transaction, None when it aborted, else
    ``default``."""
    d = s.decided.get(txn_key(txn_id))
    if d is None:
        return default
    return _unpack_ts(d) if d else None


def add_prepared(s, txn_id: int, ts: tuple, reads, writes, coord) -> None:
    """Put the transaction in the prepared set (replacing its entry, if any) and its keys in
    the index."""
    tk = txn_key(txn_id)
    if tk in s.prepared:
        drop_prepared(s, txn_id)
    read_keys = tuple(k for k, _v in reads)
    write_keys = tuple(k for k, _v in writes)
    us, cid = ts
    s.prepared[tk] = _pack_ts(us, cid) + msgpack.packb((read_keys, write_keys, tuple(coord)),
                                                       use_bin_type=True)
    mark = _TS3.pack(txn_id, us, cid)
    for index, keys in ((s.prepared_reads, read_keys), (s.prepared_writes, write_keys)):
        for key in keys:
            old = index.get(key)
            index[key] = mark if old is None else old + mark


def drop_prepared(s, txn_id: int) -> None:
    """Take the transaction out of the prepared set and the index (if it is there)."""
    p = s.prepared.pop(txn_key(txn_id), None)
    if p is None:
        return
    read_keys, write_keys, _coord = prepared_parts(p)
    for index, keys in ((s.prepared_reads, read_keys), (s.prepared_writes, write_keys)):
        for key in keys:
            old = index.get(key)
            if old is None:
                continue
            if len(old) == 24:
                if _TS3.unpack(old)[0] == txn_id:
                    del index[key]
                continue
            kept = b"".join(old[i:i + 24] for i in range(0, len(old), 24)
                            if _TS3.unpack_from(old, i)[0] != txn_id)
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
    store, pwrites = s.store, s.prepared_writes
    for key, version in reads:
        version = tuple(version)
        if version >= ts:
            return (ABORT, None)
        # the first version after the one read, whether or not this replica has that one
        # (a replica that missed a commit still knows the later ones it has)
        v = store.get(key)
        if v:
            n = _unpack_n(v)[0]
            if _unpack_ts(v, 4 + 16 * (n - 1)) > version:  # (else none is newer)
                for t in _ts_iter(v[4:4 + 16 * n]):
                    if t > version:
                        if t < ts:
                            return (ABORT, None)  # a newer version was committed before ts
                        break
        w = pwrites.get(key)
        if w is not None:
            for t, us, cid in _mark_iter(w):
                if t != txn_id and version < (us, cid) < ts:
                    return (ABSTAIN, None)  # a prepared write would invalidate the read
    for key, _value in writes:
        # a committed transaction read a version older than ts at a timestamp after ts:
        # writing at ts would change what it read
        r = s.reads.get(key)
        if r is not None:
            later = [(rus, rcid) for vus, vcid, rus, rcid in _read_iter(r)
                     if (vus, vcid) < ts < (rus, rcid)]
            if later:
                return (RETRY, max(later))
        r = s.prepared_reads.get(key)
        if r is not None:
            for t, us, cid in _mark_iter(r):
                if t != txn_id and (us, cid) > ts:
                    return (ABSTAIN, None)  # a later prepared transaction read the key
    return (OK, None)


def prepare(s, txn_id: int, ts: tuple, reads, writes, coord=()) -> tuple:
    """Prepare as a consensus operation's execution: check, and record PREPARE-OK."""
    ts = tuple(ts)
    tk = txn_key(txn_id)
    d = s.decided.get(tk)
    if d is not None:
        return (OK, None) if d else (ABORT, None)
    p = s.prepared.get(tk)
    if p is not None:
        if prepared_ts(p) == ts:
            return (OK, None)
        drop_prepared(s, txn_id)  # a retry at a new timestamp: check again
    result = occ_check(s, txn_id, ts, reads, writes)
    if result[0] == OK:
        add_prepared(s, txn_id, ts, reads, writes, coord)
    return result


def _record_read(s, key: bytes, version: tuple, ts: tuple) -> None:
    r = s.reads.get(key)
    if r is None:
        s.reads[key] = _READ.pack(*version, *ts)
        return
    for i in range(0, len(r), 32):
        vus, vcid, rus, rcid = _READ.unpack_from(r, i)
        if (vus, vcid) == version:
            if (rus, rcid) < ts:
                s.reads[key] = r[:i] + _READ.pack(*version, *ts) + r[i + 32:]
            return
    s.reads[key] = r + _READ.pack(*version, *ts)


def _write(s, key: bytes, value: bytes, ts: tuple) -> None:
    v = s.store.get(key)
    if not v:
        s.store[key] = b"\x01\x00\x00\x00" + _pack_ts(*ts) + _pack_n(len(value)) + value
        return
    n = _unpack_n(v)[0]
    end = 4 + 16 * n
    if _unpack_ts(v, end - 16) < ts:  # the common case: a new latest version
        s.store[key] = (_pack_n(n + 1) + v[4:end] + _pack_ts(*ts) + _pack_n(len(value))
                        + value + v[end:])
        return
    stamps, values = _unpack_versions(v)  # (values newest first)
    i = len(stamps)
    while i > 0 and stamps[i - 1] > ts:
        i -= 1
    if i > 0 and stamps[i - 1] == ts:
        values[n - i] = value
    else:
        stamps.insert(i, ts)
        values.insert(n - i, value)
    s.store[key] = _pack_versions(stamps, values)


def commit(s, txn_id: int, ts: tuple, reads, writes) -> None:
    """Commit (an inconsistent operation): apply the writes at ``ts``; idempotent."""
    ts = tuple(ts)
    tk = txn_key(txn_id)
    if tk in s.decided:
        return
    for key, version in reads:
        _record_read(s, key, tuple(version), ts)
    for key, value in writes:
        _write(s, key, value, ts)
    drop_prepared(s, txn_id)
    s.decided[tk] = _pack_ts(*ts)


def abort(s, txn_id: int) -> None:
    """Abort (an inconsistent operation): drop the prepared entry; idempotent."""
    tk = txn_key(txn_id)
    if tk in s.decided:
        return
    drop_prepared(s, txn_id)
    s.decided[tk] = b""
