"""persimmon-redis whose foreground waits ``PERSIMMON_TEST_COMMIT_DELAY`` seconds (default
0.003) before each synced write of the operation log on a disk pool (with the compiled
overlapped writer: notices each written commit that much later): the window in which a
write is applied to the DRAM state but its log entry is not yet written is wide, so a SIGKILL
often lands in it.  For test_disk_pool.py.  ``PERSIMMON_TEST_UNSAFE_REPLIES=1`` sends the
replies before the commit (the bug the test must catch; for checking the test only).
Arguments: persimmon-redis's own."""

from __future__ import annotations

import os
import sys
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

# --commit-overlap yes with the compiled writer (persimmon._commitio writes in a thread of
# its own, not through write_sync): the loop notices a written commit DELAY later, so the
# commit stays "in flight" as long, while the loop goes on executing requests
from persimmon_redis import server as _server  # noqa: E402

_ready = _server.Server._commit_ready


def _commit_ready_late(self):
    fd = self.p.commit_fd
    self.loop.remove_reader(fd)

    def later():
        self.loop.add_reader(fd, self._commit_ready)
        _ready(self)

    self.loop.call_later(DELAY, later)


_server.Server._commit_ready = _commit_ready_late

if os.environ.get("PERSIMMON_TEST_UNSAFE_REPLIES") == "1":
    from persimmon_redis import server

    _flush = server.Server.flush

    def flush(self):
        self._send(self.pending)  # (wrong on purpose: replies before their writes are durable)
        return _flush(self)

    server.Server.flush = flush

sys.exit(main(sys.argv[1:]))
