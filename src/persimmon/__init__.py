"""Persimmon: persistent state machines for Python.

Make an in-memory state machine persistent and crash-consistent::

    import persimmon

    class KV:
        def __init__(self):
            self.data = {}

        @persimmon.rw
        def put(self, k, v):
            self.data[k] = v

        @persimmon.ro
        def get(self, k):
            return self.data.get(k)

    with persimmon.open(KV, "/dev/shm/kv.pool") as kv:
        kv.put("a", 1)          # durable when it returns
        kv.get("a")             # a plain read of the DRAM copy

Lower-level API: :class:`PSM` (``invoke_rw`` / ``invoke_ro`` / ``commit``) and the
persistent heap :class:`persimmon.heap.Heap`.
"""

from __future__ import annotations

from .calls import ro, rw
from .errors import (
    CorruptPoolError,
    DivergenceError,
    LayoutVersionError,
    LogFullError,
    NotAPoolError,
    PersimmonError,
    PoolError,
    PoolExistsError,
    PoolFullError,
    PoolInUseError,
    ShadowError,
    UnpersistableError,
)

__version__ = "0.1.0"

__all__ = [
    "PSM", "Persistent", "open", "rw", "ro", "CorruptPoolError", "DivergenceError",
    "LayoutVersionError", "LogFullError", "NotAPoolError", "PersimmonError", "PoolError",
    "PoolExistsError", "PoolFullError", "PoolInUseError", "ShadowError", "UnpersistableError",
]


def __getattr__(name: str) -> object:
    # The runtime is imported on first use, so that ``import persimmon.heap`` (or the device
    # layer) stays light.
    if name in ("PSM",):
        from .psm import PSM

        return PSM
    if name in ("open", "Persistent"):
        from .handle import Persistent, open_persistent

        return open_persistent if name == "open" else Persistent
    raise AttributeError(f"module 'persimmon' has no attribute {name!r}")


def _arm_kill_points() -> None:
    # Kill points for crash tests (persimmon.killpoints): only when the environment asks;
    # otherwise nothing is installed and no code path checks anything.
    import os

    if os.environ.get("PERSIMMON_KILL_AT") is not None:
        from .killpoints import arm_from_env

        arm_from_env()


_arm_kill_points()
