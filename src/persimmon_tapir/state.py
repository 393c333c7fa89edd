"""One replica's whole state as a deterministic state machine: IR record + TAPIR-KV + view.

Everything a replica must not forget is here and changes only through :meth:`apply`, so the
persistence layer (``persistence.py``) can log each operation before the replica replies and
replay it after a crash.  Operations (tuples):

* ``(b"pi4", cid, rid, name, txn_id, ts, reads, writes)``: an inconsistent operation
  (``name`` ``b"commit"`` or ``b"abort"``) proposed: record it TENTATIVE.
* ``(b"fi4", cid, rid, name, txn_id, ts, reads, writes)``: finalize it: FINALIZED, and
  execute it (commit/abort).
* ``(b"pc4", cid, rid, txn_id, ts, reads, writes, coord)``: a Prepare (consensus operation)
  proposed: execute it, record the result TENTATIVE; returns ``(result, finalized)`` (the
  recorded one for a duplicate).
* ``(b"fc4", cid, rid, txn_id, ts, reads, writes, coord, result)``: finalize it with the
  decided result; returns the result recorded (a record installed by a view change wins
  over a late finalize).

(The tags name the state layout: layout 3 logged the same operations as ``b"pi"`` ...
``b"fc"``, on a state of another shape; such an operation in the log of an older pool
reaches the layout check in :meth:`ReplicaState.apply` instead of being misapplied.)
* ``("vc", view, status, latest_normal_view)``: the durable view number and status.
* ``("install", view, entries)``: START-VIEW: the master record replaces ours (IR Sync).
* ``("merge", view, records)``: the new view's leader merges f+1 records (IR-MERGE-RECORDS
  with TAPIR's Sync and Merge) and installs the result; returns the master record.

These four, one or two per transaction message, are made of tuples, bytes and ints only
(:func:`logged_op` builds them from the message), never a str and never 4 items long, so a
persistent replica's log packs them in compiled code: with the str names of the wire
(``("pc", cid, rid, ("prepare", ...))``, what a replica logged up to state layout 2)
every one was pickled by the Python path, 2-3 us each, the largest part
of what a persistent replica spent beyond an in-memory one.

Record entries: opid ``(cid, rid)`` -> ``[kind, state, view, op, result]`` (kind "I"/"C",
state "T"/"F"); on the wire ``(cid, rid, kind, state, view, op, result)``.  In the record
(layout 4) both are packed: the key is msgpack of ``(cid, rid)`` (:func:`opid_key`), the
entry msgpack of the list with the operation itself msgpack bytes inside
(:meth:`ReplicaState.entries` and :func:`record_op` unpack them).  The record is read only
by view changes and a backup coordinator, and one bytes object per entry under a bytes key
is one object for the shadow to store on the PM copy (the heap's compiled store) and for
recovery to materialize, instead of a tuple key and a list.
"""

from __future__ import annotations

from zlib import crc32

import msgpack

from . import store

__all__ = ["ReplicaState", "FORMAT", "LayoutMismatch", "NORMAL", "VIEW_CHANGE", "RECOVERING",
           "merge_records", "record_op", "logged_op", "opid_key"]


def _pack(op) -> bytes:
    return msgpack.packb(op, use_bin_type=True)


def opid_key(cid: int, rid: int) -> bytes:
    """The record's key of operation ``(cid, rid)``."""
    return msgpack.packb((cid, rid))


def _entry(kind: str, st: str, view: int, op: bytes, result) -> bytes:
    return msgpack.packb((kind, st, view, op, result), use_bin_type=True)


def _unentry(b: bytes) -> tuple:
    """``(kind, state, view, packed op, result)`` of a packed record entry."""
    return msgpack.unpackb(b, raw=False, use_list=False)


def record_op(entry):
    """The operation of record entry ``entry`` (a record written before ops were packed
    holds the tuple itself)."""
    op = entry[3]
    if isinstance(op, bytes):
        return msgpack.unpackb(op, raw=False, use_list=False)
    return op

NORMAL, VIEW_CHANGE, RECOVERING = "normal", "view-change", "recovering"
# The layout of this state and of the operations logged for it (2: packed record
# operations, flat store versions; 3: the compact transaction operations, which a replica
# of layout 2 would not understand in its log, and the prepared set's index by key; 4:
# every map bytes -> packed bytes (store.py), the operations tagged b"pi4" ... b"fc4"); a
# pool written with another layout is refused, not misread.
FORMAT = 4



class LayoutMismatch(BaseException):
    """``apply`` on a state of another layout: the log tail of a pool an older
    persimmon-tapir wrote, replayed as the pool opens.  Such a log holds no operation of the
    compact shape, so every operation reaches the check.  A BaseException, so that the PSM's
    replay (which passes over an operation's Exception: it raised the first time too) stops
    and the open fails before the shadow touches the pool; the pool stays as it was."""

    def __init__(self, layout: int) -> None:
        super().__init__(layout)
        self.layout = layout


_NAME_BYTES = {"commit": b"commit", "abort": b"abort"}
_NAMES = {b"commit": "commit", b"abort": "abort"}


def logged_op(msg: tuple) -> tuple:
    """The state machine operation for a (checked) PI, FI, PC or FC message, in the
    compact shape listed above."""
    name = msg[0]
    if name == "PC":  # ("PC", cid, rid, view, ("prepare", txn_id, ts, reads, writes, coord))
        return (b"pc4", msg[1], msg[2]) + msg[4][1:]
    if name == "FC":  # ("FC", cid, rid, ("prepare", ...), result)
        return (b"fc4", msg[1], msg[2]) + msg[3][1:] + (msg[4],)
    op = msg[4] if name == "PI" else msg[3]  # ("PI", cid, rid, view, op), ("FI", cid, rid, op)
    return (b"pi4" if name == "PI" else b"fi4", msg[1], msg[2], _NAME_BYTES[op[0]]) + op[1:]


class ReplicaState:
    def __init__(self, ident: tuple, status: str = NORMAL) -> None:
        self.ident = ident  # (cluster id, shard, replica index, replicas, shards)
        self.format = FORMAT
        self.view = 0
        self.latest_normal_view = 0 if status == NORMAL else -1
        self.status = status
        self.record = {}
        self.store = {}
        self.reads = {}
        self.prepared = {}
        self.prepared_reads = {}  # (store.py: the prepared set's index by key)
        self.prepared_writes = {}
        self.decided = {}

    def _mine(self, op):
        """The reads and writes of transaction operation ``op`` that belong to this shard
        (every shard gets the whole transaction, so a backup coordinator can finish it)."""
        shard, shards = self.ident[1], self.ident[4]
        if shards == 1:
            return tuple(op[3]), tuple(op[4])
        return (tuple(r for r in op[3] if crc32(r[0]) % shards == shard),
                tuple(w for w in op[4] if crc32(w[0]) % shards == shard))

    def _prepare(self, op):
        reads, writes = self._mine(op)
        return store.prepare(self, op[1], op[2], reads, writes, op[5])

    # -- the state machine -------------------------------------------------------------
    def apply(self, op):
        kind = op[0]
        if kind == b"pc4":
            return self._propose_consensus(opid_key(op[1], op[2]), ("prepare",) + op[3:8])
        if kind == b"fc4":
            return self._finalize_consensus(opid_key(op[1], op[2]), ("prepare",) + op[3:8],
                                            tuple(op[8]))
        if kind == b"fi4":
            return self._finalize_inconsistent(opid_key(op[1], op[2]),
                                               (_NAMES[op[3]],) + op[4:8])
        if kind == b"pi4":
            key = opid_key(op[1], op[2])
            if key not in self.record:
                self.record[key] = _entry("I", "T", self.view,
                                          _pack((_NAMES[op[3]],) + op[4:8]), None)
            return None
        if getattr(self, "format", 1) != FORMAT:  # (checked off the hot path: see below)
            raise LayoutMismatch(getattr(self, "format", 1))
        if kind == "vc":
            self.view, self.status, self.latest_normal_view = op[1], op[2], op[3]
            return None
        if kind == "install":
            self._install(op[1], op[2])
            return None
        if kind == "merge":
            return self._merge(op[1], op[2])
        raise ValueError(f"unknown replica operation {kind!r}")

    def _propose_consensus(self, opid, op):
        e = self.record.get(opid)
        if e is not None:
            e = _unentry(e)
            return (tuple(e[4]), e[1] == "F")
        if op[0] != "prepare":
            raise ValueError(f"unknown consensus operation {op[0]!r}")
        result = self._prepare(op)
        self.record[opid] = _entry("C", "T", self.view, _pack(op), result)
        return (result, False)

    def _finalize_inconsistent(self, opid, op):
        e = self.record.get(opid)
        if e is None:
            self.record[opid] = _entry("I", "F", self.view, _pack(op), None)
        else:
            e = _unentry(e)
            if e[1] == "F":
                return None
            self.record[opid] = _entry(e[0], "F", e[2], e[3], e[4])
        self._execute(op)
        return None

    def _execute(self, op):
        if op[0] == "commit":
            reads, writes = self._mine(op)
            store.commit(self, op[1], op[2], reads, writes)
        elif op[0] == "abort":
            store.abort(self, op[1])
        else:
            raise ValueError(f"unknown inconsistent operation {op[0]!r}")

    def _finalize_consensus(self, opid, op, result):
        e = self.record.get(opid)
        if e is None:
            self.record[opid] = _entry("C", "F", self.view, _pack(op), result)
        else:
            e = _unentry(e)
            if e[1] == "F":
                return tuple(e[4])
            self.record[opid] = _entry(e[0], "F", e[2], e[3], result)
        self._set_prepared(op, result)
        return result

    def _set_prepared(self, op, result):
        txn_id, ts = op[1], tuple(op[2])
        tk = store.txn_key(txn_id)
        if tk in self.decided:
            return
        p = self.prepared.get(tk)
        if result[0] == store.OK:
            # (an entry of this timestamp is the one the Prepare wrote: the same attempt of
            # the transaction, so the same value; not writing it again spares the shadow
            # building and freeing it on the PM copy once per transaction)
            if p is None or store.prepared_ts(p) < ts:
                reads, writes = self._mine(op)
                store.add_prepared(self, txn_id, ts, reads, writes, op[5])
        elif p is not None and store.prepared_ts(p) == ts:
            store.drop_prepared(self, txn_id)

    # -- view changes -------------------------------------------------------------------
    def entries(self):
        """``(cid, rid, [kind, state, view, packed op, result])`` of every record entry."""
        for k, e in self.record.items():
            cid, rid = msgpack.unpackb(k)
            yield cid, rid, _unentry(e)

    def record_entries(self) -> tuple:
        return tuple((cid, rid, e[0], e[1], e[2], record_op(e), e[4])
                     for cid, rid, e in self.entries())

    def _sync(self, entries):
        """TAPIR's Sync: make the store and prepared set follow the (finalized) ``entries``."""
        old = self.record
        for cid, rid, kind, _st, _v, op, _res in entries:
            if kind == "I":
                e = old.get(opid_key(cid, rid))
                if e is None or _unentry(e)[1] != "F":
                    self._execute(op)
        store.clear_prepared(self)
        for _cid, _rid, kind, _st, _v, op, res in entries:
            if kind == "C" and res[0] == store.OK:
                self._set_prepared(op, res)

    def _install(self, view, entries):
        self._sync(entries)
        rec = {}
        for cid, rid, kind, _st, v, op, res in entries:
            rec[opid_key(cid, rid)] = _entry(kind, "F", v, _pack(op), res)
        self.record = rec
        self.view, self.status, self.latest_normal_view = view, NORMAL, view

    def _merge(self, view, records):
        f = (self.ident[3] - 1) // 2
        r, d, u = merge_records(records, f)
        self._sync(r)  # executes inconsistent ops, re-derives prepared from finalized ones
        merged = []
        for _cid, _rid, op, _majority in d + u:
            store.drop_prepared(self, op[1])
        for cid, rid, op, majority in d:  # TAPIR-MERGE: results a fast path may have used
            if majority[0] == store.OK:
                res = self._prepare(op)
            else:
                res = majority
            merged.append((cid, rid, "C", "F", view, op, res))
        for cid, rid, op, _m in u:  # no fast or slow path can have completed: re-check
            res = self._prepare(op)
            if res[0] != store.OK:
                res = (store.ABORT, None)
            merged.append((cid, rid, "C", "F", view, op, res))
        master = tuple(r) + tuple(merged)
        self._install_after_sync(view, master)
        return master

    def _install_after_sync(self, view, entries):
        self.record = {opid_key(cid, rid): _entry(kind, "F", v, _pack(op), res)
                       for cid, rid, kind, _st, v, op, res in entries}
        self.view, self.status, self.latest_normal_view = view, NORMAL, view


def merge_records(records, f: int):
    """IR-MERGE-RECORDS' grouping: ``(R, d, u)`` from the records of the latest normal view.

    R: every inconsistent operation and every finalized consensus operation; d: tentative
    consensus operations whose result appears in at least ceil(f/2)+1 records, with that
    majority result; u: the other tentative ones.  Sorted by opid (deterministic).
    """
    r: dict = {}
    tentative: dict = {}
    for entries in records:
        for cid, rid, kind, st, v, op, res in entries:
            opid = (cid, rid)
            if kind == "I" or st == "F":
                if opid not in r or (st == "F" and r[opid][3] != "F"):
                    r[opid] = (cid, rid, kind, st, v, op, res if res is None else tuple(res))
                tentative.pop(opid, None)
            elif opid not in r:
                tentative.setdefault(opid, []).append((op, tuple(res)))
    need = (f + 1) // 2 + 1
    d, u = [], []
    for opid in sorted(tentative):
        found = tentative[opid]
        counts: dict = {}
        for _op, res in found:
            counts[res] = counts.get(res, 0) + 1
        best = max(sorted(counts), key=lambda k: counts[k])
        if counts[best] >= need:
            d.append((opid[0], opid[1], found[0][0], best))
        else:
            u.append((opid[0], opid[1], found[0][0], None))
    return [r[k] for k in sorted(r)], d, u
