"""The heap's hash tables (dicts, sets, attribute dicts), with one probe in Python.

CPython's compact layout: an index table of u32 (0 empty, ``IX_DUMMY`` deleted) plus an
entries array ``(hash, key, value)`` in insertion order.  Every walk along a key's probe
sequence goes through :func:`probe_sequence` (``_speedups.c``'s ``probe_next`` is its
compiled twin).  Lookups try the table's DRAM index first (:mod:`persimmon.dramindex`), then
the compiled probe, then the Python one.

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import layout as L
from .allocator import write_header
from .dramindex import NO_KEY
from .errors import CorruptPoolError
from .hashing import INDEX_KEY_TYPES, phash

_q_pack = L.S_q.pack_into
_q_unpack = L.S_q.unpack_from
_Q_pack = L.S_Q.pack_into
_Q_unpack = L.S_Q.unpack_from
_I_pack = L.S_I.pack_into
_I_unpack = L.S_I.unpack_from
_Qqq_pack = L.S_Qqq.pack_into
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
_IX_EMPTY = L.IX_EMPTY
_IX_DUMMY = L.IX_DUMMY
_PERTURB_SHIFT = L.PERTURB_SHIFT
_MASK64 = (1 << 64) - 1
_HT_NENT, _HT_ITAB, _HT_ENTS, _HT_SIZE = L.HT_NENT, L.HT_ITAB, L.HT_ENTS, L.HT_SIZE
_IXT = INDEX_KEY_TYPES  # key types a table's DRAM index holds (hashing.py)


def probe_sequence(h: int, mask: int) -> Iterator[int]:
    """The index-table slots (numbers, 0..mask) that a key of hash ``h`` visits, in order,
    in a table of ``mask + 1`` slots: perturbed linear probing, CPython's dict scheme.  The
    one probe of the Python heap (``_speedups.c``'s ``probe_next`` is its compiled twin)."""
    h &= _MASK64
    i = h & mask
    perturb = h
    while True:
        yield i
        perturb >>= _PERTURB_SHIFT
        i = (i * 5 + perturb + 1) & mask


def _build_index(hashes: list[int], size: int) -> bytes:
    """The packed index table (u32 per slot, 0 = empty) of a hash table of ``size`` slots
    holding entries 1..n with ``hashes``."""
    mask = size - 1
    idx = [0] * size
    for j, hv in enumerate(hashes):
        for i in probe_sequence(hv, mask):
            if not idx[i]:
                idx[i] = j + 1
                break
    return L.struct_pack_I(idx)


def _rehash(buf: Any, old: int, nent: int, es: int, ents: int, itab: int, size: int) -> int:
    """Copy the live entries of the ``nent`` at ``old`` (``es`` bytes each; a key slot of
    ``DUMMY`` is a deleted one), in order, to ``ents`` and write the index table of ``size``
    slots for them at ``itab``; return how many were copied.  ``_speedups.rehash`` writes
    the same bytes in place."""
    w = es >> 3
    flat = buf[old : old + es * nent].cast("q").tolist()
    if _DUMMY in flat[1::w]:  # (key slots)
        keep: list[int] = []
        for i in range(0, len(flat), w):
            if flat[i + 1] != _DUMMY:
                keep.extend(flat[i : i + w])
        flat = keep
    if flat:
        buf[ents : ents + 8 * len(flat)] = L.struct_pack_q(flat)
    hashes = flat[0::w]
    buf[itab : itab + 4 * size] = _build_index(hashes, size)
    return len(hashes)


class HashTables:
    """The heap's hash tables (dicts, sets, attribute dicts), with one probe in Python.

    State used (set by ``Heap.__init__``): _ctop, _logged, _nolog, _strhash, buf, fast,
    table_indexes."""

    def _new_table(self, t: int, n: int) -> int:
        size = 8
        while size * 2 // 3 < n:
            size *= 2
        off = self._alloc(_HT_SIZE)
        buf = self.buf
        write_header(buf, off, t, buf[off + 1], 0, 0, 0)
        _q_pack(buf, off + _HT_NENT, 0)
        itab, ents = self._new_table_arrays(t, size)
        buf = self.buf
        _q_pack(buf, off + _HT_ITAB, itab)
        _q_pack(buf, off + _HT_ENTS, ents)
        _q_pack(buf, off + 40, 0)
        self._born(off)
        self._ix_new(off)
        return off

    def _new_table_arrays(self, t: int, size: int, zero: bool = True) -> tuple[int, int]:
        """A table's index array of ``size`` slots (zeroed unless ``zero`` is False: the
        caller fills all of it) and its entries array."""
        itab = self._alloc(16 + 4 * size)
        buf = self.buf
        write_header(buf, itab, L.T_RAW, buf[itab + 1], 0, 1, size)
        if zero:
            buf[itab + 16 : itab + 16 + 4 * size] = bytes(4 * size)
        cap = size * 2 // 3
        es = L.entry_size(t)
        ents = self._alloc(16 + es * cap)
        buf = self.buf
        write_header(buf, ents, L.T_RAW, buf[ents + 1], 0, 1, cap)
        return itab, ents

    def _key_matches(self, x: int, key: Any, kb: bytes | None, kt: int) -> bool:
        """Does stored key slot ``x`` equal ``key``?  ``kb``: encoded str/bytes key."""
        if kb is None:
            return self.load(x) == key
        if x & 7:
            return False
        buf = self.buf
        st = buf[x]
        if st != kt:
            if st == L.T_STR or st == L.T_BYTES:
                return False
            return self.load(x) == key
        n = _Q_unpack(buf, x + 8)[0]
        return n == len(kb) and buf[x + 16 : x + 16 + n] == kb

    def _ht_find(self, d: int, es: int, h: int, key: Any) -> tuple[int, int, int]:
        """Probe for ``key``: (index-table slot, entry offset or -1, first dummy slot or -1)."""
        buf = self.buf
        t = type(key)
        if t is bytes:
            kb, kt = key, L.T_BYTES
        elif t is str:
            kb, kt = key.encode("utf-8", "surrogatepass"), L.T_STR
        else:
            kb, kt = None, 0
        itab = _q_unpack(buf, d + _HT_ITAB)[0]
        base = itab + 16
        ents = _q_unpack(buf, d + _HT_ENTS)[0] + 16
        free = -1
        for i in probe_sequence(h, _Q_unpack(buf, itab + 8)[0] - 1):
            p = base + 4 * i
            ix = _I_unpack(buf, p)[0]
            if ix == _IX_EMPTY:
                return p, -1, free
            if ix == _IX_DUMMY:
                if free < 0:
                    free = p
            else:
                e = ents + (ix - 1) * es
                if _Q_unpack(buf, e)[0] == h:
                    x = _q_unpack(buf, e + 8)[0]
                    if self._key_matches(x, key, kb, kt):
                        return p, e, free
                    buf = self.buf
        raise AssertionError("unreachable")  # (the probe sequence never ends)

    def table_lookup(self, d: int, es: int, key: Any) -> int:
        """Offset of ``key``'s entry in table ``d``, or -1."""
        ix = self.table_indexes.get(d)
        if ix is not None and type(key) in _IXT:
            return ix.get(key, -1)
        fast = self.fast
        if fast is not None and (r := fast.ht_seek(self, d, es, key)) is not None:
            e = r[0]
        else:
            e = self._ht_find(d, es, self.key_hash(key), key)[1]
        self._ix_probed(d, es)
        return e

    def table_seek(self, d: int, es: int, key: Any) -> tuple[int, int, int]:
        """``(entry, 0, 0)`` if ``key`` is in table ``d``, else ``(-1, hash, insert slot)``."""
        ix = self.table_indexes.get(d)
        if ix is not None and type(key) in _IXT:
            e = ix.get(key, -1)
            if e >= 0:
                return e, 0, 0
            hv = self.key_hash(key)
            return -1, hv, self.table_free_slot(d, hv)
        fast = self.fast
        if fast is not None and (r := fast.ht_seek(self, d, es, key)) is not None:
            self._ix_probed(d, es)
            return r
        hv = self.key_hash(key)
        p, e, free = self._ht_find(d, es, hv, key)
        self._ix_probed(d, es)
        return e, hv, free if free >= 0 else p

    def key_hash(self, key: Any) -> int:
        if type(key) is str:
            h = self._strhash.get(key)
            if h is None:
                h = phash(key)
                if len(self._strhash) < 65536:
                    self._strhash[key] = h
            return h
        return phash(key)

    def table_insert(self, d: int, es: int, h: int, p: int, kslot: int, vslot: int,
                       key: Any) -> None:
        """Append an entry for ``key``, known to be absent (converted to ``kslot``); ``p`` is
        its index-table slot."""
        e, p, nent = self._ht_make_room(d, es, h, p)
        if kslot > 0 and not kslot & 7:
            self.incref(kslot)
        if vslot > 0 and not vslot & 7:
            self.incref(vslot)
        self._prepare_insert(d, es, e, p)
        self._ht_write_entry(d, es, h, p, e, nent, kslot, vslot)
        self._ix_add(d, key, e)

    def table_insert_blobs(self, d: int, h: int, p: int, kt: int, kdata: bytes,
                         vdata: bytes, key: Any) -> None:
        """:meth:`_ht_insert_new` of a dict entry whose key (bytes or str, encoded in
        ``kdata``) and value (bytes) are new objects: the fused form of the hottest insert.
        Room is made and the undo round done before anything is allocated, so a failure
        leaves nothing behind; the two objects start at reference count 1."""
        fast = self.fast
        if fast is not None:
            e = fast.insert_blobs(self, d, h, p, kt, kdata, vdata)
            if e is not None:
                self._ix_add(d, key, e)
                return
        buf = self.buf
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        ents = _q_unpack(buf, d + _HT_ENTS)[0]
        if nent < _Q_unpack(buf, ents + 8)[0]:
            e = ents + 16 + 24 * nent
        else:
            e, p, nent = self._ht_make_room(d, 24, h, p)
        self._prepare_insert(d, 24, e, p)
        kslot = self._new_owned_blob(kt, kdata)
        vslot = self._new_owned_blob(L.T_BYTES, vdata)
        buf = self.buf
        _Qqq_pack(buf, e, h, kslot, vslot)
        _I_pack(buf, p, nent + 1)
        _q_pack(buf, d + _HT_NENT, nent + 1)
        _Q_pack(buf, d + 8, _Q_unpack(buf, d + 8)[0] + 1)
        self._ix_add(d, key, e)

    def _prepare_insert(self, d: int, es: int, e: int, p: int) -> None:
        """Undo-log, in one round (one fence), what appending entry ``e`` (index slot ``p``)
        to table ``d`` overwrites: the table's header block (the counts) and the index slot.

        The entry itself needs no undo entry (its blocks are only flushed at commit): in a
        batch a table's entry count never goes down within one entries array (a delete
        leaves a dummy, a resize or a clear moves to a new array, fresh in the batch), so an
        appended entry lies past every entry the last commit knew, and rolling back the
        counts hides it.
        """
        ctop = self._ctop
        nolog = self._nolog
        if e < ctop:
            b = e >> 5
            if b not in nolog:
                self._logged.append(b)
            b1 = (e + es - 1) >> 5
            if b1 != b and b1 not in nolog:
                self._logged.append(b1)
        pb = p >> 5
        plog = p < ctop and pb not in nolog
        hb = d >> 5
        if d < ctop and hb not in nolog:
            self._log_round([hb, pb] if plog else [hb])
        elif plog:
            self._log1(p)  # the common case: the counts' block is logged already

    def _ht_make_room(self, d: int, es: int, h: int, p: int) -> tuple[int, int, int]:
        """``(entry offset, index slot, entry count)`` for one more entry, resizing first."""
        buf = self.buf
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        ents = _q_unpack(buf, d + _HT_ENTS)[0]
        cap = _Q_unpack(buf, ents + 8)[0]
        if nent >= cap:
            self._ht_resize(d, es)
            p = self.table_free_slot(d, h)
            buf = self.buf
            nent = _q_unpack(buf, d + _HT_NENT)[0]
            ents = _q_unpack(buf, d + _HT_ENTS)[0]
        return ents + 16 + nent * es, p, nent

    def _ht_write_entry(self, d: int, es: int, h: int, p: int, e: int, nent: int,
                        kslot: int, vslot: int) -> None:
        """Write entry ``nent`` at ``e``, its index slot ``p`` and the counts (undo-logged
        by the caller)."""
        buf = self.buf
        if es == 24:
            L.S_Qqq.pack_into(buf, e, h, kslot, vslot)
        else:
            L.S_Qq.pack_into(buf, e, h, kslot)
        _I_pack(buf, p, nent + 1)
        _q_pack(buf, d + _HT_NENT, nent + 1)
        _Q_pack(buf, d + 8, _Q_unpack(buf, d + 8)[0] + 1)

    def table_free_slot(self, d: int, h: int) -> int:
        """The index slot (its offset) an insert of a key of hash ``h`` into table ``d``
        takes: the first empty or deleted one of its probe sequence."""
        buf = self.buf
        itab = _q_unpack(buf, d + _HT_ITAB)[0]
        base = itab + 16
        for i in probe_sequence(h, _Q_unpack(buf, itab + 8)[0] - 1):
            p = base + 4 * i
            if _I_unpack(buf, p)[0] in (_IX_EMPTY, _IX_DUMMY):
                return p
        raise AssertionError("unreachable")

    def _ht_resize(self, d: int, es: int) -> None:
        buf = self.buf
        t = buf[d]
        used = _Q_unpack(buf, d + 8)[0]
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        old_itab = _q_unpack(buf, d + _HT_ITAB)[0]
        old_ents = _q_unpack(buf, d + _HT_ENTS)[0]
        size = 8
        while size < used * 3:
            size *= 2
        itab, ents = self._new_table_arrays(t, size, zero=False)
        rehash = _rehash if self.fast is None else self.fast.rehash
        count = rehash(self.buf, old_ents + 16, nent, es, ents + 16, itab + 16, size)
        self.store_i64(d + _HT_ITAB, itab)
        self.store_i64(d + _HT_ENTS, ents)
        self.store_i64(d + _HT_NENT, count)
        self.free_after_commit(old_itab)
        self.free_after_commit(old_ents)
        self._ix_moved(d, ents + 16, es)

    def table_delete(self, d: int, es: int, e: int, key: Any = NO_KEY) -> None:
        """Remove the entry at ``e`` (reference counts dropped); ``key``: a key equal to its
        key (without one, the table's DRAM index is dropped)."""
        p = self._ht_slot_of(d, es, e)
        buf = self.buf
        kslot = _q_unpack(buf, e + 8)[0]
        vslot = _q_unpack(buf, e + 16)[0] if es == 24 else 0
        self._wI(p, _IX_DUMMY)
        self.store_i64(e + 8, _DUMMY)
        if es == 24:
            self.store_i64(e + 16, 0)
        used = _Q_unpack(self.buf, d + 8)[0]
        self.store_u64(d + 8, used - 1)
        if kslot > 0 and not kslot & 7:
            self.decref(kslot)
        if vslot > 0 and not vslot & 7:
            self.decref(vslot)
        self._ix_remove(d, key)

    def _ht_slot_of(self, d: int, es: int, e: int) -> int:
        """The index-table slot that refers to entry ``e``."""
        buf = self.buf
        itab = _q_unpack(buf, d + _HT_ITAB)[0]
        base = itab + 16
        want = (e - _q_unpack(buf, d + _HT_ENTS)[0] - 16) // es + 1
        for i in probe_sequence(_Q_unpack(buf, e)[0], _Q_unpack(buf, itab + 8)[0] - 1):
            p = base + 4 * i
            ix = _I_unpack(buf, p)[0]
            if ix == want:
                return p
            if ix == _IX_EMPTY:
                raise CorruptPoolError(f"hash table at {d} lost the index of an entry")
        raise AssertionError("unreachable")

    def table_clear(self, d: int) -> None:
        buf = self.buf
        t = buf[d]
        for child in self._children(d, t, 0):
            if child > 0 and not child & 7:
                self.decref(child)
        old = self._internal(d, t)
        itab, ents = self._new_table_arrays(t, 8)
        self.store_i64(d + _HT_ITAB, itab)
        self.store_i64(d + _HT_ENTS, ents)
        self.store_i64(d + _HT_NENT, 0)
        self.store_u64(d + 8, 0)
        for r in old:
            self.free_after_commit(r)
        self._ix_new(d)

    def table_entries(self, d: int) -> list[int]:
        """Flat list [h, k, (v,) ...] of the live and deleted entries, in order."""
        buf = self.buf
        nent = _q_unpack(buf, d + _HT_NENT)[0]
        if not nent:
            return []
        ents = _q_unpack(buf, d + _HT_ENTS)[0] + 16
        es = L.entry_size(buf[d])
        return buf[ents : ents + es * nent].cast("q").tolist()
