"""The heap's loading of slots as Python values: natives for immutables, proxies for containers.

A PM object has at most one live proxy (``live_proxies``), so ``is`` works as on native
objects; ``proxy_parents`` remembers how a container was reached, for error messages.

A part of :class:`persimmon.heap.Heap` (which inherits it); its methods use the heap's
state, set up by ``Heap.__init__``.
"""

from __future__ import annotations

import importlib
import pickle
import sys
from typing import Any

from . import layout as L
from . import proxies as px
from .errors import CorruptPoolError, PersimmonError

_q_unpack = L.S_q.unpack_from
_Q_unpack = L.S_Q.unpack_from
_d_unpack = L.S_d.unpack_from
_NONE, _FALSE, _TRUE, _DUMMY = L.NONE, L.FALSE, L.TRUE, L.DUMMY
_OBJ_CLASS, _OBJ_DICT, _OBJ_SIZE = L.OBJ_CLASS, L.OBJ_DICT, L.OBJ_SIZE
_OPQ_BLOB, _OPQ_SIZE = L.OPQ_BLOB, L.OPQ_SIZE


class ClassNotFoundError(PersimmonError):
    """A class recorded in the pool cannot be imported in this process."""


class Loading:
    """The heap's loading of slots as Python values: natives for immutables, proxies for containers.

    State used (set by ``Heap.__init__``): _classes, _opaque, buf, live_proxies,
    proxy_parents."""

    def load(self, x: int) -> Any:
        """The Python value of slot ``x``: natives for immutables, proxies for containers."""
        if x & 7:
            if x & 1:
                return x >> 3
            if x == _NONE:
                return None
            if x == _TRUE:
                return True
            if x == _FALSE:
                return False
            raise CorruptPoolError(f"invalid slot value {x:#x}")
        if not x:
            raise CorruptPoolError("empty slot read as a value")
        p = self.live_proxies.get(x)
        if p is not None:
            return p
        buf = self.buf
        t = buf[x]
        if t == L.T_BYTES:
            n = _Q_unpack(buf, x + 8)[0]
            return bytes(buf[x + 16 : x + 16 + n])
        if t == L.T_STR:
            n = _Q_unpack(buf, x + 8)[0]
            return str(buf[x + 16 : x + 16 + n], "utf-8", "surrogatepass")
        return self._load_other(x, t)

    def _load_other(self, x: int, t: int) -> Any:
        buf = self.buf
        if t == L.T_FLOAT:
            return _d_unpack(buf, x + 8)[0]
        if t == L.T_INT:
            n = _Q_unpack(buf, x + 8)[0]
            return int.from_bytes(buf[x + 16 : x + 16 + n], "little", signed=True)
        if t == L.T_TUPLE:
            n = _Q_unpack(buf, x + 8)[0]
            return tuple([self.load(y) for y in buf[x + 16 : x + 16 + 8 * n].cast("q")])
        if t == L.T_FROZENSET:
            n = _Q_unpack(buf, x + 8)[0]
            return frozenset([self.load(y) for y in buf[x + 16 : x + 16 + 8 * n].cast("q")])
        if t == L.T_COMPLEX:
            return complex(_d_unpack(buf, x + 8)[0], _d_unpack(buf, x + 16)[0])
        if t == L.T_DICT:
            p = px.PDict(self, x)
        elif t == L.T_LIST:
            p = px.PList(self, x)
        elif t == L.T_SET:
            p = px.PSet(self, x)
        elif t == L.T_DEQUE:
            p = px.PDeque(self, x)
        elif t == L.T_OBJECT:
            cls = self.class_of(x)
            p = px.proxy_class_for(cls)(self, x)
        elif t == L.T_OPAQUE:
            if x in self._opaque:
                return self._opaque[x][0]
            blob = _q_unpack(buf, x + _OPQ_BLOB)[0]
            data = self.load(blob)
            try:
                value = pickle.loads(data)
            except Exception as e:
                raise PersimmonError(
                    f"an opaque (pickled) value in the pool cannot be loaded here: {e}"
                ) from e
            self._opaque[x] = (value, data)
            return value
        else:
            raise CorruptPoolError(f"object at {x} has unknown type {t}")
        self.live_proxies[x] = p
        return p

    def class_of(self, x: int) -> type:
        """The user class of the object at ``x`` (imported on first use)."""
        name_ref = _q_unpack(self.buf, x + _OBJ_CLASS)[0]
        name = self.load(name_ref)
        cls = self._classes.get(name)
        if cls is None:
            cls = self._import_class(name)
            self._classes[name] = cls
        return cls

    @staticmethod
    def _import_class(name: str) -> type:
        mod_name, _, qual = name.partition(":")
        try:
            mod = sys.modules.get(mod_name) or importlib.import_module(mod_name)
            obj: Any = mod
            for part in qual.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ClassNotFoundError(
                f"the pool holds instances of {mod_name}.{qual}, which cannot be imported in "
                f"this process ({e}); import the module that defines it first"
            ) from None
        return obj

    def note_parent(self, x: int, parent: int, key: Any, attr: bool = False) -> None:
        """Remember how the container at ``x`` was reached (for error messages)."""
        if x in self.live_proxies and x not in self.proxy_parents:
            self.proxy_parents[x] = (parent, key, attr)

    def path_of(self, off: int) -> str:
        """Best-effort access path of the object at ``off`` (for error messages)."""
        parts = []
        seen = 0
        while off in self.proxy_parents and seen < 64:
            off, key, attr = self.proxy_parents[off]
            parts.append(f".{key}" if attr else f"[{key!r}]")
            seen += 1
        return "root" + "".join(reversed(parts))
