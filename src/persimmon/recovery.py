"""Recovery at open: roll back an uncommitted batch, materialize the DRAM copy from the PM
copy, and re-execute the logged operations the PM copy has not seen.

:func:`open_and_recover` is what :class:`persimmon.PSM` runs on an existing pool;
:func:`recover_state` and :func:`replay` are its steps, usable on a simulated device (crash
tests recover from a device image without a pool file).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .calls import apply_op
from .errors import PoolError
from .heap import Heap
from .opcodec import decode, split
from .oplog import OpLog
from .pool import Pool

log = logging.getLogger("persimmon")


def open_and_recover(path: str, *, device: str = "auto", lock_timeout: float = 5.0,
                     progress: bool | None = None) -> tuple[Pool, Any, dict[str, float]]:
    """Open the PSM pool at ``path`` locked, and recover its state.  Returns the open pool
    (the caller owns it), the state and the time of each phase (:func:`recover_state`)."""
    pool = Pool.open(path, lock=True, mode=device, lock_timeout=lock_timeout)
    try:
        if pool.oplog_size == 0:
            raise PoolError(
                f"{path} is a heap pool without an operation log; a PSM needs a pool "
                "created by PSM (or Heap.create with log_size > 0)"
            )
        state, times = recover_state(path, device=device, progress=progress,
                                     oplog_dev=pool.dev)
    except BaseException:
        pool.close()
        raise
    log.info(
        "recovered %s in %.3fs (open+rollback %.3fs of %d undo entries, materialize "
        "%.3fs, replay %d ops %.3fs)", path, times["total"], times["rollback"],
        times["rolled_back_undo_entries"], times["materialize"], times["replayed_ops"],
        times["replay"],
    )
    return pool, state, times


def recover_state(
    target: Any, *, device: str = "auto", progress: bool | None = None, oplog_dev: Any = None
) -> tuple[Any, dict[str, float]]:
    """Recovery: roll back an uncommitted batch, materialize the DRAM copy from PM, and
    re-execute the logged operations the PM copy has not seen.  Returns the state and the
    time of each phase.  ``target`` is a pool path or a device (tests use a simulated one);
    ``oplog_dev`` is the device to read the log through (default: the heap's).
    """
    t0 = time.perf_counter()
    heap = Heap.open(target, lock=False, writable=False, mode=device)
    t1 = time.perf_counter()
    try:
        state = heap.materialize()
        start = heap.position
        rolled_back = heap.stats["rolled_back"]
        pool = heap.pool
        t2 = time.perf_counter()
        oplog = OpLog(oplog_dev if oplog_dev is not None else heap.dev, pool.oplog_off,
                      pool.oplog_size)
        if oplog.dev.writes_through:  # a disk pool: the head may lag the durable entries
            oplog.recover_end(start)
        if oplog.tail < start:
            oplog.set_tail(start)
        n = replay(state, oplog, start, progress)
    finally:
        if isinstance(target, str):
            heap.close()
    t3 = time.perf_counter()
    return state, {
        "rollback": t1 - t0, "materialize": t2 - t1, "replay": t3 - t2, "total": t3 - t0,
        "replayed_ops": float(n), "rolled_back_undo_entries": float(rolled_back),
    }


def replay(state: Any, oplog: OpLog, start: int, progress: bool | None = None) -> int:
    """Re-execute the logged operations from ``start`` up to the head on ``state``."""
    head = oplog.head
    bar = None
    if progress is None:
        progress = sys.stderr.isatty() and head - start > (8 << 20)
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=head - start, unit="B", unit_scale=True,
                   desc="persimmon: replaying log")
    n = 0
    last = start
    for pos, payload in oplog.entries(start, head):
        for item in split(payload):
            op = decode(item)[0]
            try:
                apply_op(state, op)
            except Exception:
                pass  # it raised the first time too; its partial effects are replayed
            n += 1
        if bar is not None:
            bar.update(pos - last)
            last = pos
    if bar is not None:
        bar.close()
    return n
