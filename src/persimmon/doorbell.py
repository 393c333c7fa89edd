"""The doorbell: how the foreground wakes a shadow that sleeps while the log is idle.

A pipe.  The foreground keeps the write end and rings (one byte, never blocking) after a
commit when the shadow has said it is asleep (the shadow's ``SLEEPING`` counter); the
shadow waits on the read end, with a timeout.  The read end also tells the shadow at once
that the foreground is gone: it reads end-of-file when no process holds the write end.

Without it an idle shadow had to poll the log: about 500 wake-ups a second, 4 % of a core
on this project's machine for a server that did nothing.
"""

from __future__ import annotations

import os
import select


class Doorbell:
    """One pipe between a PSM and the shadow processes it starts (made before they fork)."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self._poller: select.poll | None = None  # made in the shadow, at its first wait

    def ring(self) -> None:
        """Wake the shadow (foreground side); a full pipe already holds a wake-up."""
        try:
            os.write(self.wfd, b"\0")
        except OSError:  # full (a wake-up is pending anyway), or closed
            pass

    def shadow_side(self) -> None:
        """In the shadow after the fork: drop its copy of the write end, so that the end of
        file it reads means the foreground is gone."""
        if self.wfd >= 0:
            os.close(self.wfd)
            self.wfd = -1

    def wait(self, timeout: float) -> bool:
        """Sleep until rung or ``timeout`` seconds passed (shadow side); False when the
        write end is closed everywhere (the foreground died or closed the PSM)."""
        poller = self._poller
        if poller is None:  # (poll, not select: a descriptor may be past select's 1,024)
            poller = self._poller = select.poll()
            poller.register(self.rfd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            return True
        try:
            return bool(os.read(self.rfd, 4096))
        except BlockingIOError:
            return True

    def close(self) -> None:
        """Close both ends (foreground side, once no shadow runs)."""
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                os.close(fd)
        self.rfd = self.wfd = -1
