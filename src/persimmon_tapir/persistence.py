"""The port: every Persimmon-specific line of persimmon-tapir is in this module.

A replica talks to a persistence object only: ``rw(op)`` runs an operation of its state
machine (``state.ReplicaState``) and returns its result, ``commit()`` makes every operation
run so far durable (the replica calls it before it sends any reply), ``state`` is the state
to read (unlogged reads, the record for a view change), ``close()``.
``--persistence none`` runs the same replica on a plain in-memory state.
"""

from __future__ import annotations

import os

from persimmon.errors import PersimmonError

from .state import FORMAT, RECOVERING, LayoutMismatch, ReplicaState

__all__ = ["InMemory", "Persistent", "PoolMismatchError", "open_state"]


class PoolMismatchError(Exception):
    """The pool exists but is not this replica's (another program's, or another replica's)."""


class InMemory:
    """The baseline: the state lives in DRAM only; a restarted replica starts empty."""

    mode, recovered, recovery_seconds, recovery_times = "none", False, 0.0, {}

    def __init__(self, ident: tuple) -> None:
        self.state = ReplicaState(ident, RECOVERING)  # must be refilled by a view change
        self.rw = self.state.apply

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class Persistent:
    """The state machine made persistent by a Persimmon PSM in ``directory``."""

    mode = "persimmon"

    def __init__(self, ident: tuple, directory: str, log_size: int = 64 << 20) -> None:
        from persimmon import PSM

        os.makedirs(directory, exist_ok=True)
        self.pool_path = os.path.join(directory, f"tapir-s{ident[1]}-r{ident[2]}.pool")
        try:
            self.psm = PSM(lambda: ReplicaState(ident), self.pool_path, log_size=log_size)
        except PersimmonError as e:
            raise PoolMismatchError(f"{self.pool_path}: cannot open the pool: {e}") from None
        except LayoutMismatch as e:  # (its log tail met an operation: nothing applied)
            raise PoolMismatchError(self._other_layout(e.layout)) from None
        self.state = self.psm.state
        found = getattr(self.state, "ident", None)
        if not isinstance(self.state, ReplicaState) or tuple(found or ()) != tuple(ident):
            what = (f"replica {tuple(found)}" if isinstance(self.state, ReplicaState)
                    else f"a {type(self.state).__name__} state machine")
            self.psm.close()
            raise PoolMismatchError(f"{self.pool_path} holds {what}, not replica {ident} "
                                    "(cluster id, shard, replica, replicas, shards)")
        if getattr(self.state, "format", 1) != FORMAT:
            self.psm.close()
            raise PoolMismatchError(self._other_layout(getattr(self.state, "format", 1)))
        self.recovered = self.psm.recovered
        self.recovery_times = dict(self.psm.recovery_times)
        self.recovery_seconds = self.recovery_times.get("total", 0.0)
        self.rw = self.psm.invoke_rw_grouped  # logged and applied now, durable at commit()
        self.commit = self.psm.commit

    def _other_layout(self, layout: int) -> str:
        return (f"{self.pool_path} was written by another version of persimmon-tapir (state "
                f"layout {layout}, this one reads {FORMAT})")

    def close(self) -> None:
        self.psm.close()


def open_state(ident: tuple, mode: str, directory: str | None):
    if mode == "none":
        return InMemory(ident)
    if mode == "persimmon":
        if directory is None:
            raise ValueError("persistence 'persimmon' needs a directory")
        return Persistent(ident, directory)
    raise ValueError(f"unknown persistence mode {mode!r} (persimmon or none)")
