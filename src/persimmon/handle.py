"""``persimmon.open``: a persistent object whose decorated methods are operations."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .calls import CALL
from .psm import PSM


class Persistent:
    """Wraps a :class:`PSM`; ``@rw`` methods become logged operations, ``@ro`` methods and
    other attributes read the DRAM copy.  Use as a context manager or call :meth:`close`."""

    def __init__(self, psm: PSM) -> None:
        object.__setattr__(self, "_psm", psm)
        object.__setattr__(self, "_bound", {})

    @property
    def psm(self) -> PSM:
        """The underlying :class:`PSM` (stats(), verify(), commit(), recovered ...)."""
        return self._psm

    def __getattr__(self, name: str) -> Any:
        bound = self._bound.get(name)
        if bound is not None:
            return bound
        state = self._psm.state
        attr = getattr(type(state), name, None)
        kind = getattr(attr, "_persimmon_kind", None)
        if kind == "rw":
            psm = self._psm

            @functools.wraps(attr)
            def call(*args: Any, **kw: Any) -> Any:
                return psm.invoke_rw((CALL, name, args, kw))

            self._bound[name] = call
            return call
        return getattr(state, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            "state changes must go through @persimmon.rw methods (they are what is logged)"
        )

    def close(self) -> None:
        self._psm.close()

    def __enter__(self) -> Persistent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_persistent(factory: Callable[[], Any], path: str, **options: Any) -> Persistent:
    """Open (or create) a persistent state machine and return its handle.

    ``factory()`` builds the initial object when the pool is new (a class works).  Calls of
    its ``@persimmon.rw`` methods through the handle are logged and durable on return; calls
    of ``@persimmon.ro`` methods and attribute reads run on the DRAM copy.  ``options`` are
    those of :class:`PSM`.
    """
    return Persistent(PSM(factory, path, **options))
