"""The heap's reference counts (in DRAM), the slot stores that keep them, reclamation.

``_rc`` maps an object to its count when that count is not 1 (so most objects cost
nothing); the walk at open recomputes them (:mod:`persimmon.graphwalk`).  An object whose
count drops to zero is freed at the operation's end (its children too); its chunk becomes
reusable after the next commit.  Also how to list an object's children and internal arrays,
which the walk and reclamation share.

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import layout as L
from .errors import CorruptPoolError

_q_pack = L.S_q.pack_into
_q_unpack = L.S_q.unpack_from
_Q_unpack = L.S_Q.unpack_from
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
# Container field offsets (layout.py)
_LIST_CAP, _LIST_ITEMS, _LIST_SIZE = L.LIST_CAP, L.LIST_ITEMS, L.LIST_SIZE
_HT_NENT, _HT_ITAB, _HT_ENTS, _HT_SIZE = L.HT_NENT, L.HT_ITAB, L.HT_ENTS, L.HT_SIZE
_DQ_CAP, _DQ_ITEMS, _DQ_HEAD = L.DQ_CAP, L.DQ_ITEMS, L.DQ_HEAD
_OBJ_CLASS, _OBJ_DICT, _OBJ_SIZE = L.OBJ_CLASS, L.OBJ_DICT, L.OBJ_SIZE
_OPQ_BLOB, _OPQ_SIZE = L.OPQ_BLOB, L.OPQ_SIZE
_LEAVES = L.LEAVES


class RefCounts:
    """The heap's reference counts (in DRAM), the slot stores that keep them, reclamation.

    State used (set by ``Heap.__init__``): _ctop, _deferred, _fresh_big, _logged, _nolog,
    _opaque, _rc, _writable, _zero, buf, fast, undo."""

    # Reference counts live in DRAM: ``_rc`` maps an object to its count when that count is
    # not 1 (so most objects cost nothing); the walk at open recomputes them.
    def incref(self, x: int) -> None:
        if x > 0 and not x & 7:
            rc = self._rc.get(x, 1) + 1
            if rc == 1:
                del self._rc[x]
            else:
                self._rc[x] = rc

    def decref(self, x: int) -> None:
        if x > 0 and not x & 7:
            rcd = self._rc
            rc = rcd.get(x, 1) - 1
            if rc == 1:
                del rcd[x]
            elif rc == 0 and x not in rcd and self.buf[x] in _LEAVES:
                # A str/bytes/number is never handed out as a proxy nor memoized, so nothing
                # can store it again: free it now (reusable after the commit), not at end_op.
                self._deferred.append(x)
            else:
                if rc < 0:
                    raise CorruptPoolError(f"reference count below zero at {x}")
                rcd[x] = rc
                if rc == 0:
                    self._zero.append(x)

    def _born(self, off: int) -> None:
        """A new object: reference count 0 until stored; freed at end_op if never stored."""
        self._rc[off] = 0
        self._zero.append(off)

    def store_slot(self, off: int, x: int) -> None:
        """Store slot value ``x`` at ``off``, adjusting reference counts."""
        old = _q_unpack(self.buf, off)[0]
        if old == x:
            return
        if x > 0 and not x & 7:
            self.incref(x)
        self.store_i64(off, x)
        if old > 0 and not old & 7:
            self.decref(old)

    def store_blob(self, off: int, t: int, data: bytes) -> None:
        """Store a new bytes/str object holding ``data`` into the slot at ``off``.

        The fused form of ``store_slot(off, _new_blob(t, data))`` for the hottest store (a
        dict value overwritten with bytes): the slot's block is undo-logged first, so nothing
        is allocated if that fails, the new object goes straight to reference count 1, and
        the old value, if it was a leaf held once, is freed without a second call.
        The compiled fast path, when there is one, does the common case.
        """
        fast = self.fast
        if fast is not None and fast.store_blob(self, off, t, data):
            return
        b = off >> 5
        if off < self._ctop and b not in self._nolog:
            if self._fresh_big or not self._writable:
                self._log1(off)
            else:  # _log1 inline, for the common case
                self.undo.log_block(b << 5)
                self._nolog.add(b)
                self._logged.append(b)
        x = self._new_owned_blob(t, data)
        buf = self.buf
        old = _q_unpack(buf, off)[0]
        _q_pack(buf, off, x)
        if old > 0 and not old & 7:
            if old not in self._rc and buf[old] in _LEAVES:
                self._deferred.append(old)  # count 1 -> 0 (see decref)
            else:
                self.decref(old)

    def _reclaim(self) -> None:
        stack = self._zero
        self._zero = []
        rcd = self._rc
        while stack:
            off = stack.pop()
            if rcd.get(off, 1) != 0:
                continue
            del rcd[off]
            buf = self.buf
            t = buf[off]
            if t in _LEAVES:
                self._deferred.append(off)
                continue
            aux = _Q_unpack(buf, off + 8)[0]
            for child in self._children(off, t, aux):
                if child > 0 and not child & 7:
                    crc = rcd.get(child, 1) - 1
                    if crc == 1:
                        del rcd[child]
                    else:
                        rcd[child] = crc
                        if crc == 0:
                            stack.append(child)
            for inner in self._internal(off, t):
                self.free_after_commit(inner)
            self._opaque.pop(off, None)
            self._ix_forget(off)
            self.free_after_commit(off)

    def _children(self, off: int, t: int, aux: int) -> list[int]:
        buf = self.buf
        if t in (L.T_TUPLE, L.T_FROZENSET):
            return list(buf[off + 16 : off + 16 + 8 * aux].cast("q")) if aux else []
        if t == L.T_LIST:
            items = _q_unpack(buf, off + _LIST_ITEMS)[0]
            return list(buf[items + 16 : items + 16 + 8 * aux].cast("q")) if aux else []
        if t == L.T_DEQUE:
            return [x for x in self._deque_slots(off)]
        if t == L.T_DICT or t == L.T_SET:
            nent = _q_unpack(buf, off + _HT_NENT)[0]
            if not nent:
                return []
            ents = _q_unpack(buf, off + _HT_ENTS)[0] + 16
            es = L.entry_size(t)
            flat = buf[ents : ents + es * nent].cast("q").tolist()
            w = es >> 3
            out = []
            for i in range(0, len(flat), w):
                if flat[i + 1] != _DUMMY:
                    out.extend(flat[i + 1 : i + w])
            return out
        if t == L.T_OBJECT:
            return [_q_unpack(buf, off + _OBJ_CLASS)[0], _q_unpack(buf, off + _OBJ_DICT)[0]]
        if t == L.T_OPAQUE:
            return [_q_unpack(buf, off + _OPQ_BLOB)[0]]
        return []

    def _internal(self, off: int, t: int) -> list[int]:
        buf = self.buf
        if t == L.T_LIST:
            items = _q_unpack(buf, off + _LIST_ITEMS)[0]
            return [items] if items else []
        if t == L.T_DEQUE:
            items = _q_unpack(buf, off + _DQ_ITEMS)[0]
            return [items] if items else []
        if t == L.T_DICT or t == L.T_SET:
            out = []
            for f in (_HT_ITAB, _HT_ENTS):
                r = _q_unpack(buf, off + f)[0]
                if r:
                    out.append(r)
            return out
        return []

    def _deque_slots(self, off: int) -> Iterator[int]:
        buf = self.buf
        n = _Q_unpack(buf, off + 8)[0]
        cap = _q_unpack(buf, off + _DQ_CAP)[0]
        items = _q_unpack(buf, off + _DQ_ITEMS)[0] + 16
        head = _q_unpack(buf, off + _DQ_HEAD)[0]
        for i in range(n):
            yield _q_unpack(buf, items + 8 * ((head + i) % cap))[0]
