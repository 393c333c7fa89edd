"""The persistent state machine (PSM): the foreground half of the runtime, and recovery.

The application's state machine stays in DRAM as ordinary Python objects.  Every read-write
operation is appended to the operation log in PM and made durable before it is
acknowledged; the shadow process (:mod:`persimmon.shadow`) re-executes the log on the PM copy.
After a crash, :class:`PSM` rebuilds the DRAM copy from the PM copy plus the log tail.

    psm = PSM(KV, "/dev/shm/kv.pool")
    psm.invoke_rw(("put", b"k", b"v"))     # durable when it returns
    psm.invoke_ro(("get", b"k"))           # runs on the DRAM copy only
    psm.close()
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

from . import counters
from . import shadow as S
from .calls import apply_op
from .digest import digest
from .errors import DivergenceError, PersimmonError, ShadowError
from .heap import FAST, Heap
from .opcodec import GROUP_OVERHEAD, encode, encode_verified, pack
from .oplog import OpLog
from .recovery import open_and_recover, recover_state, replay
from .supervisor import Supervisor

log = logging.getLogger("persimmon")

_ENTRY_OVERHEAD = 64  # header + alignment of one log entry, upper bound


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What a PSM's pool is stored on (:meth:`PSM.device_info`), for a port to report."""

    kind: str  # the device: "libpmem", "msync", "file" (a disk pool)...
    path: str  # the pool file
    is_pmem: bool  # mapped real persistent memory (libpmem says so)
    flush_path: str  # how persists reach the medium: "cache-flush", "msync", "fdatasync"...
    survives: str  # "process crashes" (tmpfs: lost at a reboot) or "power loss"
    pool_bytes: int  # the pool file's mapped size
    log_bytes: int  # the operation log's size

    def describe(self) -> str:
        """One line for a server's banner or INFO: the device and how persists reach it."""
        return f"{self.kind} (is_pmem={self.is_pmem}, flush path: {self.flush_path})"


class _GroupBytes:
    """The group's byte count where the compiled grouper is not built (invoke_rw_grouped
    stays the Python method; ``on`` is set as the compiled one's is, and read by nobody)."""

    __slots__ = ("bytes", "on")

    def __init__(self, nbytes: int) -> None:
        self.bytes, self.on = nbytes, True


class PSM:
    """A persistent state machine backed by the pool at ``path``.

    ``factory()`` builds the initial state machine; it is called only when the pool is new.
    The state machine is an object with ``apply(op)`` (or methods decorated with
    :func:`persimmon.rw`); ``apply`` must be deterministic: no clock, random numbers, files,
    sockets or other outside effects.  Create the PSM after the application is initialised
    and before it opens its network.

    Parameters:
        log_size: bytes of the operation log (fixed when the pool is created).
        verify: divergence detection.  True: the shadow compares the digest of every
            operation's result and of the whole state after it with the foreground's, and
            names the first operation that differs (costs a state digest per operation on
            both sides: a debugging mode).  False (default): off.
        max_batch: the shadow commits at least every ``max_batch`` operations.
        pin_cores: pin the foreground to CPU 0 and the shadow to CPU 1.
        shadow_idle: the shadow is background work, so by default (True) it runs under
            Linux's ``SCHED_IDLE`` policy while the log is less than half full: it takes
            only CPU time nothing else wants, falls behind while requests keep the cores
            busy (the log absorbs the difference) and catches up when they are idle.  Past
            half a log it switches to the normal policy until it is back under an eighth,
            so the foreground rarely waits for log space and the replay part of a recovery
            stays bounded.  False: normal priority all the time.
        device: "auto", "libpmem" or "msync" (see :func:`persimmon.device.open_device`).
        lock_timeout: seconds to wait for a previous owner of the pool (e.g. the shadow of a
            crashed process) to let go before raising :class:`PoolInUseError`.
        undo_size: bytes of the heap's primary undo log (fixed when the pool is created).
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        path: str,
        *,
        log_size: int = 64 << 20,
        verify: bool = False,
        max_batch: int = 4096,
        pin_cores: bool = False,
        shadow_idle: bool = True,
        device: str = "auto",
        lock_timeout: float = 5.0,
        undo_size: int = 4 << 20,
        initial_size: int = 16 << 20,
        progress: bool | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.verify_mode = bool(verify)
        self.max_batch = max(1, int(max_batch))
        self.pin_cores = pin_cores
        self.shadow_idle = bool(shadow_idle)
        self._device = device
        self._closed = False
        self._ops_logged = 0
        self._backlog = 0
        sup = self._supervisor = Supervisor(self.path, verify=self.verify_mode,
                                            max_batch=self.max_batch, pin_cores=pin_cores,
                                            idle=self.shadow_idle)
        # (the shared objects, bound once: the request path reads them per operation)
        self._counters, self._message, self._bell = sup.counters, sup.message, sup.bell
        self.recovery_times: dict[str, float] = {}
        # The first shadow is forked now, before this process holds the state: a shadow
        # forked later would share, copy-on-write, every page of the DRAM copy and keep the
        # originals as the foreground writes them (after a recovery, a second copy of the
        # state's memory held by a process that never reads it).  It waits until the pool
        # is ready and the foreground hands it the locked pool file (_hand_over).
        handoff, theirs = socket.socketpair()
        try:
            sup.start(theirs)
        finally:
            theirs.close()
        try:
            self._open_and_recover(factory, log_size, undo_size, initial_size, device,
                                   lock_timeout, progress, pin_cores)
            sup.hand_over(handoff, self._pool.dev.fileno())
        except BaseException:
            handoff.close()  # the waiting shadow sees the end of the socket and exits
            sup.stop()
            sup.bell.close()
            pool = getattr(self, "_pool", None)
            if pool is not None:
                pool.close()
            raise
        finally:
            handoff.close()
        sup.start_watchdog()
        _live.add(self)

    def _open_and_recover(self, factory: Callable[[], Any], log_size: int, undo_size: int,
                          initial_size: int, device: str, lock_timeout: float,
                          progress: bool | None, pin_cores: bool) -> None:
        # recover the pool at self.path, or create it with factory()'s state
        t0 = time.perf_counter()
        if os.path.exists(self.path):
            self.recovered = True
            self._recover(lock_timeout, progress)
        else:
            self.recovered = False
            d = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(d, exist_ok=True)
            state = factory()
            heap = Heap.create(self.path, state, log_size=log_size, undo_size=undo_size,
                               initial_size=initial_size, mode=device)
            OpLog.format(heap.dev, heap.pool.oplog_off, heap.pool.oplog_size)
            self._pool = heap.pool
            self.state = state
            self.recovery_times["create"] = time.perf_counter() - t0
        self._log = OpLog(self._pool.dev, self._pool.oplog_off, self._pool.oplog_size)
        # this process's entries carry an epoch of their own (a disk pool's recovery never
        # reads an entry left behind by an earlier crash as one of ours: OpLog.begin_epoch)
        self._log.begin_epoch()
        if self._pool.dev.in_ram:
            # Map the whole log now (milliseconds per 64 MB) rather than take a page fault
            # every few operations on the request path until the log has wrapped once.
            self._pool.dev.prefault(self._pool.oplog_off, self._pool.oplog_size)
        self._append = self._log.append  # bound once: invoke_rw is the hot path
        self._wait = self._wait_for_space
        # Operations logged with commit=False wait here, encoded, and go into the log as one
        # group entry at the next commit (see invoke_rw).  A group is cut before it would
        # pass _group_max bytes, so any group fits the log with room to spare.
        self._group: list[bytes] = []
        self._group_max = max(4096, min(1 << 20, self._log.capacity // 4))
        # The group's byte count lives in the grouper: the compiled one runs the common case
        # of invoke_rw_grouped (and is then that instance attribute, so a server's call of
        # it runs no Python frame); either way the rules are those of _invoke_rw_grouped.
        mk = getattr(FAST, "Grouper", None)
        if mk is None:
            self._grouper: Any = _GroupBytes(GROUP_OVERHEAD)
        else:
            apply = getattr(self.state, "apply", None)
            self._grouper = mk(self._group, GROUP_OVERHEAD, self._group_max,
                               apply if callable(apply) else None, self._invoke_rw_grouped)
            if not self.verify_mode:
                self.invoke_rw_grouped = self._grouper  # type: ignore[method-assign]
                self.log_rw_grouped = self._grouper.log  # type: ignore[method-assign]
        if self.verify_mode:
            self._grouper.on = False  # (verify mode logs no groups)
        self._counters.position = self._log.tail
        if pin_cores and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(0, {0})
            except OSError:
                pass

    # ------------------------------------------------------------------ recovery
    def _recover(self, lock_timeout: float, progress: bool | None) -> None:
        self._pool, self.state, times = open_and_recover(
            self.path, device=self._device, lock_timeout=lock_timeout, progress=progress)
        self._backlog = int(times["replayed_ops"])
        self.recovery_times = times

    # ------------------------------------------------------------------ the shadow
    def _ensure_shadow(self) -> None:
        self._supervisor.ensure()

    def _stop_shadow(self) -> None:
        self._supervisor.stop()

    @property
    def survives(self) -> str:
        """What this pool survives: "process crashes" (tmpfs, lost at a reboot) or "power
        loss" (real PM, or a file system the device syncs: persimmon.filedevice)."""
        return self._pool.dev.survives

    def device_info(self) -> DeviceInfo:
        """What the pool is stored on: the device's kind, how persists reach it, what it
        survives, and its sizes (a snapshot: the pool file grows as the state does)."""
        dev = self._pool.dev
        return DeviceInfo(kind=dev.kind, path=self.path, is_pmem=bool(dev.is_pmem),
                          flush_path=dev.flush_path, survives=dev.survives,
                          pool_bytes=int(dev.size), log_bytes=self._pool.oplog_size)

    @property
    def log_position(self) -> int:
        """The operation log's position after the last entry this process committed to it
        (the end of the last durable operation, or group of operations)."""
        return self._log.committed_head

    @property
    def diverged_position(self) -> int | None:
        """In verify mode, once the shadow found a diverging operation: the log position
        just before that operation's entry; None until then."""
        c = self._counters
        return c.diverged_pos if c.diverged else None

    @property
    def shadow_pid(self) -> int | None:
        """Process id of the current shadow process."""
        return self._supervisor.pid

    @property
    def shadow_failure(self) -> str | None:
        """None, or why the shadow is not restarted any more: it failed at the same log
        position several times in a row (an operation its replay cannot apply: a bug in
        the state machine's code or in Persimmon).  Every operation stays durable in the
        log; :meth:`sync` raises :class:`ShadowError`, and so does a write that waits for
        log space; the next open replays the log."""
        return self._supervisor.failure

    # ------------------------------------------------------------------ operations
    def invoke_rw(self, op: Any, *, commit: bool = True) -> Any:
        """Run a read-write operation; it is durable when this returns (if ``commit``).

        With ``commit=False`` the operation is logged but not yet persisted: call
        :meth:`commit` before acknowledging it (group commit).  An operation whose
        ``apply`` raises is still logged and made durable, then the exception propagates.
        """
        if self._closed:
            raise PersimmonError("this PSM is closed")
        if not commit and not self.verify_mode:
            return self.invoke_rw_grouped(op)
        payload = encode(op)
        if self.verify_mode:
            if len(payload) + 64 > self._log.capacity:
                self._log.append(payload)  # raises LogFullError with the sizes
            try:
                result = apply_op(self.state, op)
                exc = None
            except Exception as e:
                result, exc = e, e
            payload = encode_verified(op, S.result_digest(result), digest(self.state))
            self._log.append(payload, wait=self._wait_for_space)
            self._ops_logged += 1
            if commit:
                self._commit_log()
            if exc is not None:
                raise exc
            return result
        if self._group:
            self._flush_group()
        self._append(payload, wait=self._wait)
        self._ops_logged += 1
        try:
            result = apply_op(self.state, op)
        except Exception:
            self._commit_log()
            raise
        self._log.commit()
        if self._counters.sleeping:  # (inline: the hot path)
            self._bell.ring()
        return result

    def invoke_rw_grouped(self, op: Any) -> Any:
        """``invoke_rw(op, commit=False)`` in one positional call, for request loops that
        commit once per batch: the operation is logged and applied now, and durable when
        the next :meth:`commit` returns (which writes all of them as one log entry).

        With the compiled module built, a PSM's ``invoke_rw_grouped`` is a compiled object
        that does the same (it binds ``state.apply`` once, when the PSM opens)."""
        return self._invoke_rw_grouped(op)

    def _invoke_rw_grouped(self, op: Any) -> Any:
        # Every rule of invoke_rw_grouped (the compiled grouper hands all but its common case
        # here).  Encoded first, so an operation that cannot be logged raises before it
        # touches the state; applied now; nothing is acknowledged before commit() made the
        # group durable.
        if self._closed or self.verify_mode:
            return self.invoke_rw(op, commit=False)  # (raises if closed; verify: no groups)
        payload = encode(op)
        n = len(payload) + 4  # its bytes in a group: the payload and its length
        g = self._grouper
        size = g.bytes + n
        if size > self._group_max:
            self._flush_group()
            size = GROUP_OVERHEAD + n
            if size > self._group_max:  # too big to share an entry: one of its own
                self._append(payload, wait=self._wait)
                self._ops_logged += 1
                return apply_op(self.state, op)
        self._group.append(payload)
        g.bytes = size
        return apply_op(self.state, op)

    def log_rw_grouped(self, op: Any) -> bool:
        """Log ``op`` as :meth:`invoke_rw_grouped` does, without applying it: for a request
        loop with a faster way to make one kind of operation's change to the state itself.

        True: ``op`` is in the group, durable when the next :meth:`commit` returns, and the
        caller must now change the state exactly as ``state.apply(op)`` would (the shadow
        replays ``op`` with ``apply``).  False: nothing was logged or changed (the PSM is
        closed or verifying, ``op`` is not the common case, or the group is full); call
        :meth:`invoke_rw_grouped` instead.  With the compiled module built, this is the
        compiled grouper's ``log``."""
        if self._closed or self.verify_mode or type(op) is not tuple or len(op) == 4 \
                or not callable(getattr(self.state, "apply", None)):
            return False
        if pack(op) is None:  # (the operations of the T form only, as the compiled grouper)
            return False
        payload = encode(op)  # (as _invoke_rw_grouped encodes it)
        size = self._grouper.bytes + len(payload) + 4
        if size > self._group_max:
            return False
        self._group.append(payload)
        self._grouper.bytes = size
        return True

    def commit(self) -> None:
        """Group commit: every operation logged so far is durable when this returns."""
        if self._closed:
            raise PersimmonError("this PSM is closed")
        if self._group:
            self._flush_group()
        self._commit_log()

    def _commit_log(self) -> None:
        """Make the appended entries durable and visible, and wake a sleeping shadow when
        that made something new visible (a server commits after every batch of requests,
        most of them reads: a shadow woken for nothing costs two context switches)."""
        lg = self._log
        if lg.pending:
            lg.commit()
            if self._counters.sleeping:
                self._bell.ring()

    # ---------------------------------------------------- overlapped commits (disk)
    @property
    def overlaps_commits(self) -> bool:
        """True on a disk pool, where a commit is a synced write a server can overlap with
        more requests (:meth:`commit_begin`); elsewhere a commit costs a fence: call
        :meth:`commit`."""
        return self._log.writes_through

    def commit_begin(self) -> Any:
        """Start a group commit of every operation logged so far (disk pools): returns a
        ticket for :meth:`commit_write` (run it in any thread: it does only the I/O) and
        then :meth:`commit_end` (this thread), or None when nothing was logged since the last
        commit began.  The
        operations are durable when ``commit_end`` returns; nothing that depends on them
        may be acknowledged before.  :meth:`commit` and :meth:`sync` finish those in flight
        first."""
        if self._closed:
            raise PersimmonError("this PSM is closed")
        if self._group:
            self._flush_group()
        return self._log.commit_begin()

    def commit_write(self, ticket: Any) -> None:
        """The I/O of a commit started by :meth:`commit_begin` (any thread; nothing to do
        for a commit the background writer writes: :meth:`background_commits`)."""
        self._log.commit_write(ticket)

    def background_commits(self, in_flight: int = 1) -> int | None:
        """Let up to ``in_flight`` commits from :meth:`commit_begin` be written at once
        (a disk serves several synced writes together), and have them written by threads
        that never take the GIL (disk pools, ``persimmon._commitio`` built).  Returns a
        descriptor an event loop can watch: readable when a commit is written; then call
        :meth:`clear_commit_signal` and :meth:`commit_end` the commits
        :meth:`commit_written` says are written.  None: no such threads (call
        :meth:`commit_write` from threads of your own, up to ``in_flight`` at once).
        Commits end in the order they began."""
        return self._log.background_commits(in_flight)

    def clear_commit_signal(self) -> None:
        """Empty the descriptor :meth:`background_commits` returned (when it was readable,
        before asking :meth:`commit_written`)."""
        self._log.clear_signal()

    def commit_written(self, ticket: Any) -> bool:
        """True once the writes of a commit from :meth:`commit_begin` are over."""
        return self._log.commit_written(ticket)

    def commit_end(self, ticket: Any) -> None:
        """Finish a commit started by :meth:`commit_begin`, and every one begun before it
        (waits for their writes; raises their error), and wake a sleeping shadow."""
        self._log.commit_end(ticket)
        if self._counters.sleeping:
            self._bell.ring()

    def _flush_group(self) -> None:
        # Write the waiting operations into the log as one entry (flushed, not committed).
        # Never an empty group: an operation too big for a group that comes when none is
        # waiting flushes "the group" first, and an empty group entry stopped the shadow.
        g = self._group
        if not g:
            return
        if len(g) == 1:
            self._append(g[0], wait=self._wait)
        else:  # (the grouper's byte count is the group entry's length)
            self._log.append_group(g, self._grouper.bytes, wait=self._wait)
        self._ops_logged += len(g)  # (counted here, not per operation: see stats())
        g.clear()
        self._grouper.bytes = GROUP_OVERHEAD

    def invoke_ro(self, op: Any) -> Any:
        """Run a read-only operation on the DRAM copy (never logged).

        ``op`` is passed to ``state.apply`` like a read-write operation, or, if it is
        callable, called with the state.
        """
        if callable(op):
            return op(self.state)
        return apply_op(self.state, op)

    def _wait_for_space(self) -> None:
        # The log is full: make what we appended visible to the shadow, wake it (asleep, or
        # letting operations gather) and let it catch up.
        sup = self._supervisor
        sup.boost()  # (first: it lets a starved shadow run while the commit below persists)
        lg = self._log
        if lg.pending:
            lg.commit()
        self._bell.ring()
        if sup.dead():
            sup.ensure()
            sup.check()  # (it failed for good: the log will not drain)
        time.sleep(0.0002)

    # ------------------------------------------------------------------ inspection
    def logged_ops(self) -> int:
        """How many operations this PSM has logged since it opened, made durable or not
        yet (a request loop compares two readings with the writes it logged itself, to
        learn whether other code logged any in between)."""
        return self._ops_logged + len(self._group)

    def stats(self) -> dict[str, Any]:
        """Counters of the runtime (see README for the meaning of each)."""
        c = self._counters
        lg = self._log
        head, tail = lg.head, lg.tail
        batches = c.batches
        committed = c.committed_ops
        logged = self.logged_ops()
        logged_total = self._backlog + logged
        return {
            "survives": self._pool.dev.survives,
            # who writes the commits commit_begin starts: a compiled thread without the GIL
            # (background_commits), or the caller (commit_write, in a thread of its own)
            "background_commits": "compiled-thread" if lg.background else "no",
            "commits_in_flight": lg.in_flight,  # (at most: background_commits)
            "ops_logged": logged,
            "ops_committed": committed,
            "ops_applied_by_shadow": c.applied_ops,
            "shadow_lag_ops": max(0, logged_total - committed),
            "shadow_lag_bytes": head - c.position,
            "log_head": head,
            "log_tail": tail,
            "log_used_bytes": head - tail,
            "log_capacity": lg.capacity,
            "log_usage": (head - tail) / lg.capacity if lg.capacity else 0.0,
            "full_waits": getattr(lg, "full_waits", 0),
            "full_wait_seconds": getattr(lg, "full_wait_seconds", 0.0),
            "batches": batches,
            "mean_batch_size": committed / batches if batches else 0.0,
            "max_batch_size": c.max_batch_seen,
            "undo_entries": c.undo_entries,
            "undo_entries_per_batch": c.undo_entries / batches if batches else 0.0,
            "shadow_apply_seconds": c.apply_ns / 1e9,
            "shadow_errors": c.errors,
            "shadow_message": counters.read_message(self._message),
            "shadow_restarts": self._supervisor.restarts,
            "shadow_pid": self.shadow_pid,
            "shadow_sleeping": bool(c.sleeping),
            "shadow_ready": bool(c.ready),  # (a start and _stop_shadow clear it)
            "recovered": self.recovered,
            "recovery_times": dict(self.recovery_times),
            "verify": self.verify_mode,
            "diverged": bool(c.diverged),
            # damaged free space found and re-carved when the shadow opened the pool
            "salvaged_bytes": c.salvaged,
        }

    def sync(self, timeout: float | None = None) -> None:
        """Wait until the shadow has applied and committed everything logged so far.

        Raises :class:`ShadowError` when the shadow fails at the same operation again and
        again (:attr:`shadow_failure`): the operations stay durable in the log."""
        if self._group:
            self._flush_group()
        self._log.commit()
        target = self._log.head
        c = self._counters
        if c.wanted < target:
            c.wanted = target  # the shadow commits as soon as it reaches it
        self._bell.ring()
        deadline = None if timeout is None else time.monotonic() + timeout
        waits = 0
        while c.position < target:
            waits += 1
            if waits % 20 == 0:  # (waiting for 10 ms: see Supervisor.boost)
                self._supervisor.boost()
            if c.diverged:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the shadow did not catch up with the log in time")
            self._supervisor.ensure()
            self._supervisor.check()
            if c.sleeping:  # (asleep before it saw the head or WANTED move: ring again)
                self._bell.ring()
            time.sleep(0.0005)

    def verify(self) -> None:
        """Compare the DRAM state with the PM state at the same log position.

        Waits for the shadow to catch up, then compares canonical digests of the two states.
        Raises :class:`DivergenceError` naming the first diverging operation when the shadow
        found one (verify mode), or the log position at which the states differ.
        """
        self.sync()
        c = self._counters
        if c.diverged:
            raise DivergenceError(counters.read_message(self._message))
        heap = Heap.open(self.path, lock=False, writable=False, rollback=False,
                         mode=self._device)
        try:
            pm = digest(heap.materialize())
            pos = heap.position
        finally:
            heap.close()
        if pm != digest(self.state):
            raise DivergenceError(
                f"the DRAM and PM states differ at log position {pos} (after "
                f"{self._backlog + self._ops_logged} operations); the state machine is not "
                "deterministic or stores something the PM copy cannot reproduce; run with "
                "verify=True to name the first diverging operation"
            )

    # ------------------------------------------------------------------ shutdown
    def close(self, *, drain: bool = True) -> None:
        """Make the PM copy catch up with the log head, stop the shadow, close the pool.

        With ``drain=False`` the shadow is stopped without catching up (the log keeps the
        operations; the next open replays them).  So does a close after the shadow failed
        for good (:attr:`shadow_failure`): it returns without raising.
        """
        if self._closed:
            return
        try:
            if self._group:
                self._flush_group()
            self._log.commit()
            if drain:
                self.sync()
        except ShadowError:  # (the supervisor logged why)
            log.error("closing the pool without the PM copy catching up: the next open "
                      "replays the log; %d operations not committed yet (so never "
                      "acknowledged) did not fit in it and are dropped", len(self._group))
            self._group.clear()
            self._log.commit()
        sup = self._supervisor
        with sup.lock:
            self._closed = sup.closed = True
            self._grouper.on = False  # (the compiled grouper: every call to the Python rules)
        sup.shutdown()
        self._log.close_writer()
        self._pool.close()
        _live.discard(self)

    def __enter__(self) -> PSM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PSM", "DeviceInfo", "recover_state", "replay"]

_live: weakref.WeakSet[PSM] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # pragma: no cover - interpreter shutdown
    for psm in list(_live):
        try:
            psm.close(drain=False)
        except Exception:
            pass
