"""``persimmon`` command line: ``inspect`` and ``check`` a pool, ``crashtest`` a state machine.

    persimmon inspect POOL     # layout, device path, log, undo state, heap size, objects
    persimmon check POOL       # verify checksums; exit status 1 with a message if damaged
    persimmon crashtest MODULE:FACTORY --ops MODULE:GENERATOR [--seconds N] [--seed S]
                               # crash it on purpose (docs/crashtest.md); exit status 1 on
                               # the first failure, named with its operation and seed

Both open the pool read-only and without taking its lock, so they work beside a running
server (numbers may then be a moment old).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from typing import Any

from . import layout as L
from .errors import PersimmonError
from .filedevice import JOURNAL_SUFFIX
from .heap import Heap
from .oplog import OpLog
from .privateview import PrivateView


def _open(path: str, device: str) -> Heap:
    return Heap.open(path, lock=False, writable=False, rollback=False, mode=device)


def inspect_pool(path: str, device: str = "auto", count: bool = True) -> dict[str, Any]:
    """A dict describing the pool at ``path`` (what ``persimmon inspect`` prints)."""
    heap = _open(path, device)
    try:
        pool = heap.pool
        dev = heap.dev
        info: dict[str, Any] = {
            "path": path,
            "layout_version": L.LAYOUT_VERSION,
            "device": dev.kind,
            "is_pmem": dev.is_pmem,
            "flush_path": dev.flush_path,
            "survives": dev.survives,
            "file_size": dev.size,
            "commit_seq": heap.commit_seq,
            "commit_position": heap.position,
            "heap_bytes": heap.heap_top - pool.arena_off,
            "undo_log_bytes": pool.undo_size,
        }
        pending = heap.undo.valid_entries(heap.commit_seq + 1)
        info["undo_state"] = (
            "clean" if not pending else f"uncommitted batch of {len(pending)} entries"
        )
        if pool.oplog_size:
            lg = OpLog(dev, pool.oplog_off, pool.oplog_size)
            info.update(
                log_capacity=lg.capacity, log_head=lg.head, log_tail=lg.tail,
                log_epoch=lg.epoch,  # (one per process that wrote it: OpLog.begin_epoch)
                log_used_bytes=lg.head - lg.tail,
                log_usage=round((lg.head - lg.tail) / lg.capacity, 6),
                log_unapplied_bytes=lg.head - heap.position,
            )
        else:
            info["log_capacity"] = 0
        if getattr(dev, "writes_through", False):
            wb = path + JOURNAL_SUFFIX
            info["writeback_journal_bytes"] = os.path.getsize(wb) if os.path.exists(wb) else 0
        if count:
            info["objects"] = heap.count_objects()
        return info
    finally:
        heap.close()


def check_pool(path: str, device: str = "auto") -> list[str]:
    """Problems found in the pool (empty when it is sound).

    Everything a writable open checks is checked, and nothing is changed: the header, the
    commit record and the operation log's entries as they are, then, on a private
    copy-on-write view of the file (:class:`~persimmon.privateview.PrivateView`), the
    rollback of an uncommitted batch, the walk of the object graph from the root and the walk
    over the free chunks.  Damaged free space is reported as salvageable (the next writable
    open re-carves it and loses nothing); damage in the reachable graph means the pool
    cannot be opened.
    """
    problems: list[str] = []
    try:
        heap = _open(path, device)
    except (PersimmonError, OSError) as e:
        return [str(e)]
    try:
        pool = heap.pool
        if pool.oplog_size:
            try:
                lg = OpLog(heap.dev, pool.oplog_off, pool.oplog_size)
                for _ in lg.entries(lg.tail, lg.head):
                    pass
                if lg.head < heap.position:
                    problems.append(
                        f"the log head ({lg.head}) is behind the heap's commit position "
                        f"({heap.position})"
                    )
            except PersimmonError as e:
                problems.append(f"operation log: {e}")
    finally:
        heap.close()
    try:
        view = Heap.open(PrivateView(path), lock=False, writable=False)
    except (PersimmonError, OSError) as e:
        return problems + [f"heap: {e}"]
    try:
        damaged = view.verify()
    except PersimmonError as e:
        problems.append(f"heap: {e}; the pool cannot be opened")
    else:
        problems.extend(
            f"heap: {d}; salvageable: every object reachable from the root is intact, and the "
            "next writable open (a server or PSM start) re-carves this free space" for d in damaged
        )
    finally:
        view.close()
    if problems and _in_use(path):
        problems.append("the pool is in use by a running process, so a batch may have been "
                        "changing while it was read: stop that process for a definitive check")
    return problems


def _in_use(path: str) -> bool:
    """Does another process hold the pool's lock (a server or PSM that has it open)?"""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="persimmon", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("inspect", help="describe a pool")
    pi.add_argument("pool")
    pi.add_argument("--json", action="store_true", help="print JSON")
    pi.add_argument("--no-count", action="store_true", help="skip the object walk")
    pi.add_argument("--device", default="auto", choices=["auto", "libpmem", "msync"])
    pc = sub.add_parser("check", help="verify a pool's checksums and structure")
    pc.add_argument("pool")
    pc.add_argument("--device", default="auto", choices=["auto", "libpmem", "msync"])
    pt = sub.add_parser("crashtest", help="crash a state machine on purpose and check "
                        "what recovers (docs/crashtest.md)")
    pt.add_argument("factory", metavar="MODULE:FACTORY",
                    help="builds the initial state (a class works)")
    pt.add_argument("--ops", required=True, metavar="MODULE:GENERATOR",
                    help="GENERATOR(rng) yields the operations")
    pt.add_argument("--seconds", type=float, default=30.0, help="time budget (default 30)")
    pt.add_argument("--seed", type=int, default=None, help="replay a run (printed by each run)")
    pt.add_argument("--n-ops", type=int, default=500, help="operations per run (default 500)")
    pt.add_argument("--power-failures", type=int, default=20,
                    help="at least this many simulated power failures, whatever the time "
                    "(with --seed, the same ones every run; default 20)")
    pt.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.cmd == "crashtest":
        from .crashtest import main as crashtest_main

        return crashtest_main(args)
    if args.cmd == "inspect":
        try:
            info = inspect_pool(args.pool, args.device, count=not args.no_count)
        except (PersimmonError, OSError) as e:
            print(f"persimmon: {e}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            for k, v in info.items():
                if isinstance(v, dict):
                    v = ", ".join(f"{a}={b}" for a, b in sorted(v.items()))
                print(f"{k:22} {v}")
        return 0
    problems = check_pool(args.pool, args.device)
    if problems:
        for p in problems:
            print(f"persimmon: {args.pool}: {p}", file=sys.stderr)
        return 1
    print(f"{args.pool}: ok")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
