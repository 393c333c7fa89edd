"""Shadow supervision: start the shadow process, restart it when it dies, stop it.

:class:`Supervisor` owns what the foreground shares with its shadow (the counters and the
message buffer of :mod:`persimmon.counters`, the doorbell) and the process itself.  A
watchdog thread sleeps in ``poll`` on the shadow's sentinel (readable when the process
ends) and on a pipe the supervisor writes to when it starts a new shadow or shuts down, and
restarts a shadow that died.  It has no periodic wake-up: a thread that woke five times a
second to look took the GIL from a busy server each time, and cost it 1.6 % of its
throughput (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import socket
import threading
from typing import Any

from . import counters
from . import shadow as S
from .doorbell import Doorbell
from .errors import ShadowError

log = logging.getLogger("persimmon")

# A shadow that fails this many times in a row at the same log position (not killed by a
# signal: by an exception, an abort, a fault) fails at the same operation each time it
# replays it: it is not restarted again (see Supervisor.failure).
GIVE_UP_AFTER = 3


class Supervisor:
    """The shadow process of the pool at ``path`` and the watchdog that keeps one running."""

    def __init__(self, path: str, *, verify: bool, max_batch: int, pin_cores: bool,
                 idle: bool) -> None:
        self.path = path
        self.verify = verify
        self.max_batch = max_batch
        self.pin_cores = pin_cores
        self.idle = idle
        self.ctx = multiprocessing.get_context("fork")
        self.counters, self.message = counters.shared(self.ctx)
        self.bell = Doorbell()  # wakes a shadow asleep on an idle log (made before the fork)
        # Held while a shadow is restarted or stopped, so the watchdog never takes a shadow
        # stopped on purpose for a dead one; ``closed`` (set under it) ends restarts.
        self.lock = threading.Lock()
        self.closed = False
        self.process: Any = None
        self.restarts = 0
        # Set when the shadow failed GIVE_UP_AFTER times in a row at one log position: why.
        # The PM copy cannot catch up any more; the log keeps every operation (the next
        # open replays them, with a fixed program); the PSM raises ShadowError where it
        # would wait for the shadow.
        self.failure: str | None = None
        self._failed_at = -1  # the log position of the last failure, and their count there
        self._failures_there = 0
        self.watch_wakes = 0  # (the watchdog's wake-ups, for the tests)
        self.watchdog: threading.Thread | None = None
        self._stop_watch = threading.Event()
        self._watch_r = self._watch_w = -1

    @property
    def pid(self) -> int | None:
        """Process id of the current shadow."""
        p = self.process
        return p.pid if p is not None else None

    def start(self, handoff: socket.socket | None = None) -> None:
        """Fork a shadow.  With ``handoff`` it waits for the locked pool file to come over
        that socket (:meth:`hand_over`) before it opens the pool."""
        c = self.counters
        c.stop = 0
        c.ready = 0
        c.sleeping = 0  # (a shadow killed in its sleep left it set)
        self.message.value = b""
        cpu = 1 if self.pin_cores and (os.cpu_count() or 1) > 1 else None
        p = self.ctx.Process(
            target=S.shadow_main,
            args=(self.path, os.getpid(), c, self.message, self.verify, self.max_batch,
                  cpu, self.idle, handoff, self.bell),
            name="persimmon-shadow",
            daemon=True,
        )
        p.start()
        self.process = p
        self._wake_watchdog()

    @staticmethod
    def hand_over(sock: socket.socket, fileno: int) -> None:
        """Pass the locked pool file to the waiting shadow (SCM_RIGHTS: the same open file,
        so the shadow holds the pool's lock as long as it lives, as a forked one does)."""
        socket.send_fds(sock, [b"go"], [fileno])

    def start_watchdog(self) -> None:
        """Start the thread that restarts a shadow that died."""
        self._watch_r, self._watch_w = os.pipe()
        os.set_blocking(self._watch_r, False)
        os.set_blocking(self._watch_w, False)
        self.watchdog = threading.Thread(target=self._watch, name="persimmon-watchdog",
                                         daemon=True)
        self.watchdog.start()

    def _wake_watchdog(self) -> None:
        w = self._watch_w  # (the first shadow starts before the watchdog)
        if w >= 0:
            try:
                os.write(w, b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    def _watch(self) -> None:
        # Sleeps until the shadow exits (its sentinel becomes readable) or the supervisor
        # wakes it, and restarts a shadow that died.
        poller = select.poll()
        poller.register(self._watch_r, select.POLLIN)
        while not self._stop_watch.is_set():
            p = self.process  # (held: its sentinel stays open while it is polled)
            fd = p.sentinel if p is not None else -1
            if fd >= 0:
                poller.register(fd, select.POLLIN)
            poller.poll()
            self.watch_wakes += 1
            if fd >= 0:
                poller.unregister(fd)
            try:
                os.read(self._watch_r, 4096)
            except BlockingIOError:
                pass
            self.ensure()

    def ensure(self) -> None:
        """Start a new shadow if the current one died (and the PSM is not closed), unless
        it keeps failing at the same operation (then set :attr:`failure`)."""
        with self.lock:
            p = self.process
            if self.closed or p is None or p.is_alive() or self.failure is not None:
                return
            msg = counters.read_message(self.message)
            code = p.exitcode
            if code != -signal.SIGKILL:  # (a kill is no verdict on the operations)
                position = self.counters.position
                if position == self._failed_at:
                    self._failures_there += 1
                else:
                    self._failed_at, self._failures_there = position, 1
                if self._failures_there >= GIVE_UP_AFTER:
                    self.failure = (
                        f"the shadow process failed {self._failures_there} times in a row "
                        f"at log position {position} (exit code {code}); not restarted: "
                        "the PM copy stays at that position and the log keeps every "
                        "operation after it (the next open replays them)"
                        + (f"; its last report: {msg}" if msg else ""))
                    log.error("%s", self.failure)
                    return
            log.warning("shadow process %s exited (code %s)%s; starting a new one",
                        p.pid, code, f": {msg}" if msg else "")
            self.start()
            # counted once the new shadow is in place: whoever sees the count sees its pid
            self.restarts += 1

    def check(self) -> None:
        """Raise :class:`ShadowError` if the shadow failed for good (:attr:`failure`)."""
        if self.failure is not None:
            raise ShadowError(self.failure)

    def dead(self) -> bool:
        """True when a shadow was started and has exited."""
        p = self.process
        return p is not None and not p.is_alive()

    def boost(self) -> None:
        """The foreground waits for the shadow (log full, or sync()): the shadow must not
        run on idle CPU time only then, or a machine kept busy by other processes would
        stall the foreground for as long as it stays busy (a SCHED_IDLE shadow gets no CPU
        at all then).  Normal policy until it is back under an eighth of a log, where it
        sees that and returns to SCHED_IDLE (shadow.Priority)."""
        p = self.process
        if self.idle and p is not None and p.pid is not None:
            try:
                os.sched_setscheduler(p.pid, os.SCHED_OTHER, os.sched_param(0))
            except (AttributeError, OSError):  # (gone: ensure() restarts it)
                pass

    def stop(self) -> None:
        """Ask the shadow to exit and wait for it (killed after 5 s)."""
        with self.lock:  # (the watchdog, woken by its exit, must not take it for a death)
            p = self.process
            if p is None:
                return
            self.counters.stop = 1
            self.bell.ring()
            p.join(5.0)
            if p.is_alive():
                p.kill()
                p.join(1.0)
            self.process = None
            self.counters.ready = 0

    def shutdown(self) -> None:
        """Stop the watchdog and the shadow, and close the doorbell (set ``closed`` first)."""
        self._stop_watch.set()
        self._wake_watchdog()
        wd = self.watchdog
        if wd is not None and wd.is_alive() and wd is not threading.current_thread():
            wd.join(5.0)
        if wd is not None and not wd.is_alive():  # (else it may still poll them: left open)
            os.close(self._watch_r)
            os.close(self._watch_w)
            self._watch_r = self._watch_w = -1
        self.stop()
        self.bell.close()
