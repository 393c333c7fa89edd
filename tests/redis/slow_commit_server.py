"""persimmon-redis whose foreground waits ``PERSIMMON_TEST_COMMIT_DELAY`` seconds (default
0.003) before each synced write of the operation log on a disk pool (with the compiled
overlapped writers: each commit's writes start that much later): the window in which a
write is applied to the DRAM state but its log entry is not yet written is wide, so a SIGKILL
often lands in it.  For test_disk_pool.py.  ``PERSIMMON_TEST_UNSAFE_REPLIES=1`` sends the
replies before the commit (the bug the test must catch; for checking the test only).
Arguments: persimmon-redis's own."""

from __future__ import annotations

import os
import sys
import threading
import time

from persimmon import filedevice
from persimmon_redis.__main__ import main

FOREGROUND = os.getpid()
DELAY = float(os.environ.get("PERSIMMON_TEST_COMMIT_DELAY", "0.003"))
_write_sync = filedevice.FileDevice.write_sync


def write_sync(self, off, data):
    if os.getpid() == FOREGROUND:
        time.sleep(DELAY)
    return _write_sync(self, off, data)


filedevice.FileDevice.write_sync = write_sync

# --commit-overlap with the compiled writers (persimmon._commitio writes in threads of their
# own, not through write_sync): each commit's writes start DELAY after it began (a slow
# disk), while the loop goes on executing requests and beginning more commits
_background_writer = filedevice.FileDevice.background_writer


class _SlowWriter:
    def __init__(self, real):
        self.real = real
        self.timer = None

    def submit(self, *args):
        self.timer = threading.Timer(DELAY, self.real.submit, args)
        self.timer.start()

    def done(self):
        return self.timer is not None and not self.timer.is_alive() and self.real.done()

    def finish(self):
        self.timer.join()
        self.timer = None
        return self.real.finish()

    def fileno(self):
        return self.real.fileno()

    def close(self):
        if self.timer is not None:
            self.timer.join()
        return self.real.close()


def background_writer(self, efd=-1):
    real = _background_writer(self, efd)
    return None if real is None else _SlowWriter(real)


filedevice.FileDevice.background_writer = background_writer

if os.environ.get("PERSIMMON_TEST_UNSAFE_REPLIES") == "1":
    from persimmon_redis import server

    _flush = server.Server.flush

    def flush(self):
        self._send(self.pending)  # (wrong on purpose: replies before their writes are durable)
        return _flush(self)

    server.Server.flush = flush

sys.exit(main(sys.argv[1:]))
