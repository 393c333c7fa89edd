"""Materialize: the whole PM object graph back as native Python objects, fast.

This is how the DRAM copy is rebuilt after a crash.  Containers are read in bulk (one
memoryview cast per array, not one struct call per field); shared references and cycles
are preserved through a memo of containers already built, and dict order is the PM order,
which is the insertion order.
"""

from __future__ import annotations

import pickle
import struct
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

from . import layout as L
from .errors import CorruptPoolError

if TYPE_CHECKING:
    from .heap import Heap


def materialize(heap: Heap, x: int | None = None) -> Any:
    """Native deep copy of the object at slot ``x`` (default: the root)."""
    if x is None:
        x = L.S_q.unpack_from(heap.buf, heap._meta + L.META_ROOT)[0]
    # One bulk copy of the used part of the pool: slicing bytes is much cheaper than
    # slicing a memoryview and copying each piece.
    # Only the arena is copied (the operation log before it may be large); offsets into the
    # copy are ref - B.
    B = heap._arena
    buf = heap.buf[B : heap.heap_top].tobytes()
    mv = memoryview(buf)
    memo: dict[int, Any] = {}
    Q = L.S_Q.unpack_from
    q = L.S_q.unpack_from
    d_unpack = L.S_d.unpack_from
    NONE, TRUE, FALSE, DUMMY = L.NONE, L.TRUE, L.FALSE, L.DUMMY
    T_BYTES, T_STR, T_DICT, T_LIST = L.T_BYTES, L.T_STR, L.T_DICT, L.T_LIST

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
        o = x - B
        t = buf[o]
        if t == T_BYTES:
            return buf[o + 16 : o + 16 + Q(buf, o + 8)[0]]
        if t == T_STR:
            return buf[o + 16 : o + 16 + Q(buf, o + 8)[0]].decode("utf-8", "surrogatepass")
        m = memo.get(x)
        if m is not None:
            return m
        if t == T_DICT:
            out: dict = {}
            memo[x] = out
            nent = q(buf, o + 16)[0]
            if nent:
                ents = q(buf, o + 32)[0] + 16 - B
                words = mv[ents : ents + 24 * nent].cast("q")
                ks = words[1::3].tolist()
                vs = words[2::3].tolist()
                if Q(buf, o + 8)[0] != nent:  # deleted entries present
                    live = [i for i, k in enumerate(ks) if k != DUMMY]
                    ks = [ks[i] for i in live]
                    vs = [vs[i] for i in live]
                out.update(zip(_decode_all(ks), _decode_all(vs), strict=True))
            return out
        if t == T_LIST:
            lst: list = []
            memo[x] = lst
            n = Q(buf, o + 8)[0]
            if n:
                items = q(buf, o + 24)[0] + 16 - B
                lst.extend([mat(s) for s in mv[items : items + 8 * n].cast("q").tolist()])
            return lst
        return other(x, t)

    def _decode_all(slots: list[int]) -> list[Any]:
        # Bulk path for the commonest case, a run of bytes objects: one list comprehension,
        # no per-item function call.
        if not any(s & 7 for s in slots) and all(buf[s - B] == T_BYTES for s in slots):
            return [buf[s - B + 16 : s - B + 16 + Q(buf, s - B + 8)[0]] for s in slots]
        return [mat(s) for s in slots]

    def other(x: int, t: int) -> Any:
        o = x - B
        if t == L.T_INT:
            n = Q(buf, o + 8)[0]
            return int.from_bytes(buf[o + 16 : o + 16 + n], "little", signed=True)
        if t == L.T_FLOAT:
            return d_unpack(buf, o + 8)[0]
        if t == L.T_COMPLEX:
            return complex(d_unpack(buf, o + 8)[0], d_unpack(buf, o + 16)[0])
        if t == L.T_TUPLE or t == L.T_FROZENSET:
            n = Q(buf, o + 8)[0]
            vals = [mat(s) for s in mv[o + 16 : o + 16 + 8 * n].cast("q").tolist()] if n else []
            r = tuple(vals) if t == L.T_TUPLE else frozenset(vals)
            memo[x] = r
            return r
        if t == L.T_SET:
            st: set = set()
            memo[x] = st
            nent = q(buf, o + 16)[0]
            if nent:
                ents = q(buf, o + 32)[0] + 16 - B
                flat = mv[ents : ents + 16 * nent].cast("q").tolist()
                for i in range(1, len(flat), 2):
                    if flat[i] != DUMMY:
                        st.add(mat(flat[i]))
            return st
        if t == L.T_DEQUE:
            m = q(buf, o + 40)[0]
            dq: deque = deque(maxlen=None if m < 0 else m)
            memo[x] = dq
            n = Q(buf, o + 8)[0]
            cap = q(buf, o + 16)[0]
            items = q(buf, o + 24)[0] + 16 - B
            head = q(buf, o + 32)[0]
            if n:
                raw = mv[items : items + 8 * cap].cast("q").tolist()
                end = head + n
                slots = raw[head:end] if end <= cap else raw[head:] + raw[: end - cap]
                dq.extend([mat(s) for s in slots])
            return dq
        if t == L.T_OBJECT:
            cls = heap._class_of(x)
            obj = object.__new__(cls)
            memo[x] = obj
            attrs = mat(q(buf, o + 24)[0])
            obj.__dict__.update(attrs)
            return obj
        if t == L.T_OPAQUE:
            r = pickle.loads(mat(q(buf, o + 16)[0]))
            memo[x] = r
            return r
        raise CorruptPoolError(f"object at {x} has unknown type {t}")

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        return mat(x)
    except (IndexError, ValueError, struct.error, pickle.UnpicklingError) as e:
        raise CorruptPoolError(f"the object graph is damaged ({e})") from None
    finally:
        sys.setrecursionlimit(limit)
