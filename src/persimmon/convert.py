"""The heap's conversion of native values into PM, and their resync at end_op.

New objects start at reference count 0 (freed at end_op unless stored).  A native
container converted during an operation is remembered with a snapshot and written again at
the operation's end if it changed; opaque (pickled) values handed out are re-pickled and
written back if their pickled form changed (docs/heap.md, "Operation boundaries").

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

import pickle
from collections import deque
from types import BuiltinFunctionType, FunctionType, GeneratorType, MethodType, ModuleType
from typing import Any

from . import layout as L
from . import proxies as px
from .allocator import write_header
from .errors import UnpersistableError

_q_pack = L.S_q.pack_into
_q_unpack = L.S_q.unpack_from
_d_pack = L.S_d.pack_into
_SMALL_MIN = L.SMALL_MIN
_SMALL_MAX = L.SMALL_MAX
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
# Container field offsets (layout.py)
_LIST_CAP, _LIST_ITEMS, _LIST_SIZE = L.LIST_CAP, L.LIST_ITEMS, L.LIST_SIZE
_DQ_CAP, _DQ_ITEMS, _DQ_HEAD = L.DQ_CAP, L.DQ_ITEMS, L.DQ_HEAD
_DQ_MAXLEN, _DQ_SIZE = L.DQ_MAXLEN, L.DQ_SIZE
_OBJ_CLASS, _OBJ_DICT, _OBJ_SIZE = L.OBJ_CLASS, L.OBJ_DICT, L.OBJ_SIZE
_OPQ_BLOB, _OPQ_SIZE = L.OPQ_BLOB, L.OPQ_SIZE


def _is_plain_class(cls: type) -> bool:
    """True for classes whose instances are stored field by field (their __dict__)."""
    if cls.__module__ == "builtins" or type(cls) is not type:
        return False
    if cls.__reduce_ex__ is not object.__reduce_ex__ or cls.__reduce__ is not object.__reduce__:
        return False
    if getattr(cls, "__getstate__", None) is not object.__getstate__:
        return False
    if getattr(cls, "__setstate__", None) is not None:
        return False
    for k in cls.__mro__[:-1]:
        # only classes written in Python (heap types); a C type keeps state outside __dict__
        if k.__module__ == "builtins" or not k.__flags__ & _HEAPTYPE:
            return False
        slots = k.__dict__.get("__slots__")
        if slots is not None:
            names = [slots] if isinstance(slots, str) else list(slots)
            if any(n not in ("__dict__", "__weakref__") for n in names):
                return False
    return "<locals>" not in cls.__qualname__


_HEAPTYPE = 1 << 9


_UNPERSISTABLE = (FunctionType, BuiltinFunctionType, MethodType, GeneratorType, ModuleType)


class Conversion:
    """The heap's conversion of native values into PM, and their resync at end_op.

    State used (set by ``Heap.__init__``): _classes, _classnames, _conv, _depth, _keep,
    _memo, _opaque, buf, live_proxies."""

    def _new_blob(self, t: int, data: bytes) -> int:
        """A new bytes/str/int object, reference count 0 until stored (see :meth:`_born`)."""
        off = self._new_owned_blob(t, data)
        self._born(off)
        return off

    def _to_slot(self, v: Any) -> int:
        """Convert a value to a slot; new objects start with reference count 0.

        Raises :class:`UnpersistableError` whose path is relative to ``v``; callers that know
        where ``v`` is being stored prefix it (:meth:`_convert`).
        """
        t = type(v)
        if t is bytes:
            return self._new_blob(L.T_BYTES, v)
        if t is str:
            return self._new_blob(L.T_STR, v.encode("utf-8", "surrogatepass"))
        if t is int:
            if _SMALL_MIN <= v <= _SMALL_MAX:
                return (v << 3) | 1
            n = (v.bit_length() + 8) // 8
            return self._new_blob(L.T_INT, v.to_bytes(n, "little", signed=True))
        if v is None:
            return _NONE
        if t is bool:
            return _TRUE if v else _FALSE
        if t is float:
            off = self._alloc(16)
            buf = self.buf
            write_header(buf, off, L.T_FLOAT, buf[off + 1], 0, 0, 0)
            _d_pack(buf, off + 8, v)
            self._born(off)
            return off
        if isinstance(v, px.Proxy):
            if px.heap_of(v) is self:
                return px.offset_of(v)
            v = px.native_copy(v)
            t = type(v)
        memo = self._memo
        if id(v) in memo:
            return memo[id(v)]
        self._depth += 1
        try:
            return self._to_slot_container(v, t)
        finally:
            self._depth -= 1

    def _to_slot_container(self, v: Any, t: type) -> int:
        if t is tuple:
            return self._new_seq(L.T_TUPLE, self._convert_items(v))
        if t is dict:
            return self._convert_dict(v)
        if t is list:
            return self._convert_list(v)
        if t is set:
            return self._convert_set(v)
        if t is deque:
            return self._convert_deque(v)
        if t is frozenset:
            return self._new_seq(L.T_FROZENSET, self._convert_items(v, "{...}"))
        if t is complex:
            off = self._alloc(32)
            buf = self.buf
            write_header(buf, off, L.T_COMPLEX, buf[off + 1], 0, 0, 0)
            _d_pack(buf, off + 8, v.real)
            _d_pack(buf, off + 16, v.imag)
            self._born(off)
            return off
        if _is_plain_class(t) and hasattr(v, "__dict__"):
            return self._convert_object(v)
        return self._convert_opaque(v)

    def convert(self, v: Any, where: Any, key: Any = None, attr: bool = False) -> int:
        """:meth:`_to_slot` for a store into the object at ``where`` under ``key``."""
        if self._depth:  # inside a conversion: the enclosing container adds the path
            return self._to_slot(v)
        try:
            return self._to_slot(v)
        except UnpersistableError as e:
            base = self.path_of(where) if isinstance(where, int) else str(where)
            if key is not None:
                base += f".{key}" if attr else f"[{key!r}]"
            raise e.prefixed(base) from None

    def _convert_items(self, items: Any, fmt: str | None = None) -> list[int]:
        out = []
        for i, item in enumerate(items):
            try:
                out.append(self._to_slot(item))
            except UnpersistableError as e:
                raise e.prefixed(fmt if fmt is not None else f"[{i}]") from None
        return out

    def _new_seq(self, t: int, slots: list[int]) -> int:
        n = len(slots)
        off = self._alloc(16 + 8 * n)
        buf = self.buf
        write_header(buf, off, t, buf[off + 1], 0, 0, n)
        if n:
            buf[off + 16 : off + 16 + 8 * n] = L.struct_pack_q(slots)
            for s in slots:
                if s > 0 and not s & 7:
                    self.incref(s)
        self._born(off)
        return off

    def _remember(self, v: Any, off: int, snapshot: Any) -> None:
        self._memo[id(v)] = off
        self._keep.append(v)
        self._conv.append((v, off, snapshot))

    def _convert_list(self, v: list) -> int:
        off = self._new_list(len(v))
        self._remember(v, off, list(v))
        return self._fill_seq(off, px.PList(self, off), v)

    def _fill_seq(self, off: int, p: Any, items: Any) -> int:
        """Append converted ``items`` to the new list or deque at ``off`` (its proxy ``p``);
        return ``off``."""
        self.live_proxies[off] = p
        append = px.slot_appender(p)
        for i, item in enumerate(items):
            try:
                s = self._to_slot(item)
            except UnpersistableError as e:
                raise e.prefixed(f"[{i}]") from None
            append(s)
        return off

    def _new_list(self, cap: int) -> int:
        off = self._alloc(_LIST_SIZE)
        buf = self.buf
        write_header(buf, off, L.T_LIST, buf[off + 1], 0, 0, 0)
        items = self.new_array(cap) if cap else 0
        buf = self.buf
        _q_pack(buf, off + _LIST_CAP, self.array_capacity(items) if items else 0)
        _q_pack(buf, off + _LIST_ITEMS, items)
        self._born(off)
        return off

    def _convert_dict(self, v: dict) -> int:
        off = self._new_table(L.T_DICT, len(v))
        self._remember(v, off, list(v.items()))
        p = px.PDict(self, off)
        self.live_proxies[off] = p
        setitem = px.item_setter(p)
        for k, val in v.items():
            try:
                setitem(k, val)
            except UnpersistableError as e:
                raise e.prefixed(f"[{k!r}]") from None
        return off

    def _convert_set(self, v: set) -> int:
        off = self._new_table(L.T_SET, len(v))
        self._remember(v, off, set(v))
        p = px.PSet(self, off)
        self.live_proxies[off] = p
        add = px.member_adder(p)
        for k in v:
            try:
                add(k)
            except UnpersistableError as e:
                raise e.prefixed("{...}") from None
        return off

    def _convert_deque(self, v: deque) -> int:
        off = self._alloc(_DQ_SIZE)
        buf = self.buf
        write_header(buf, off, L.T_DEQUE, buf[off + 1], 0, 0, 0)
        cap = max(8, len(v))
        items = self.new_array(cap)
        buf = self.buf
        _q_pack(buf, off + _DQ_CAP, self.array_capacity(items))
        _q_pack(buf, off + _DQ_ITEMS, items)
        _q_pack(buf, off + _DQ_HEAD, 0)
        _q_pack(buf, off + _DQ_MAXLEN, -1 if v.maxlen is None else v.maxlen)
        self._born(off)
        self._remember(v, off, list(v))
        return self._fill_seq(off, px.PDeque(self, off), v)

    def _convert_object(self, v: Any) -> int:
        cls = type(v)
        name = self._classnames.get(cls)
        if name is None:
            name = f"{cls.__module__}:{cls.__qualname__}"
            self._classnames[cls] = name
            self._classes[name] = cls
        off = self._alloc(_OBJ_SIZE)
        buf = self.buf
        write_header(buf, off, L.T_OBJECT, buf[off + 1], 0, 0, 0)
        _q_pack(buf, off + _OBJ_CLASS, 0)
        _q_pack(buf, off + _OBJ_DICT, 0)
        self._born(off)
        self._memo[id(v)] = off
        self._keep.append(v)
        attrs = vars(v)
        self.store_slot(off + _OBJ_CLASS, self._to_slot(name))
        d = self._new_table(L.T_DICT, len(attrs))
        self.store_slot(off + _OBJ_DICT, d)
        self._conv.append((v, off, list(attrs.items())))
        setitem = px.item_setter(px.PDict(self, d))
        for k, val in attrs.items():
            try:
                setitem(k, val)
            except UnpersistableError as e:
                raise e.prefixed(f".{k}") from None
        return off

    def _convert_opaque(self, v: Any) -> int:
        t = type(v)
        tname = f"{t.__module__}.{t.__qualname__}"
        if isinstance(v, _UNPERSISTABLE) or t.__name__ == "<lambda>":
            raise UnpersistableError(tname, "", "functions, generators and modules cannot be "
                                     "stored; store data and keep code in the class")
        try:
            data = pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise UnpersistableError(
                tname, "", f"it is neither a supported type nor picklable ({e})"
            ) from None
        off = self._alloc(_OPQ_SIZE)
        buf = self.buf
        write_header(buf, off, L.T_OPAQUE, buf[off + 1], 0, 0, 0)
        _q_pack(buf, off + _OPQ_BLOB, 0)
        self._born(off)
        self.store_slot(off + _OPQ_BLOB, self._new_blob(L.T_BYTES, data))
        self._opaque[off] = (v, data)
        self._memo[id(v)] = off
        self._keep.append(v)
        return off

    def _writeback_opaque(self) -> None:
        items = list(self._opaque.items())
        self._opaque.clear()
        for off, (value, data) in items:
            if self.buf[off] != L.T_OPAQUE:
                continue
            try:
                now = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                raise UnpersistableError(
                    type(value).__qualname__, self.path_of(off),
                    f"it can no longer be pickled after this operation ({e})",
                ) from None
            if now != data:
                self.store_slot(off + _OPQ_BLOB, self._new_blob(L.T_BYTES, now))
        self._opaque.clear()

    def _resync(self) -> None:
        """Bring PM copies of native containers converted in this op up to date."""
        conv = self._conv
        try:
            self._resync_each(conv)
        finally:  # (a value that cannot be persisted is reported once, not at every end_op)
            conv.clear()

    def _resync_each(self, conv: list[tuple[Any, int, Any]]) -> None:
        i = 0
        while i < len(conv):
            v, off, snap = conv[i]
            i += 1
            buf = self.buf
            if buf[off] == L.T_FREE:
                continue
            t = type(v)
            if t is list or t is deque:
                if len(v) == len(snap) and all(a is b for a, b in zip(v, snap, strict=True)):
                    continue
                p = self.load(off)
                p.clear()
                append = px.slot_appender(p)
                for j, item in enumerate(v):
                    append(self.convert(item, off, j))
            elif t is dict:
                items = list(v.items())
                if len(items) == len(snap) and all(
                    a[0] is b[0] and a[1] is b[1] for a, b in zip(items, snap, strict=True)
                ):
                    continue
                p = self.load(off)
                p.clear()
                setitem = px.item_setter(p)
                for k, val in items:
                    setitem(k, val)
            elif t is set:
                if v == snap:
                    continue
                p = self.load(off)
                p.clear()
                add = px.member_adder(p)
                for k in v:
                    add(k)
            else:
                items = list(vars(v).items())
                if len(items) == len(snap) and all(
                    a[0] is b[0] and a[1] is b[1] for a, b in zip(items, snap, strict=True)
                ):
                    continue
                d = px.PDict(self, _q_unpack(buf, off + _OBJ_DICT)[0])
                d.clear()
                setitem = px.item_setter(d)
                for k, val in items:
                    setitem(k, val)
