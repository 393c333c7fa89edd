"""The port: every Persimmon-specific line of persimmon-redis is in this module.

The server talks to a persistence object only: ``execute_rw(op)`` for every write (an
operation of the state machine; ``log_write(op)`` logs a plain SET that the server then
applies itself, docs/redis.md "Reading requests"), ``sync()`` once before the replies of a
batch are written (group commit; on a disk pool ``commit_begin/commit_write/commit_end``
instead, so that the synced write overlaps the next requests), ``checkpoint()`` for
SAVE/BGSAVE, ``stats()`` for INFO, ``close()``.
``--persistence none`` runs the same server on a plain in-memory state.
"""

from __future__ import annotations

import os

from persimmon.errors import PersimmonError as PersistenceError
from persimmon.errors import ShadowError

from .state import RedisState

__all__ = ["NoPersistence", "PersimmonPersistence", "PersistenceError", "ShadowError"]


class NoPersistence:
    """The vanilla baseline: the state lives in DRAM only."""

    mode = "none"

    def __init__(self, databases: int) -> None:
        self.state = RedisState(databases)
        self.recovered = False
        self.pool_path = None
        self.device = "none"
        self.recovery_seconds = 0.0
        self.execute_rw = self.state.apply  # (a bound method: no wrapper call per write)

    def log_write(self, op: tuple) -> bool:
        return True  # (nothing to log: the server applies the write itself)

    overlapped = False  # (see PersimmonPersistence)
    commit_waits = False

    def sync(self) -> None:
        pass

    def checkpoint(self, wait: bool) -> None:
        pass

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class PersimmonPersistence:
    """The state machine made persistent by a Persimmon PSM (pool under ``directory``)."""

    mode = "persimmon"

    def __init__(self, databases: int, directory: str, log_size: int, device: str = "auto",
                 verify: bool = False, shadow_idle: bool = True,
                 overlap_commits: int = 0) -> None:
        from persimmon import PSM

        os.makedirs(directory, exist_ok=True)
        self.pool_path = os.path.join(directory, "persimmon-redis.pool")
        self.psm = PSM(lambda: RedisState(databases), self.pool_path, log_size=log_size,
                       device=device, verify=verify, shadow_idle=shadow_idle)
        self.state = self.psm.state
        self.recovered = self.psm.recovered
        self.device = self.psm.device_info().describe()
        self.recovery_seconds = self.psm.recovery_times.get("total", 0.0)
        # logged and applied now, durable at sync(): invoke_rw(op, commit=False)
        self.execute_rw = self.psm.invoke_rw_grouped
        # logged only (True), for the server to apply itself as execute_rw would (a plain
        # SET; False: nothing done, execute_rw it)
        self.log_write = self.psm.log_rw_grouped
        self.sync = self.psm.commit  # (once per batch of requests: no wrapper call either)
        # a disk pool with --commit-overlap yes|N (1 by default; no: 0): the batch's
        # commit is a synced write the server overlaps with the next requests (begin here,
        # write in a thread, end here; replies wait for the end), up to in_flight commits
        # at once (docs/device.md, "Overlapped commits")
        self.overlapped = bool(overlap_commits) and self.psm.overlaps_commits
        # a disk pool's commit is a synced write the loop waits for (0.05-0.5 ms): the
        # replies of reads of durable data leave before it (docs/device.md, "Reads sent
        # before the commit"); on PM or tmpfs a commit is a fence, not worth the tracking
        self.commit_waits = self.psm.overlaps_commits
        self.in_flight = max(1, overlap_commits)
        self.commit_begin = self.psm.commit_begin
        self.commit_write = self.psm.commit_write
        self.commit_end = self.psm.commit_end
        self.commit_written = self.psm.commit_written
        self.clear_commit_signal = self.psm.clear_commit_signal
        # the writes done by threads that never take the GIL, which say one is done
        # through this descriptor (None: not built; the server uses Python threads)
        self.commit_fd = self.psm.background_commits(self.in_flight) if self.overlapped else None
        self.logged_ops = self.psm.logged_ops

    def checkpoint(self, wait: bool) -> None:
        if wait:
            self.psm.sync()
        else:
            self.psm.commit()

    def stats(self) -> dict:
        return {**self.psm.stats(), "commit_overlap": "yes" if self.overlapped else "no"}

    def close(self) -> str | None:
        """Close the pool; returns why the PM copy could not catch up (the shadow kept
        failing: the log keeps the operations), or None."""
        self.psm.close()
        return self.psm.shadow_failure
