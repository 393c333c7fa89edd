"""Kill points: SIGKILL this process at a chosen step of the persistence code.

A SIGKILL sent from outside lands wherever the process happens to be, so a crash window of a
few lines (between an append to the operation log and the persist of its head, say) is hit
once in hundreds of runs.  Here the process kills itself at step ``n``, a step being one line
executed inside the functions of the chosen *sites*, so a test can sweep ``n`` over every
step of a workload (or every k-th) and hit each window by construction:

* ``write``: the write path (undo logging of a block, the stores, the allocator's hand-out,
  the commit and its record);
* ``open``: ``Heap.open`` and the pool's header and commit-record reads and writes;
* ``rollback``: the undo log's scan and ``rollback``;
* ``rebuild``: the walk that rebuilds reference counts and free lists at open;
* ``oplog``: the operation log's ``append``/``append_group``/``commit`` (the window between
  an entry's append and its head persist) and the foreground's ``invoke_rw``/``commit``.

Steps are counted with ``sys.settrace`` on those functions' code objects only while armed:
disarmed (the default), nothing is installed and no code path has a check in it.  The
compiled fast paths are opaque to it (their steps are the Python lines around them); set
``PERSIMMON_PURE_PYTHON=1`` to step through the Python store paths instead.

``arm(at, sites)`` from Python, or the environment: ``PERSIMMON_KILL_AT=N`` (0: count only)
and ``PERSIMMON_KILL_SITES=write,open,...`` (default all), read when ``persimmon`` is
imported.  ``PERSIMMON_KILL_ROLE=child`` moves the counting to the first child the process
forks (the runtime's shadow) instead of the process itself.  ``steps()`` says how many
steps have run, so a first counting run gives the range to sweep.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import sys
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import Any

SITES = ("write", "open", "rollback", "rebuild", "oplog")
_Q = struct.Struct("<q")

_state: dict[str, Any] = {"at": 0, "n": 0, "codes": frozenset(), "armed": False,
                          "role": "self", "forked": False}


def _site_functions(site: str) -> list[Any]:
    from .heap import Heap
    from .oplog import OpLog
    from .pool import Pool
    from .psm import PSM
    from .undolog import UndoLog

    table: dict[str, list[Any]] = {
        "write": [UndoLog.log_block, UndoLog.log_blocks, UndoLog._spill, Heap._prepare,
                  Heap._prepare_spans, Heap._log_round, Heap._log_blocks, Heap._log1,
                  Heap.store_i64, Heap.store_u64, Heap._wI, Heap._wbyte, Heap.store_bytes,
                  Heap.store_slot,
                  Heap.store_blob, Heap._alloc, Heap._bump, Heap._new_owned_blob,
                  Heap._new_blob, Heap._ht_write_entry, Heap._prepare_insert, Heap.commit,
                  Heap.end_op, Pool.write_commit],
        "open": [Heap.open, Pool.open, Pool._read_header, Pool.read_commit,
                 Pool.clear_torn_record, Pool.write_commit],
        "rollback": [UndoLog.rollback, UndoLog.valid_entries],
        "rebuild": [Heap._rebuild, Heap._rebuild_checked],
        "oplog": [OpLog.append, OpLog.append_group, OpLog.commit, PSM.invoke_rw, PSM.commit,
                  PSM._flush_group],
    }
    if site not in table:
        raise ValueError(f"unknown kill-point site {site!r} (one of {', '.join(SITES)})")
    return table[site]


def _codes(sites: Iterable[str]) -> frozenset[CodeType]:
    out = set()
    for s in sites:
        for f in _site_functions(s):
            f = getattr(f, "__func__", f)
            out.add(f.__code__)
    return frozenset(out)


def _line(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        st = _state
        st["n"] += 1
        if st["n"] == st["at"]:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return _line


def _call(frame: FrameType, event: str, arg: Any) -> Any:
    if frame.f_code in _state["codes"]:
        return _line
    return None


def _line_child(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        st = _state
        st["n"] += 1
        _Q.pack_into(st["shm"], 0, st["n"])  # (the parent reads the child's count)
        if st["n"] == st["at"]:
            os.kill(os.getpid(), signal.SIGKILL)
    return _line_child


def _call_child(frame: FrameType, event: str, arg: Any) -> Any:
    if frame.f_code in _state["codes"]:
        return _line_child
    return None


def arm(at: int, sites: Iterable[str] = SITES, role: str = "self") -> None:
    """Count steps from now in ``sites``; SIGKILL this process at step ``at`` (0: never)."""
    if role not in ("self", "child"):
        raise ValueError("role is 'self' or 'child'")
    _state.update(at=at, n=0, codes=_codes(sites), armed=True, role=role, forked=False)
    if role == "child":
        _state["shm"] = mmap.mmap(-1, 8)  # shared with the child: its step count
    if role == "self":
        sys.settrace(_call)
    elif not _state.get("hooked"):
        os.register_at_fork(after_in_child=_child_arms, after_in_parent=_parent_forked)
        _state["hooked"] = True


def _child_arms() -> None:
    st = _state
    if st["armed"] and st["role"] == "child" and not st["forked"]:
        st["forked"] = True  # (its own children are not armed)
        st["n"] = 0
        sys.settrace(_call_child)


def _parent_forked() -> None:
    if _state["role"] == "child":
        _state["forked"] = True  # only the first child counts (not a restarted shadow)


def disarm() -> None:
    """Stop counting (the count so far stays readable)."""
    _state["armed"] = False
    sys.settrace(None)


def steps() -> int:
    """Steps counted since :func:`arm` (with ``role="child"``: by the child, so far)."""
    if _state["role"] == "child" and "shm" in _state:
        return int(_Q.unpack_from(_state["shm"], 0)[0])
    return int(_state["n"])


def arm_from_env() -> None:
    """Arm from ``PERSIMMON_KILL_AT`` / ``_SITES`` / ``_ROLE`` (see the module doc)."""
    at = os.environ.get("PERSIMMON_KILL_AT")
    if at is None:
        return
    sites = [s for s in os.environ.get("PERSIMMON_KILL_SITES", ",".join(SITES)).split(",")
             if s]
    arm(int(at), sites, os.environ.get("PERSIMMON_KILL_ROLE", "self"))
