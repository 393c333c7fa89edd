"""The shadow process: re-executes the operation log on the PM copy, in batches.

It runs the application's own state-machine code against the heap's proxies
(``apply_op(heap.root, op)``), marks each operation boundary with ``heap.end_op()`` and
commits a batch (the commit record carries the log position reached) when the log is idle,
when the heap asks (its undo log is large), or after ``max_batch`` operations; then it
advances and persists the log tail, which frees log space for the foreground.

It talks to the foreground through shared counters with named fields
(:class:`persimmon.counters.Counters`) and a message buffer,
and exits when the foreground asks it to stop or when the foreground process has died.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from .calls import CALL, apply_op
from .counters import Counters, LocalMessage, say
from .digest import digest
from .doorbell import Doorbell
from .filedevice import defer_writeback
from .heap import FAST, Heap
from .opcodec import TAG_BYTES as _TAG_BYTES
from .opcodec import TAG_GROUP as _TAG_GROUP
from .opcodec import TAG_PICKLE as _TAG_PICKLE
from .opcodec import decode, split
from .oplog import OpLog

_loads = pickle.loads
_fast_run = getattr(FAST, "apply_run", None)  # the compiled loop of Applier.run, or None
_FastContext = getattr(FAST, "ApplyContext", None)  # its context (native.APPLY_CONTEXT)
_PYTHON, _COMMIT = 2, 1  # what it stopped for (besides 0: the limit, or the head it saw)



def _where(pos: int, i: int, k: int) -> str:
    """Where an operation is in the log: its entry's position, and its place (the ``i``-th
    of ``k``) in a group."""
    if k == 1:
        return f"log position {pos}"
    return f"log position {pos} (operation {i + 1} of the {k} in a group entry)"


def shadow_main(
    path: str,
    parent_pid: int,
    counters: Counters,
    message: Any,
    verify: bool,
    max_batch: int,
    cpu: int | None,
    idle: bool = False,
    handoff: socket.socket | None = None,
    bell: Doorbell | None = None,
) -> None:
    """Entry point of the shadow process (never returns normally: it exits).

    With ``handoff`` the process was forked before the pool was open: it first waits for
    the foreground to send the locked pool file over that socket, and exits quietly if the
    foreground gives up (closes the socket), asks it to stop, or dies.  ``bell``: the
    foreground's doorbell, slept on while the log is idle.
    """
    try:
        if bell is not None:
            bell.shadow_side()
        if handoff is not None and not _await_pool(handoff, parent_pid, counters):
            os._exit(0)
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                pass
        _run(path, parent_pid, counters, message, verify, max_batch, idle, bell)
    except BaseException:  # the foreground reads the message and restarts us
        report = "shadow process failed:\n" + traceback.format_exc()
        say(message, report)
        try:  # (the message buffer holds the first 4 KiB; the log gets all of it)
            sys.stderr.write(f"persimmon shadow {os.getpid()}: {report}")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(3)
    os._exit(0)


_held_fds: list[int] = []  # the pool file handed over: kept open, it holds the pool's lock


def _await_pool(sock: socket.socket, parent_pid: int, c: Counters) -> bool:
    """Wait for the pool file the foreground hands over (SCM_RIGHTS); keep it open, which
    keeps the pool locked while this process lives, as an inherited descriptor would.
    False when the foreground closed the socket, asked us to stop, or died."""
    sock.settimeout(0.2)
    try:
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
            except TimeoutError:
                if os.getppid() != parent_pid or c.stop:
                    return False
                continue
            _held_fds.extend(fds)
            return msg == b"go" and len(fds) == 1
    finally:
        sock.close()


class Applier:
    """Applies log entries to the heap in batches (the body of the shadow process).

    Kept separate from the process loop so tests can drive it step by step on a simulated
    device.  ``counters``/``message`` are the shared counters and message buffer (private ones by
    default).
    """

    def __init__(self, heap: Heap, log: OpLog, *, verify: bool = False,
                 max_batch: int = 4096, counters: Counters | None = None,
                 message: Any = None) -> None:
        self.heap = heap
        self.log = log
        self.verify = verify
        self.max_batch = max_batch
        self.c = counters if counters is not None else Counters()
        self.message = message if message is not None else LocalMessage()
        self.pos = heap.position
        self.root = heap.root
        self._apply = self._bind_apply()
        self.in_batch = 0
        self._apply_ns = 0  # published to the shared counters by publish()
        self._applied = 0
        if log.tail < self.pos:
            log.set_tail(self.pos)
        self.c.position = self.pos

    def step(self) -> bool:
        """Apply the next log entry (one operation, or a group of them), if any; commit when
        the batch is full."""
        return self.run(1) >= 1

    def run(self, limit: int = 256) -> int:
        """Apply about ``limit`` logged operations, committing each batch that fills up;
        returns how many were applied (0: the log is empty).  A group entry is applied
        whole (a commit records a log position, so it never falls inside an entry), which
        can take the count past ``limit``."""
        log = self.log
        read = log.read
        # Below the head the log last saw, the compiled loop applies the entries it reads
        # (_speedups.apply_run: this loop's work for the common forms of entry); an entry
        # it leaves, and any entry in verify mode, is applied here (OpLog.read loads the
        # head again, and reads and reports what the compiled reader declines).
        fast_run = _fast_run if not self.verify else None
        heap = self.heap
        end_op = heap.end_op
        undo = heap.undo
        threshold = heap.commit_threshold
        max_batch = self.max_batch
        verify = self.verify
        c = self.c
        pos = self.pos
        in_batch = self.in_batch
        apply = self._apply
        raised, end_failed = self._raised, self._end_failed
        ctx = None if fast_run is None else _FastContext(
            dev=log.dev, data=log.data_start, cap=log.capacity, apply=apply,
            apply_op=apply_op, root=self.root, heap=heap, loads=_loads, max_batch=max_batch,
            threshold=threshold, undo=undo, raised=raised, end_failed=end_failed)
        n = 0
        clock = time.perf_counter_ns
        t0 = clock()
        while n < limit:
            why = _PYTHON
            if fast_run is not None and pos < log.head_seen:
                ctx.apply = apply  # (both change at a commit)
                ctx.root = self.root
                k, pos, in_batch, why = fast_run(ctx, pos, log.head_seen, limit - n, in_batch)
                n += k
            if why == _PYTHON:  # one entry, applied here
                if (ent := read(pos)) is None:
                    break
                payload, nxt = ent
                if payload is None:  # padding that ends at the head: free its space now
                    self.pos = pos = nxt
                    self.in_batch = in_batch
                    self.commit()
                    in_batch = 0
                    apply = self._apply
                    continue
                items = split(payload) if payload[0] == _TAG_GROUP else (payload,)
                k = len(items)
                for i, item in enumerate(items):
                    tag = item[0]  # decode() inline for the two common forms
                    if tag == _TAG_PICKLE:
                        op = _loads(item)
                        rdig = sdig = None
                    elif tag == _TAG_BYTES:
                        op = item[1:]
                        rdig = sdig = None
                    else:
                        op, rdig, sdig = decode(item)
                    try:
                        if apply is not None and not (type(op) is tuple and op and
                                                      op[0] == CALL):
                            result = apply(op)
                        else:
                            result = apply_op(self.root, op)
                    except Exception as e:  # an operation that raises is still an operation
                        result = e
                        raised(e, pos, i, k)
                    try:
                        end_op()
                    except Exception as e:
                        end_failed(e, pos, i, k)
                    if verify and not c.diverged:
                        _check(heap, self.root, op, pos, result, rdig, sdig, c, self.message)
                n += k
                pos = nxt
                in_batch += k
                why = _COMMIT if in_batch >= max_batch or undo.count >= threshold else 0
            if why == _COMMIT:  # (heap.should_commit)
                t1 = clock()
                self._apply_ns += t1 - t0
                self.pos = pos
                self.in_batch = in_batch
                self.commit()  # (commit time is not apply time)
                in_batch = 0
                apply = self._apply
                t0 = clock()
        self.pos = pos
        self.in_batch = in_batch
        self._apply_ns += clock() - t0
        self._applied += n
        return n

    def _raised(self, e: Exception, pos: int, i: int, k: int) -> None:
        """An operation raised (the ``i``-th of the ``k`` in the entry at ``pos``): counted,
        and reported outside verify mode (which compares it with the foreground's)."""
        self.c.errors += 1
        if not self.verify and not self.message.value:
            say(self.message, f"operation at {_where(pos, i, k)} raised in the shadow: {e!r}")

    def _end_failed(self, e: Exception, pos: int, i: int, k: int) -> None:
        # e.g. a native value stored during the operation cannot be persisted: a bug in the
        # port, reported (stats, verify) rather than crashing the shadow in a loop.
        self.c.errors += 1
        say(self.message,
            f"end of the operation at {_where(pos, i, k)} failed in the shadow: {e!r}")

    def publish(self) -> None:
        """Add the apply counters kept locally (cheaper per operation) to the shared ones."""
        c = self.c
        c.applied_ops += self._applied
        c.apply_ns += self._apply_ns
        self._applied = self._apply_ns = 0

    def _bind_apply(self) -> Any:
        # The root's apply method, bound once per batch instead of looked up per operation.
        try:
            return self.root.apply
        except AttributeError:
            return None

    def commit(self) -> None:
        """Commit the batch in progress and free its log space."""
        c = self.c
        n = self.in_batch
        self.heap.commit(self.pos)
        self.log.set_tail(self.pos)
        c.position = self.pos
        c.committed_ops += n
        self.publish()
        c.batches += 1
        c.undo_entries = self.heap.stats["undo_entries"]
        if n > c.max_batch_seen:
            c.max_batch_seen = n
        self.in_batch = 0
        self.root = self.heap.root
        self._apply = self._bind_apply()


class Priority:
    """The shadow's scheduling policy: ``SCHED_IDLE`` while it is less than half a log
    behind, the normal policy from there until it is back under an eighth (see
    ``PSM(shadow_idle=...)``).  ``update(lag, capacity)`` is called every few hundred
    operations; ``setter(idle)`` applies a change (``os.sched_setscheduler`` by default)."""

    def __init__(self, enabled: bool, setter: Any = None, getter: Any = None) -> None:
        self.enabled = enabled
        self.setter = setter or _set_idle_policy
        # is this process under SCHED_IDLE now? (the foreground boosts a shadow it waits
        # for: Supervisor.boost)
        self.getter = getter or _is_idle_policy
        self.idle = False
        if enabled:
            self.idle = self.setter(True)

    def update(self, lag: int, capacity: int) -> None:
        if not self.enabled:
            return
        if self.idle and lag > capacity // 2:
            self.setter(False)
            self.idle = False
        elif lag < capacity // 8 and (not self.idle or not self.getter()):
            self.idle = self.setter(True)


def _is_idle_policy() -> bool:
    try:
        return os.sched_getscheduler(0) == os.SCHED_IDLE
    except (AttributeError, OSError):
        return True  # (no policies here: nothing to restore)


def _set_idle_policy(idle: bool) -> bool:
    """Switch this process to SCHED_IDLE (or back to SCHED_OTHER); True if now idle."""
    try:
        policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return idle


# Once caught up with the log, the shadow lets operations gather for 20 ms before it looks
# again, and commits at the first look that finds nothing new (the log has been idle that
# long).  Each wake-up has a price beyond its own instructions: under a light steady load (a
# write every ~150 us) a poll every 200 us cost ~30 us of CPU per write, against ~5 us to
# apply one; under persimmon-redis's sustained 10%-writes load, gathering 20 ms instead of
# 1 ms cut the shadow's CPU per write by about a quarter (docs/benchmarks.md).  The wait is
# on the doorbell, so a sync() (which rings it) or a foreground out of log space is served
# at once; commits do not ring during it (the SLEEPING flag is down).
_GATHER_SECONDS = 0.02
# After two looks that found nothing (the batch is committed), the shadow sleeps on the
# doorbell instead (a commit rings it), waking at least this often to check on the
# foreground; the doorbell's end of file tells it at once that the foreground died.
_DOZE_SECONDS = 0.25


@contextlib.contextmanager
def _exit_if_orphaned(parent_pid: int, every: float = 0.05) -> Iterator[None]:
    """While the body runs, a thread ends this process as soon as the foreground is gone.

    Opening a big pool (rollback and the walk that rebuilds the free lists) takes about a
    second per million objects, and this process holds the pool's lock all along: a
    foreground killed meanwhile could not be restarted (its successor would find the pool in
    use) until the open ended.  Ending the process half-way through an open is a crash like
    any other, which the next open recovers from.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every):
            if os.getppid() != parent_pid:
                os._exit(0)

    t = threading.Thread(target=watch, name="persimmon-shadow-orphan-watch", daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()


def _run(path: str, parent_pid: int, c: Counters, message: Any, verify: bool, max_batch: int,
         idle_policy: bool = False, bell: Doorbell | None = None) -> None:
    prio = Priority(idle_policy)
    defer_writeback()  # a disk pool: the PM copy's write-backs are paced (filedevice)
    with _exit_if_orphaned(parent_pid):
        heap = Heap.open(path, lock=False)
    c.salvaged += heap.stats["salvaged_bytes"]
    try:
        _loop(heap, parent_pid, c, message, verify, max_batch, prio, bell)
    finally:
        heap.dev.settle()


def _loop(heap: Heap, parent_pid: int, c: Counters, message: Any, verify: bool, max_batch: int,
          prio: Priority, bell: Doorbell | None) -> None:
    pool = heap.pool
    log = OpLog(heap.dev, pool.oplog_off, pool.oplog_size)
    ap = Applier(heap, log, verify=verify, max_batch=max_batch, counters=c, message=message)
    c.ready = 1
    idle = 0
    run = ap.run
    cap = log.capacity
    sleep = time.sleep
    while True:
        n = run(256)
        if n:
            idle = 0
            if os.getppid() != parent_pid:
                return
            prio.update(log.head - ap.pos, cap)
            if ap.pos - log.tail > cap // 4:
                # a quarter of the log is applied but not yet free (a disk pool's tail
                # waits for the paced write-back): write back at the next commit point
                heap.dev.hurry_writeback()
            ap.publish()
            if n >= 256:  # behind the head: keep going
                continue
        else:
            if not idle:
                prio.update(0, cap)
            idle += 1
            if ap.in_batch:  # nothing came since the last look: the log is idle
                ap.commit()
            if c.stop or os.getppid() != parent_pid:
                return
            c.heartbeat += 1
        # At the head.  A sync() waiting for a position this batch has reached gets its
        # commit now, and the shadow looks again soon while one is pending.
        wanted = c.wanted
        if wanted > c.position:
            if ap.in_batch and ap.pos >= wanted:
                ap.commit()
            sleep(0.0002)
        elif idle >= 2 and bell is not None:
            # Asleep until a commit rings.  The flag goes up before the last look at the
            # head, so a commit after that look sees it and rings; one that raced it is
            # found at the next timeout at the latest.
            heap.dev.settle()  # (a disk pool: the write-back the pacing held back)
            c.sleeping = 1
            if log.head <= ap.pos and c.wanted <= c.position and not c.stop:
                if not bell.wait(_DOZE_SECONDS):
                    c.sleeping = 0
                    return  # the write end is closed everywhere: the foreground is gone
            c.sleeping = 0
        elif bell is not None:
            if not bell.wait(_GATHER_SECONDS):
                return  # the foreground is gone
        else:
            sleep(_GATHER_SECONDS)


def _check(heap: Heap, root: Any, op: Any, pos: int, result: Any, rdig: int | None,
           sdig: int | None, c: Counters, message: Any) -> None:
    mine = result_digest(result)
    if rdig is not None and mine != rdig:
        _diverged(c, pos, message,
                  f"divergence: the operation at log position {pos} ({_short(op)}) returned a "
                  f"different result on the PM copy ({_short(result)})")
        return
    if sdig is not None and digest(heap.materialize()) != sdig:
        _diverged(c, pos, message,
                  f"divergence: after the operation at log position {pos} ({_short(op)}) the "
                  "PM state differs from the DRAM state (nondeterminism, or a value the port "
                  "stores differently)")


def _diverged(c: Counters, pos: int, message: Any, msg: str) -> None:
    # The message and position first: the foreground reads them as soon as it sees the flag
    # (and a shadow under SCHED_IDLE can be paused between any two stores).
    say(message, msg)
    c.diverged_pos = pos
    c.diverged = 1


def result_digest(result: Any) -> int:
    if isinstance(result, BaseException):
        return digest(("exception", type(result).__qualname__, repr(result.args)))
    return digest(result)


def _short(x: Any) -> str:
    r = repr(x)
    return r if len(r) <= 200 else r[:197] + "..."
