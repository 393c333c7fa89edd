"""Proxies: PM objects that behave like dict, list, set, deque and user objects.

A proxy holds only its heap and the offset of its object; every method reads and writes the
pool through the heap's undo-logged write path.  Reading a container or an object gives a
proxy, reading an immutable gives a native value, and reading the same PM object twice gives
the same proxy (so ``is`` works as on native objects).

``isinstance(proxy, dict)`` (list, set, deque, the user class) is True, because each proxy
reports the native type as its ``__class__``; ``type(proxy) is dict`` is False.  Write
``isinstance`` checks in state-machine code.

Set order: a PM set iterates in insertion order, which is *not* a native set's order (that
differs between processes for str members).  Operations must not depend on set order,
``set.pop()`` included.
"""

from __future__ import annotations

from collections import deque
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    MutableMapping,
    MutableSet,
    ValuesView,
)
from typing import TYPE_CHECKING, Any

from . import layout as L
from . import native
from .errors import UnpersistableError
from .hashing import INDEX_KEY_TYPES as _IXT
from .native import FAST as _FAST

if TYPE_CHECKING:
    from collections.abc import Callable

    from .proxyheap import ProxyHeap

_q_unpack = L.S_q.unpack_from
_Q_unpack = L.S_Q.unpack_from
_DUMMY = L.DUMMY
_T_BYTES = L.T_BYTES
_T_STR = L.T_STR
_NOTHING = object()
# Field offsets (layout.py), bound once: a hot read costs a global, not an attribute
_AUX = L.AUX
_ENT_VALUE = L.ENT_VALUE
_ENT_KEY = L.ENT_KEY
_HT_NENT = L.HT_NENT
_HT_ENTS = L.HT_ENTS
_HDR = L.HDR
_HT_ENTRY_DICT = L.HT_ENTRY_DICT
_HT_ENTRY_SET = L.HT_ENTRY_SET
_LIST_ITEMS = L.LIST_ITEMS
_LIST_CAP = L.LIST_CAP
_DQ_CAP = L.DQ_CAP
_DQ_ITEMS = L.DQ_ITEMS
_DQ_HEAD = L.DQ_HEAD
_DQ_MAXLEN = L.DQ_MAXLEN
_OBJ_DICT = L.OBJ_DICT


class Proxy:
    """Base class of all proxies."""

    __slots__ = ("_h", "_o", "__weakref__")
    _h: ProxyHeap  # (the only members of the heap a proxy uses: persimmon.proxyheap)
    _o: int

    def __init__(self, heap: ProxyHeap, off: int) -> None:
        object.__setattr__(self, "_h", heap)
        object.__setattr__(self, "_o", off)

    def _native(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def __reduce_ex__(self, protocol: int) -> Any:
        n = self._native()
        return (_identity, (n,))

    def __copy__(self) -> Any:
        return self._native()

    def __deepcopy__(self, memo: dict) -> Any:
        import copy

        return copy.deepcopy(self._native(), memo)


def _identity(x: Any) -> Any:
    return x


# ---------------------------------------------------------------------------- dict
class _PKeys(KeysView):
    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter(1)


class _PValues(ValuesView):
    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter(2)


class _PItems(ItemsView):
    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter(3)


class PDict(Proxy, MutableMapping):
    """A dict in persistent memory (keeps insertion order exactly like ``dict``)."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return dict

    def __len__(self) -> int:
        return _Q_unpack(self._h.buf, self._o + _AUX)[0]

    _len = __len__  # (the Python method, which the compiled one falls back to)

    def __getitem__(self, key: Any) -> Any:
        h = self._h
        ix = h.table_indexes.get(self._o)
        if ix is not None and type(key) in _IXT:
            e = ix.get(key, -1)
        else:
            e = h.table_lookup(self._o, 24, key)
        if e < 0:
            raise KeyError(key)
        x = _q_unpack(h.buf, e + _ENT_VALUE)[0]
        v = h.load(x)
        if x in h.live_proxies:
            h.note_parent(x, self._o, key)
        return v

    def get(self, key: Any, default: Any = None) -> Any:
        h = self._h
        ix = h.table_indexes.get(self._o)
        if ix is not None and type(key) in _IXT:
            e = ix.get(key, -1)
        else:
            e = h.table_lookup(self._o, 24, key)
        if e < 0:
            return default
        x = _q_unpack(h.buf, e + _ENT_VALUE)[0]
        v = h.load(x)
        if x in h.live_proxies:
            h.note_parent(x, self._o, key)
        return v

    def __contains__(self, key: Any) -> bool:
        try:
            return self._h.table_lookup(self._o, 24, key) >= 0
        except UnpersistableError:
            hash(key)  # unhashable -> TypeError like dict
            return False

    def _set(self, key: Any, value: Any) -> None:
        h = self._h
        fast = h.fast  # the compiled whole store, for its common case (docs/heap.md)
        if fast is not None and fast.dict_set(h, self._o, key, value):
            return
        self._store(key, value)

    def _store(self, key: Any, value: Any) -> None:
        """``__setitem__`` in Python (after the compiled store declined, or without it)."""
        h = self._h
        d = self._o
        ix = h.table_indexes.get(d)
        if ix is not None and type(key) in _IXT:
            e = ix.get(key, -1)
            if e < 0:
                hv = h.key_hash(key)
                p = h.table_free_slot(d, hv)
        else:
            e, hv, p = h.table_seek(d, 24, key)
        if e >= 0:
            if type(value) is bytes:
                h.store_blob(e + _ENT_VALUE, _T_BYTES, value)
            else:
                h.store_slot(e + _ENT_VALUE, h.convert(value, d, key))
            return
        if type(value) is bytes:
            kt = type(key)
            if kt is bytes:
                h.table_insert_blobs(d, hv, p, _T_BYTES, key, value, key)
                return
            if kt is str:
                h.table_insert_blobs(d, hv, p, _T_STR, key.encode("utf-8", "surrogatepass"),
                                   value, key)
                return
        kslot = h.convert(key, d, key)
        vslot = h.convert(value, d, key)
        h.table_insert(d, 24, hv, p, kslot, vslot, key)

    # With the compiled module, __setitem__ and __len__ are compiled methods (bottom of this
    # module); without it, the Python store is called directly.
    __setitem__ = _store

    def __delitem__(self, key: Any) -> None:
        h = self._h
        e = h.table_lookup(self._o, 24, key)
        if e < 0:
            raise KeyError(key)
        h.table_delete(self._o, 24, e, key)

    def _iter(self, what: int) -> Iterator[Any]:
        h = self._h
        d = self._o
        used = _Q_unpack(h.buf, d + _AUX)[0]
        i = 0
        while True:
            buf = h.buf
            if _Q_unpack(buf, d + _AUX)[0] != used:
                raise RuntimeError("dictionary changed size during iteration")
            nent = _q_unpack(buf, d + _HT_NENT)[0]
            if i >= nent:
                return
            e = _q_unpack(buf, d + _HT_ENTS)[0] + _HDR + _HT_ENTRY_DICT * i
            i += 1
            k = _q_unpack(buf, e + _ENT_KEY)[0]
            if k == _DUMMY:
                continue
            if what == 1:
                yield h.load(k)
            elif what == 2:
                yield h.load(_q_unpack(buf, e + _ENT_VALUE)[0])
            else:
                yield (h.load(k), h.load(_q_unpack(buf, e + _ENT_VALUE)[0]))

    def __iter__(self) -> Iterator[Any]:
        return self._iter(1)

    def __reversed__(self) -> Iterator[Any]:
        return iter(reversed(list(self._iter(1))))

    def keys(self) -> KeysView:  # type: ignore[override]
        return _PKeys(self)

    def values(self) -> ValuesView:  # type: ignore[override]
        return _PValues(self)

    def items(self) -> ItemsView:  # type: ignore[override]
        return _PItems(self)

    def pop(self, key: Any, default: Any = _NOTHING) -> Any:
        h = self._h
        e = h.table_lookup(self._o, 24, key)
        if e < 0:
            if default is _NOTHING:
                raise KeyError(key)
            return default
        value = h.load(_q_unpack(h.buf, e + _ENT_VALUE)[0])
        h.table_delete(self._o, 24, e, key)
        return value

    def popitem(self) -> tuple[Any, Any]:
        h = self._h
        flat = h.table_entries(self._o)
        for i in range(len(flat) - 3, -1, -3):
            if flat[i + 1] != _DUMMY:
                key = h.load(flat[i + 1])
                return key, self.pop(key)
        raise KeyError("popitem(): dictionary is empty")

    def setdefault(self, key: Any, default: Any = None) -> Any:
        h = self._h
        e = h.table_lookup(self._o, 24, key)
        if e >= 0:
            return h.load(_q_unpack(h.buf, e + _ENT_VALUE)[0])
        self._set(key, default)
        return self[key]

    def update(self, other: Any = (), /, **kw: Any) -> None:
        if hasattr(other, "keys"):
            for k in list(other.keys()):
                self._set(k, other[k])
        else:
            for k, v in other:
                self._set(k, v)
        for k, v in kw.items():
            self._set(k, v)

    def clear(self) -> None:
        self._h.table_clear(self._o)

    def copy(self) -> dict:
        return dict(self._iter(3))

    def _native(self) -> dict:
        return dict(self._iter(3))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PDict) and other._h is self._h and other._o == self._o:
            return True
        if not isinstance(other, dict | MutableMapping):
            return NotImplemented
        return dict(self._iter(3)) == dict(other.items())

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, dict | MutableMapping):
            return NotImplemented
        n = dict(self._iter(3))
        n.update(other)
        return n

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, dict | MutableMapping):
            return NotImplemented
        n = dict(other)
        n.update(self._iter(3))
        return n

    def __ior__(self, other: Any) -> PDict:
        self.update(other)
        return self

    def __repr__(self) -> str:
        return repr(dict(self._iter(3)))

    @classmethod
    def fromkeys(cls, iterable: Iterable, value: Any = None) -> dict:  # type: ignore[override]
        return dict.fromkeys(iterable, value)


# ---------------------------------------------------------------------------- list
class _SeqBase(Proxy):
    """Shared helpers for proxies over an array of slots (list, deque)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        i = 0
        while i < len(self):
            yield self._get(i)
            i += 1

    def _loaded(self) -> list[Any]:
        load = self._h.load
        return [load(s) for s in self._slots()]

    def _native(self) -> Any:
        return self._loaded()

    def __contains__(self, value: Any) -> bool:
        return any(v is value or v == value for v in self._loaded())

    def count(self, value: Any) -> int:
        return sum(1 for v in self._loaded() if v is value or v == value)

    def __repr__(self) -> str:
        return repr(self._native())

    def _norm(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, int):
            i = i.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self._kind} index out of range")
        return i


class PList(_SeqBase):
    """A list in persistent memory."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]
    _kind = "list"

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return list

    # raw access
    def __len__(self) -> int:
        return _Q_unpack(self._h.buf, self._o + _AUX)[0]

    def _items(self) -> int:
        return _q_unpack(self._h.buf, self._o + _LIST_ITEMS)[0] + _HDR

    def _slots(self) -> list[int]:
        buf = self._h.buf
        n = _Q_unpack(buf, self._o + _AUX)[0]
        if not n:
            return []
        items = _q_unpack(buf, self._o + _LIST_ITEMS)[0] + _HDR
        return buf[items : items + 8 * n].cast("q").tolist()

    def _get(self, i: int) -> Any:
        h = self._h
        return h.load(_q_unpack(h.buf, self._items() + 8 * i)[0])

    def _reserve(self, n: int) -> None:
        h = self._h
        o = self._o
        cap = _q_unpack(h.buf, o + _LIST_CAP)[0]
        if n <= cap:
            return
        newcap = max(4, n, cap + (cap >> 1) + 4)
        arr = h.new_array(newcap)
        buf = h.buf
        length = _Q_unpack(buf, o + _AUX)[0]
        old = _q_unpack(buf, o + _LIST_ITEMS)[0]
        if length:
            buf[arr + _HDR : arr + _HDR + 8 * length] = buf[old + _HDR : old + _HDR + 8 * length]
        h.store_i64(o + _LIST_ITEMS, arr)
        h.store_i64(o + _LIST_CAP, h.array_capacity(arr))
        if old:
            h.free_after_commit(old)

    def _append_slot(self, s: int) -> None:
        h = self._h
        o = self._o
        n = _Q_unpack(h.buf, o + _AUX)[0]
        if n >= _q_unpack(h.buf, o + _LIST_CAP)[0]:
            self._reserve(n + 1)
        h.incref(s)
        h.store_i64(self._items() + 8 * n, s)
        h.store_u64(o + _AUX, n + 1)

    def _write_slots(self, start: int, slots: list[int], newlen: int) -> None:
        """Overwrite slots [start, start+len(slots)) and set the length (no refcounting)."""
        h = self._h
        self._reserve(max(newlen, start + len(slots)))
        if slots:
            a = self._items() + 8 * start
            h.store_bytes(a, L.struct_pack_q(slots))
        if newlen != len(self):
            h.store_u64(self._o + _AUX, newlen)

    def _replace(self, lo: int, hi: int, new: list[int]) -> None:
        """Replace slots [lo, hi) by ``new`` slots (reference counts adjusted)."""
        h = self._h
        old = self._slots()
        removed = old[lo:hi]
        for s in new:
            h.incref(s)
        tail = old[hi:]
        self._write_slots(lo, new + tail, lo + len(new) + len(tail))
        for s in removed:
            h.decref(s)

    # sequence protocol
    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self._loaded()[i]
        h = self._h
        n = _Q_unpack(h.buf, self._o + _AUX)[0]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        items = _q_unpack(h.buf, self._o + _LIST_ITEMS)[0] + _HDR
        return h.load(_q_unpack(h.buf, items + 8 * i)[0])

    def __setitem__(self, i: Any, value: Any) -> None:
        h = self._h
        if isinstance(i, slice):
            n = len(self)
            values = list(value)
            start, stop, step = i.indices(n)
            if step == 1:
                stop = max(stop, start)
                new = [h.convert(v, self._o, start + j) for j, v in enumerate(values)]
                self._replace(start, stop, new)
                return
            idx = list(range(start, stop, step))
            if len(idx) != len(values):
                raise ValueError(
                    f"attempt to assign sequence of size {len(values)} to extended slice of "
                    f"size {len(idx)}"
                )
            for j, v in zip(idx, values, strict=True):
                self[j] = v
            return
        i = self._norm(i)
        h.store_slot(self._items() + 8 * i, h.convert(value, self._o, i))

    def __delitem__(self, i: Any) -> None:
        if isinstance(i, slice):
            n = len(self)
            start, stop, step = i.indices(n)
            if step == 1:
                if stop > start:
                    self._replace(start, stop, [])
                return
            drop = set(range(start, stop, step))
            old = self._slots()
            keep = [s for j, s in enumerate(old) if j not in drop]
            self._write_slots(0, keep, len(keep))
            for j in sorted(drop):
                self._h.decref(old[j])
            return
        i = self._norm(i)
        self._replace(i, i + 1, [])

    def append(self, value: Any) -> None:
        h = self._h
        self._append_slot(h.convert(value, self._o, len(self)))

    def extend(self, values: Iterable) -> None:
        h = self._h
        vals = list(values) if values is not self else self._loaded()
        base = len(self)
        slots = [h.convert(v, self._o, base + j) for j, v in enumerate(vals)]
        for s in slots:
            self._append_slot(s)

    def insert(self, i: int, value: Any) -> None:
        n = len(self)
        if i < 0:
            i = max(0, i + n)
        i = min(i, n)
        s = self._h.convert(value, self._o, i)
        self._replace(i, i, [s])

    def pop(self, i: int = -1) -> Any:
        n = len(self)
        if not n:
            raise IndexError("pop from empty list")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("pop index out of range")
        value = self._get(i)
        self._replace(i, i + 1, [])
        return value

    def remove(self, value: Any) -> None:
        for j, v in enumerate(self._loaded()):
            if v is value or v == value:
                self._replace(j, j + 1, [])
                return
        raise ValueError("list.remove(x): x not in list")

    def index(self, value: Any, start: int = 0, stop: int = 2**63) -> int:
        return self._loaded().index(value, start, stop)

    def clear(self) -> None:
        n = len(self)
        if n:
            self._replace(0, n, [])

    def reverse(self) -> None:
        slots = self._slots()
        slots.reverse()
        self._write_slots(0, slots, len(slots))

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        slots = self._slots()
        load = self._h.load
        pairs = [(load(s), s) for s in slots]
        kf = (lambda p: key(p[0])) if key is not None else (lambda p: p[0])
        pairs.sort(key=kf, reverse=reverse)
        self._write_slots(0, [p[1] for p in pairs], len(slots))

    def copy(self) -> list:
        return self._loaded()

    def __iadd__(self, other: Iterable) -> PList:
        self.extend(other)
        return self

    def __imul__(self, n: int) -> PList:
        if n <= 0:
            self.clear()
        else:
            vals = self._loaded()
            for _ in range(n - 1):
                self.extend(vals)
        return self

    def __add__(self, other: Any) -> list:
        if not isinstance(other, list):
            return NotImplemented
        return self._loaded() + list(other)

    def __radd__(self, other: Any) -> list:
        if not isinstance(other, list):
            return NotImplemented
        return list(other) + self._loaded()

    def __mul__(self, n: int) -> list:
        return self._loaded() * n

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, list):
            return NotImplemented
        return self._loaded() == list(other)

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __lt__(self, other: Any) -> bool:
        return self._loaded() < list(other)

    def __le__(self, other: Any) -> bool:
        return self._loaded() <= list(other)

    def __gt__(self, other: Any) -> bool:
        return self._loaded() > list(other)

    def __ge__(self, other: Any) -> bool:
        return self._loaded() >= list(other)

    def __reversed__(self) -> Iterator[Any]:
        return iter(reversed(self._loaded()))


# ---------------------------------------------------------------------------- deque
class PDeque(_SeqBase):
    """A collections.deque in persistent memory (a ring buffer of slots)."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]
    _kind = "deque"

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return deque

    def __len__(self) -> int:
        return _Q_unpack(self._h.buf, self._o + _AUX)[0]

    @property
    def maxlen(self) -> int | None:
        m = _q_unpack(self._h.buf, self._o + _DQ_MAXLEN)[0]
        return None if m < 0 else m

    def _geom(self) -> tuple[int, int, int, int]:
        buf = self._h.buf
        o = self._o
        return (_Q_unpack(buf, o + _AUX)[0], _q_unpack(buf, o + _DQ_CAP)[0],
                _q_unpack(buf, o + _DQ_ITEMS)[0] + _HDR, _q_unpack(buf, o + _DQ_HEAD)[0])

    def _slots(self) -> list[int]:
        n, cap, items, head = self._geom()
        if not n:
            return []
        raw = self._h.buf[items : items + 8 * cap].cast("q").tolist()
        end = head + n
        if end <= cap:
            return raw[head:end]
        return raw[head:] + raw[: end - cap]

    def _get(self, i: int) -> Any:
        n, cap, items, head = self._geom()
        return self._h.load(_q_unpack(self._h.buf, items + 8 * ((head + i) % cap))[0])

    def _rebuild(self, slots: list[int]) -> None:
        """Rewrite the whole deque from ``slots`` (no refcounting), head at 0."""
        h = self._h
        o = self._o
        n, cap, items, head = self._geom()
        if len(slots) > cap:
            arr = h.new_array(max(8, len(slots) * 2))
            old = _q_unpack(h.buf, o + _DQ_ITEMS)[0]
            h.store_i64(o + _DQ_ITEMS, arr)
            h.store_i64(o + _DQ_CAP, h.array_capacity(arr))
            h.free_after_commit(old)
            items = arr + _HDR
        if slots:
            h.store_bytes(items, L.struct_pack_q(slots))
        h.store_i64(o + _DQ_HEAD, 0)
        h.store_u64(o + _AUX, len(slots))

    def _grow(self) -> None:
        slots = self._slots()
        h = self._h
        o = self._o
        cap = _q_unpack(h.buf, o + _DQ_CAP)[0]
        arr = h.new_array(max(8, cap * 2))
        old = _q_unpack(h.buf, o + _DQ_ITEMS)[0]
        h.store_i64(o + _DQ_ITEMS, arr)
        h.store_i64(o + _DQ_CAP, h.array_capacity(arr))
        h.free_after_commit(old)
        self._rebuild(slots)

    def _append_slot(self, s: int, left: bool = False) -> None:
        h = self._h
        m = self.maxlen
        if m == 0:
            h.incref(s)
            h.decref(s)
            return
        if m is not None and len(self) >= m:
            if left:
                self._pop_slot(right=True)
            else:
                self._pop_slot(right=False)
        n, cap, items, head = self._geom()
        if n >= cap:
            self._grow()
            n, cap, items, head = self._geom()
        h.incref(s)
        if left:
            head = (head - 1) % cap
            h.store_i64(items + 8 * head, s)
            h.store_i64(self._o + _DQ_HEAD, head)
        else:
            h.store_i64(items + 8 * ((head + n) % cap), s)
        h.store_u64(self._o + _AUX, n + 1)

    def _pop_slot(self, right: bool) -> int:
        n, cap, items, head = self._geom()
        if not n:
            raise IndexError("pop from an empty deque")
        h = self._h
        if right:
            a = items + 8 * ((head + n - 1) % cap)
        else:
            a = items + 8 * head
            h.store_i64(self._o + _DQ_HEAD, (head + 1) % cap)
        s = _q_unpack(h.buf, a)[0]
        h.store_i64(a, 0)
        h.store_u64(self._o + _AUX, n - 1)
        h.decref(s)
        return s

    def append(self, value: Any) -> None:
        self._append_slot(self._h.convert(value, self._o, len(self)))

    def appendleft(self, value: Any) -> None:
        self._append_slot(self._h.convert(value, self._o, 0), left=True)

    def pop(self) -> Any:
        n = len(self)
        if not n:
            raise IndexError("pop from an empty deque")
        v = self._get(n - 1)
        self._pop_slot(right=True)
        return v

    def popleft(self) -> Any:
        if not len(self):
            raise IndexError("pop from an empty deque")
        v = self._get(0)
        self._pop_slot(right=False)
        return v

    def extend(self, values: Iterable) -> None:
        for v in list(values):
            self.append(v)

    def extendleft(self, values: Iterable) -> None:
        for v in list(values):
            self.appendleft(v)

    def clear(self) -> None:
        slots = self._slots()
        self._rebuild([])
        for s in slots:
            self._h.decref(s)

    def rotate(self, n: int = 1) -> None:
        slots = self._slots()
        if slots:
            n %= len(slots)
            slots = slots[-n:] + slots[:-n] if n else slots
            self._rebuild(slots)

    def reverse(self) -> None:
        slots = self._slots()
        slots.reverse()
        self._rebuild(slots)

    def remove(self, value: Any) -> None:
        vals = self._loaded()
        for j, v in enumerate(vals):
            if v is value or v == value:
                slots = self._slots()
                s = slots.pop(j)
                self._rebuild(slots)
                self._h.decref(s)
                return
        raise ValueError(f"{value!r} is not in deque")

    def index(self, value: Any, start: int = 0, stop: int = 2**63) -> int:
        return self._loaded().index(value, start, stop)

    def insert(self, i: int, value: Any) -> None:
        m = self.maxlen
        if m is not None and len(self) >= m:
            raise IndexError("deque already at its maximum size")
        s = self._h.convert(value, self._o, i)
        slots = self._slots()
        slots.insert(i, s)
        self._h.incref(s)
        self._rebuild(slots)

    def __getitem__(self, i: int) -> Any:
        if isinstance(i, slice):
            raise TypeError("sequence index must be integer, not 'slice'")
        return self._get(self._norm(i))

    def __setitem__(self, i: int, value: Any) -> None:
        i = self._norm(i)
        n, cap, items, head = self._geom()
        h = self._h
        h.store_slot(items + 8 * ((head + i) % cap), h.convert(value, self._o, i))

    def __delitem__(self, i: int) -> None:
        i = self._norm(i)
        slots = self._slots()
        s = slots.pop(i)
        self._rebuild(slots)
        self._h.decref(s)

    def copy(self) -> deque:
        return deque(self._loaded(), self.maxlen)

    def _native(self) -> deque:
        return deque(self._loaded(), self.maxlen)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, deque):
            return NotImplemented
        return self._loaded() == list(other)

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __iadd__(self, other: Iterable) -> PDeque:
        self.extend(other)
        return self

    def __repr__(self) -> str:
        return repr(self._native())

    def __reversed__(self) -> Iterator[Any]:
        return iter(reversed(self._loaded()))


# ---------------------------------------------------------------------------- set
class PSet(Proxy, MutableSet):
    """A set in persistent memory.  Iterates in insertion order, not a native set's order."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return set

    @classmethod
    def _from_iterable(cls, it: Iterable) -> set:
        return set(it)

    def __len__(self) -> int:
        return _Q_unpack(self._h.buf, self._o + _AUX)[0]

    _len = __len__  # (the Python method, which the compiled one falls back to)

    def __contains__(self, key: Any) -> bool:
        try:
            return self._h.table_lookup(self._o, 16, key) >= 0
        except UnpersistableError:
            hash(key)  # unhashable -> TypeError like set
            return False

    def __iter__(self) -> Iterator[Any]:
        h = self._h
        d = self._o
        used = len(self)
        i = 0
        while True:
            buf = h.buf
            if _Q_unpack(buf, d + _AUX)[0] != used:
                raise RuntimeError("Set changed size during iteration")
            nent = _q_unpack(buf, d + _HT_NENT)[0]
            if i >= nent:
                return
            e = _q_unpack(buf, d + _HT_ENTS)[0] + _HDR + _HT_ENTRY_SET * i
            i += 1
            k = _q_unpack(buf, e + _ENT_KEY)[0]
            if k != _DUMMY:
                yield h.load(k)

    def _add(self, key: Any) -> None:
        h = self._h
        d = self._o
        e, hv, p = h.table_seek(d, 16, key)
        if e < 0:
            h.table_insert(d, 16, hv, p, h.convert(key, d), 0, key)

    def add(self, key: Any) -> None:
        self._add(key)

    def discard(self, key: Any) -> None:
        h = self._h
        e = h.table_lookup(self._o, 16, key)
        if e >= 0:
            h.table_delete(self._o, 16, e, key)

    def remove(self, key: Any) -> None:
        h = self._h
        e = h.table_lookup(self._o, 16, key)
        if e < 0:
            raise KeyError(key)
        h.table_delete(self._o, 16, e, key)

    def pop(self) -> Any:
        for k in self:
            self.discard(k)
            return k
        raise KeyError("pop from an empty set")

    def clear(self) -> None:
        self._h.table_clear(self._o)

    def update(self, *others: Iterable) -> None:
        for o in others:
            for k in list(o):
                self._add(k)

    def difference_update(self, *others: Iterable) -> None:
        for o in others:
            for k in list(o):
                self.discard(k)

    def intersection_update(self, *others: Iterable) -> None:
        keep = set(self).intersection(*others)
        for k in list(self):
            if k not in keep:
                self.discard(k)

    def symmetric_difference_update(self, other: Iterable) -> None:
        for k in set(other):
            if k in self:
                self.discard(k)
            else:
                self._add(k)

    def union(self, *others: Iterable) -> set:
        return set(self).union(*others)

    def intersection(self, *others: Iterable) -> set:
        return set(self).intersection(*others)

    def difference(self, *others: Iterable) -> set:
        return set(self).difference(*others)

    def symmetric_difference(self, other: Iterable) -> set:
        return set(self).symmetric_difference(other)

    def issubset(self, other: Iterable) -> bool:
        return set(self).issubset(other)

    def issuperset(self, other: Iterable) -> bool:
        return set(self).issuperset(other)

    def isdisjoint(self, other: Iterable) -> bool:
        return set(self).isdisjoint(other)

    def copy(self) -> set:
        return set(self)

    def _native(self) -> set:
        return set(self)

    def __ior__(self, other: Any) -> PSet:  # type: ignore[override]
        self.update(other)
        return self

    def __iand__(self, other: Any) -> PSet:  # type: ignore[override]
        self.intersection_update(other)
        return self

    def __isub__(self, other: Any) -> PSet:  # type: ignore[override]
        self.difference_update(other)
        return self

    def __ixor__(self, other: Any) -> PSet:  # type: ignore[override]
        self.symmetric_difference_update(other)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, set | frozenset):
            return NotImplemented
        return set(self) == other

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __repr__(self) -> str:
        return repr(set(self))


# ---------------------------------------------------------------------------- objects
class PObject(Proxy):
    """An instance of a user class in persistent memory.

    Attribute get/set/del go to the object's ``__dict__`` in PM; methods, properties and class
    attributes come from the class, with ``self`` bound to the proxy.  The proxy keeps the
    offset of that dict (an object never changes it), and the heap's DRAM index of the dict
    finds the attribute, so a hot ``self.data`` costs two native dict lookups and a read.
    """

    __slots__ = ("_ad",)
    _cls: type = object
    _own: frozenset[str] = frozenset()  # set below: names the default lookup resolves
    _dc: dict[str, tuple[Any, bool]] = {}  # set below: _class_lookup's cache for _cls

    def __init__(self, heap: ProxyHeap, off: int) -> None:
        Proxy.__init__(self, heap, off)
        object.__setattr__(self, "_ad", 0)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self)._cls

    def _attrs(self) -> PDict:
        h = _get_h(self)
        return h.load(_q_unpack(h.buf, _get_o(self) + _OBJ_DICT)[0])

    def __getattribute__(self, name: str) -> Any:
        # Python calls __getattr__ only after the default lookup has failed, and that
        # failure builds an AttributeError: several microseconds on every ``self.data``.
        # So user attributes are looked up here first; the proxy's own machinery (names
        # defined on the proxy class and its bases, ``_own``) takes the default path.
        pcls = type(self)
        if name in pcls._own:
            return _obj_getattr(self, name)
        cls = pcls._cls
        r = pcls._dc.get(name)
        desc, is_data = r if r is not None else _class_lookup(cls, name)
        if is_data:
            return desc.__get__(self, cls)
        h = _get_h(self)
        d = _get_ad(self) or _attr_dict(self, h)
        ix = h.table_indexes.get(d)
        e = ix.get(name, -1) if ix is not None else h.table_lookup(d, 24, name)
        if e >= 0:
            x = _q_unpack(h.buf, e + _ENT_VALUE)[0]
            v = h.live_proxies.get(x)
            if v is None:
                v = h.load(x)
                if x not in h.live_proxies:
                    return v
            if x not in h.proxy_parents:
                h.proxy_parents[x] = (_get_o(self), name, True)
            return v
        if desc is not _NOTHING:
            get = getattr(type(desc), "__get__", None)
            return get(desc, self, cls) if get is not None else desc
        raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        desc, _ = _class_lookup(type(self)._cls, name)
        if desc is not _NOTHING and hasattr(type(desc), "__set__"):
            desc.__set__(self, value)
            return
        h = _get_h(self)
        o = _get_o(self)
        d = _attr_dict(self, h)
        e, hv, p = h.table_seek(d, 24, name)
        if e >= 0:
            h.store_slot(e + _ENT_VALUE, h.convert(value, o, name, attr=True))
            return
        kslot = h.convert(name, o)
        vslot = h.convert(value, o, name, attr=True)
        h.table_insert(d, 24, hv, p, kslot, vslot, name)

    def __delattr__(self, name: str) -> None:
        desc, _ = _class_lookup(type(self)._cls, name)
        if desc is not _NOTHING and hasattr(type(desc), "__delete__"):
            desc.__delete__(self)
            return
        try:
            del self._attrs()[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def __dict__(self) -> PDict:  # type: ignore[override]
        return self._attrs()

    def _native(self) -> Any:
        obj = object.__new__(type(self)._cls)
        obj.__dict__.update(self._attrs()._iter(3))
        return obj

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self)._cls)) | set(self._attrs()))


_obj_getattr = object.__getattribute__
_py_getattribute = PObject.__getattribute__  # (the Python method: the compiled one's fallback)
_get_h = Proxy.__dict__["_h"].__get__
_get_o = Proxy.__dict__["_o"].__get__
_get_ad = PObject.__dict__["_ad"].__get__
_set_ad = PObject.__dict__["_ad"].__set__


def _own_names(pcls: type) -> frozenset[str]:
    return frozenset(n for k in pcls.__mro__ for n in vars(k)) | {"_own", "_dc"}


PObject._own = _own_names(PObject)


def _attr_dict(self: PObject, h: ProxyHeap) -> int:
    """Offset of the object's attribute dict in PM (read once per proxy)."""
    d = _get_ad(self)
    if not d:
        d = _q_unpack(h.buf, _get_o(self) + _OBJ_DICT)[0]
        _set_ad(self, d)
    return d


_desc_cache: dict[type, dict[str, tuple[Any, bool]]] = {}  # class -> name -> lookup
PObject._dc = _desc_cache.setdefault(object, {})


def _class_lookup(cls: type, name: str) -> tuple[Any, bool]:
    """``(class attribute or _NOTHING, is it a data descriptor)``, cached per class (a
    proxy class keeps its user class's cache as ``_dc`` to read it without a call)."""
    per = _desc_cache.get(cls)
    if per is None:
        per = _desc_cache[cls] = {}
    r = per.get(name)
    if r is not None:
        return r
    found = _NOTHING
    for k in cls.__mro__:
        if name in k.__dict__:
            found = k.__dict__[name]
            break
    r = (found, found is not _NOTHING and _is_data_descriptor(found))
    per[name] = r
    return r


def _is_data_descriptor(d: Any) -> bool:
    t = type(d)
    return hasattr(t, "__get__") and (hasattr(t, "__set__") or hasattr(t, "__delete__"))


_FORWARDED = (
    "__len__", "__getitem__", "__setitem__", "__delitem__", "__iter__", "__contains__",
    "__call__", "__bool__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "__add__", "__sub__", "__mul__", "__iadd__", "__isub__", "__str__", "__repr__",
    "__enter__", "__exit__", "__reversed__", "__hash__",
)
_proxy_classes: dict[type, type] = {}


def proxy_class_for(cls: type) -> type:
    """The proxy class for instances of user class ``cls`` (dunders forwarded to ``cls``)."""
    pc = _proxy_classes.get(cls)
    if pc is not None:
        return pc
    ns: dict[str, Any] = {"__slots__": (), "_cls": cls,
                          "_dc": _desc_cache.setdefault(cls, {})}
    for name in _FORWARDED:
        impl = _class_lookup(cls, name)[0]
        if impl is _NOTHING or getattr(object, name, None) is impl:
            continue
        if impl is None:
            ns[name] = None
            continue
        ns[name] = _forwarder(name)
    pc = type(f"P{cls.__name__}", (PObject,), ns)
    pc._own = _own_names(pc)
    _proxy_classes[cls] = pc
    return pc


def _forwarder(name: str) -> Any:
    def fwd(self: PObject, *args: Any, **kw: Any) -> Any:
        return getattr(type(self)._cls, name)(self, *args, **kw)

    fwd.__name__ = name
    return fwd


# ---------------------------------------------------------------------------- for the heap
# What the heap uses of the proxies (nothing else of their internals): its conversion of a
# native container builds the PM container empty, makes its proxy (``PDict(heap, off)``
# and so on) and fills it through these; a value being stored is recognised as a proxy
# (``isinstance(v, Proxy)``) of this heap or of another through heap_of and offset_of.
heap_of: Callable[[Proxy], Any] = _get_h
"""The heap of proxy ``p``."""
offset_of: Callable[[Proxy], int] = _get_o
"""The offset of proxy ``p``'s object in its heap."""


def slot_appender(p: PList | PDeque) -> Callable[[int], None]:
    """The function that appends a slot (reference counts adjusted) to list or deque
    ``p``."""
    return p._append_slot


def item_setter(p: PDict) -> Callable[[Any, Any], None]:
    """The function that stores ``value`` under ``key`` in dict ``p`` (``p[key] = value``
    without the compiled method's dispatch)."""
    return p._set


def member_adder(p: PSet) -> Callable[[Any], None]:
    """The function that adds ``key`` to set ``p``."""
    return p._add


def native_copy(p: Proxy) -> Any:
    """A native container with ``p``'s items (the items themselves are not copied)."""
    return p._native()


def attributes_of(p: PObject) -> PDict:
    """The attribute dict of the user object behind ``p``."""
    return p._attrs()


def to_native(value: Any) -> Any:
    """A deep native copy of ``value`` (proxies replaced by native objects)."""
    import copy

    return copy.deepcopy(value)


def _compile_hot_methods(fast: Any) -> None:
    """Give PDict its compiled ``__setitem__`` and ``__len__`` (PSet its ``__len__`` too: its
    table has the same header), and PObject its compiled ``__getattribute__``
    (docs/heap.md): the store, the count or a user attribute's read in C, without the
    Python frames; each calls the Python method whenever the heap's ``fast``
    attribute is not the compiled module, and for every case but its common one."""
    PDict.__setitem__ = fast.proxy_method(fast.PM_SETITEM, PDict._set, PDict._store, Proxy)
    PDict.__len__ = fast.proxy_method(fast.PM_LEN, PDict._len, PDict._len, Proxy)
    PSet.__len__ = fast.proxy_method(fast.PM_LEN, PSet._len, PSet._len, Proxy)  # (same header)
    PObject.__getattribute__ = fast.proxy_method(  # type: ignore[method-assign]
        fast.PM_GETATTR, _py_getattribute, _py_getattribute, PObject)


native.check_proxy_class(PObject)  # (what the compiled __getattribute__ looks up)
if _FAST is not None:
    _compile_hot_methods(_FAST)
