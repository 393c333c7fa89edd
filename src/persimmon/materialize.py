"""Materialize: the whole PM object graph back as native Python objects, fast.

This is how the DRAM copy is rebuilt after a crash.  Containers are read in bulk (one
memoryview cast per array, not one struct call per field); shared references and cycles
are preserved through a memo of containers already built, and dict order is the PM order,
which is the insertion order.
"""

from __future__ import annotations

import gc
import pickle
import struct
import sys
from collections import deque
from itertools import repeat
from operator import and_, itemgetter
from typing import TYPE_CHECKING, Any

from . import layout as L
from .errors import CorruptPoolError

if TYPE_CHECKING:
    from .heap import Heap

# Low bytes of slots that are references (the low three bits of a reference are zero).
_REF_LOW_BYTES = bytes(b for b in range(256) if not b & 7)

# Objects decoded per bulk step: their headers (one cache line each) fit in the L2 cache.
_CHUNK = 512


def materialize(heap: Heap, x: int | None = None) -> Any:
    """Native deep copy of the object at slot ``x`` (default: the root)."""
    if x is None:
        x = heap.root_slot
    # Objects are sliced straight out of a read-only mapping of the pool (offsets are refs);
    # the arena's pages are mapped in one call rather than faulted in one by one.
    reader = heap.dev.reader()
    reader.populate(heap.arena_start, heap.heap_top - heap.arena_start)
    try:
        return _materialize(heap, reader.data, x)
    finally:
        reader.close()


# Field offsets (layout.py)
_AUX = L.AUX
_HDR = L.HDR
_HT_NENT = L.HT_NENT
_HT_ENTS = L.HT_ENTS
_HT_ENTRY_DICT = L.HT_ENTRY_DICT
_HT_ENTRY_SET = L.HT_ENTRY_SET
_ENT_KEY = L.ENT_KEY
_ENT_VALUE = L.ENT_VALUE
_LIST_ITEMS = L.LIST_ITEMS
_DQ_MAXLEN = L.DQ_MAXLEN
_DQ_CAP = L.DQ_CAP
_DQ_ITEMS = L.DQ_ITEMS
_DQ_HEAD = L.DQ_HEAD
_OBJ_DICT = L.OBJ_DICT
_OPQ_BLOB = L.OPQ_BLOB


def _materialize(heap: Heap, buf: Any, x: int) -> Any:
    mv = memoryview(buf)
    # lens[o >> 3] is the header's aux word (the length of a bytes/str) of the object at o.
    lens = mv[_AUX : _AUX + (len(buf) - _AUX) // 8 * 8].cast("Q")
    memo: dict[int, Any] = {}
    structs: dict[tuple[int, int, int], struct.Struct] = {}
    Q = L.S_Q.unpack_from
    q = L.S_q.unpack_from
    d_unpack = L.S_d.unpack_from
    NONE, TRUE, FALSE, DUMMY = L.NONE, L.TRUE, L.FALSE, L.DUMMY
    T_BYTES, T_STR, T_DICT, T_LIST = L.T_BYTES, L.T_STR, L.T_DICT, L.T_LIST
    fast = heap.fast  # the compiled fast paths (docs/heap.md), or None

    def mat(x: int) -> Any:
        if x & 7:
            if x & 1:
                return x >> 3
            if x == NONE:
                return None
            if x == TRUE:
                return True
            if x == FALSE:
                return False
            raise CorruptPoolError(f"invalid slot {x:#x}")
        o = x
        t = buf[o]
        if t == T_BYTES:
            return buf[o + _HDR : o + _HDR + Q(buf, o + _AUX)[0]]
        if t == T_STR:
            return buf[o + _HDR : o + _HDR + Q(buf, o + _AUX)[0]].decode("utf-8", "surrogatepass")
        m = memo.get(x)
        if m is not None:
            return m
        if t == T_DICT:
            out: dict = {}
            memo[x] = out
            nent = q(buf, o + _HT_NENT)[0]
            if nent:
                ents = q(buf, o + _HT_ENTS)[0] + _HDR
                words = mv[ents : ents + _HT_ENTRY_DICT * nent].cast("q")
                ks = words[1::3].tolist()
                vs = words[2::3].tolist()
                if Q(buf, o + _AUX)[0] != nent:  # deleted entries present
                    live = [i for i, k in enumerate(ks) if k != DUMMY]
                    ks = [ks[i] for i in live]
                    vs = [vs[i] for i in live]
                    refs = None
                else:
                    # every key and value a reference (no immediate), from the low bytes
                    raw = mv[ents : ents + _HT_ENTRY_DICT * nent]
                    es = _HT_ENTRY_DICT
                    low = raw[_ENT_KEY::es].tobytes() + raw[_ENT_VALUE::es].tobytes()
                    refs = not low.translate(None, _REF_LOW_BYTES)
                out.update(zip(_decode_all(ks, refs), _decode_all(vs, refs), strict=True))
            return out
        if t == T_LIST:
            lst: list = []
            memo[x] = lst
            n = Q(buf, o + _AUX)[0]
            if n:
                items = q(buf, o + _LIST_ITEMS)[0] + _HDR
                lst.extend([mat(s) for s in mv[items : items + 8 * n].cast("q").tolist()])
            return lst
        return other(x, t)

    def _decode_all(slots: list[int], refs: bool | None = None) -> list[Any]:
        # Bulk path for the commonest case, runs of bytes objects.  Slots are taken in chunks
        # small enough that the headers the type check pulls into the CPU cache are still
        # there when one comprehension slices the objects out.  ``refs``: whether every
        # slot is known to be a reference (None: not known, checked here).
        if refs is False or (refs is None and any(map(and_, slots, repeat(7)))):
            return [mat(s) for s in slots]
        out: list[Any] = []
        add = out.extend
        for i in range(0, len(slots), _CHUNK):
            chunk = slots[i : i + _CHUNK]
            m = len(chunk)
            if fast is not None:  # the compiled loop, when the chunk is all bytes/str
                got = fast.decode_blobs(buf, chunk)
                if got is not None:
                    add(got)
                    continue
            if m > 1 and itemgetter(*chunk)(buf).count(T_BYTES) == m:
                add(_evenly_spaced(chunk, m)
                    or [buf[o + _HDR : o + _HDR + lens[o >> 3]] for o in chunk])
            else:
                add([mat(s) for s in chunk])
        return out

    def _evenly_spaced(chunk: list[int], m: int) -> tuple | None:
        # Objects allocated one after another (the keys of a dict filled by inserts, and
        # its values until they are overwritten) lie at a fixed stride: when every bytes
        # object of the chunk is the same length at the same stride, one struct call slices
        # them all out in C, about three times faster than a slice per object.
        c0 = chunk[0]
        s = chunk[1] - c0
        if s <= 0 or chunk[-1] != c0 + s * (m - 1) or chunk != list(range(c0, c0 + s * m, s)):
            return None
        ln = lens[c0 >> 3 : (c0 >> 3) + (s >> 3) * m : s >> 3].tolist()
        n = ln[0]
        if _HDR + n > s or ln.count(n) != m:
            return None
        key = (s, n, m)
        st = structs.get(key)
        if st is None:
            if len(structs) >= 64:
                structs.clear()
            one = f"{_HDR}x{n}s"
            st = structs[key] = struct.Struct(f"{one}{s - _HDR - n}x" * (m - 1) + one)
        return st.unpack_from(buf, c0)

    def other(x: int, t: int) -> Any:
        o = x
        if t == L.T_INT:
            n = Q(buf, o + _AUX)[0]
            return int.from_bytes(buf[o + _HDR : o + _HDR + n], "little", signed=True)
        if t == L.T_FLOAT:
            return d_unpack(buf, o + _AUX)[0]
        if t == L.T_COMPLEX:
            return complex(d_unpack(buf, o + _AUX)[0], d_unpack(buf, o + _HDR)[0])
        if t == L.T_TUPLE or t == L.T_FROZENSET:
            n = Q(buf, o + _AUX)[0]
            vals = [mat(s) for s in mv[o + _HDR : o + _HDR + 8 * n].cast("q").tolist()] if n else []
            r = tuple(vals) if t == L.T_TUPLE else frozenset(vals)
            memo[x] = r
            return r
        if t == L.T_SET:
            st: set = set()
            memo[x] = st
            nent = q(buf, o + _HT_NENT)[0]
            if nent:
                ents = q(buf, o + _HT_ENTS)[0] + _HDR
                flat = mv[ents : ents + _HT_ENTRY_SET * nent].cast("q").tolist()
                for i in range(1, len(flat), 2):
                    if flat[i] != DUMMY:
                        st.add(mat(flat[i]))
            return st
        if t == L.T_DEQUE:
            m = q(buf, o + _DQ_MAXLEN)[0]
            dq: deque = deque(maxlen=None if m < 0 else m)
            memo[x] = dq
            n = Q(buf, o + _AUX)[0]
            cap = q(buf, o + _DQ_CAP)[0]
            items = q(buf, o + _DQ_ITEMS)[0] + _HDR
            head = q(buf, o + _DQ_HEAD)[0]
            if n:
                raw = mv[items : items + 8 * cap].cast("q").tolist()
                end = head + n
                slots = raw[head:end] if end <= cap else raw[head:] + raw[: end - cap]
                dq.extend([mat(s) for s in slots])
            return dq
        if t == L.T_OBJECT:
            cls = heap.class_of(x)
            obj = object.__new__(cls)
            memo[x] = obj
            attrs = mat(q(buf, o + _OBJ_DICT)[0])
            obj.__dict__.update(attrs)
            return obj
        if t == L.T_OPAQUE:
            r = pickle.loads(mat(q(buf, o + _OPQ_BLOB)[0]))
            memo[x] = r
            return r
        raise CorruptPoolError(f"object at {x} has unknown type {t}")

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    # Nothing built here is garbage, so the cyclic collector would only re-scan the growing
    # graph again and again; it is paused while the graph is built.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return mat(x)
    except (IndexError, ValueError, struct.error, pickle.UnpicklingError) as e:
        raise CorruptPoolError(f"the object graph is damaged ({e})") from None
    finally:
        if gc_was_on:
            gc.enable()
        sys.setrecursionlimit(limit)
        lens.release()
        mv.release()
