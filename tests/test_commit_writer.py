"""A disk pool's group commits written by a thread that never takes the GIL
(``persimmon._commitio.Writer``, the server's ``--commit-overlap yes``; docs/device.md).

The writer must do exactly what ``OpLog._write_through`` does (the ranges through the
``O_DSYNC`` descriptor, each whole, then the head), report a failed write at ``finish``
(so nothing that depends on it is acknowledged), and say through its descriptor that the
commit in flight is written.  The SIGKILL test of the server with the overlap on is in
tests/redis/test_disk_pool.py.
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import tempfile
import uuid

import pytest

from persimmon.native import commit_writer_type, pure_python_requested
from persimmon.psm import PSM
from psm_apps import KV, expected_state, workload_op
from test_disk_crash import disk_dir


def _writer_type():
    w = commit_writer_type()
    if w is None:
        # built by every install with a C compiler (CI's): only pure Python may lack it
        assert pure_python_requested(), "persimmon._commitio was not built"
    return w


@pytest.fixture
def writer_type():
    w = _writer_type()
    if w is None:
        pytest.skip("PERSIMMON_PURE_PYTHON: the compiled writer is not loaded")
    return w


@pytest.fixture
def disk_file():
    d = tempfile.mkdtemp(prefix="persimmon-writer-test-", dir=disk_dir())
    path = os.path.join(d, "file")
    with open(path, "wb") as f:
        f.truncate(1 << 16)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _open(path: str) -> tuple[int, int]:
    return os.open(path, os.O_RDWR | os.O_DSYNC), os.open(path, os.O_RDWR)


def test_the_writer_writes_the_ranges_then_the_head_and_says_so(writer_type, disk_file):
    sync_fd, fd = _open(disk_file)
    w = writer_type(sync_fd, fd)
    try:
        assert not _readable(w.fileno(), 0)
        big = os.urandom(70_000 - 4096)  # (more than a page, up to the file's end)
        w.submit([(100, b"a" * 300), (4096, big)], 8, (123456789).to_bytes(8, "little"))
        assert _readable(w.fileno(), 10), "the descriptor never said the commit was written"
        assert w.done()
        w.finish()
        assert not _readable(w.fileno(), 0)  # (drained: the next commit's signal is its own)
        with open(disk_file, "rb") as f:
            data = f.read()
        assert data[100:400] == b"a" * 300
        assert data[4096:4096 + len(big)] == big
        assert int.from_bytes(data[8:16], "little") == 123456789
        assert data[16:100] == bytes(84) and data[400:4096] == bytes(3696)
        # and again: one commit at a time, each signalled once
        w.submit((), 8, (7).to_bytes(8, "little"))
        w.finish()  # (waits for it)
        with open(disk_file, "rb") as f:
            assert int.from_bytes(f.read(16)[8:], "little") == 7
    finally:
        w.close()
        os.close(sync_fd)
        os.close(fd)


def test_a_failed_write_is_raised_at_finish_and_the_writer_goes_on(writer_type, disk_file):
    ro = os.open(disk_file, os.O_RDONLY)
    w = writer_type(ro, ro)
    try:
        w.submit([(0, b"x")], 8, bytes(8))
        with pytest.raises(OSError) as e:
            w.finish()
        assert e.value.errno == errno.EBADF
    finally:
        w.close()
        os.close(ro)
    sync_fd, fd = _open(disk_file)
    w = writer_type(sync_fd, fd)
    try:
        # the head is not written when a range failed: a range beyond any file size fails
        # with EFBIG/EINVAL, and the head keeps its old bytes
        w.submit([(1 << 62, b"x")], 0, b"HEADHEAD")
        with pytest.raises(OSError):
            w.finish()
        with open(disk_file, "rb") as f:
            assert f.read(8) == bytes(8)
        w.submit([(0, b"y")], 8, b"HEADHEAD")  # (usable after a failure)
        w.finish()
        with open(disk_file, "rb") as f:
            assert f.read(16) == b"y" + bytes(7) + b"HEADHEAD"
    finally:
        w.close()
        os.close(sync_fd)
        os.close(fd)


def test_the_writer_refuses_misuse_with_clear_errors(writer_type, disk_file):
    sync_fd, fd = _open(disk_file)
    w = writer_type(sync_fd, fd)
    try:
        with pytest.raises(RuntimeError, match="no commit in flight"):
            w.finish()
        with pytest.raises(ValueError, match="8 bytes"):
            w.submit([], 0, b"short")
        with pytest.raises(TypeError, match="pairs"):
            w.submit([(0, "not bytes")], 0, bytes(8))
        with pytest.raises(ValueError, match="negative"):
            w.submit([(-1, b"x")], 0, bytes(8))
        w.submit([], 0, bytes(8))
        with pytest.raises(RuntimeError, match="already in flight"):
            w.submit([], 0, bytes(8))
        w.finish()
    finally:
        w.close()
        os.close(sync_fd)
        os.close(fd)
    with pytest.raises(ValueError, match="closed"):
        w.submit([], 0, bytes(8))


def test_a_psm_s_background_commits_are_durable_and_published(disk_file):
    writer_type = _writer_type()  # (and without it, commit_write in this thread)
    path = os.path.join(os.path.dirname(disk_file), f"{uuid.uuid4().hex}.pool")
    psm = PSM(KV, path, log_size=256 << 10)
    n = 0
    try:
        fd = psm.background_commits()
        assert (fd is None) == (writer_type is None)
        for batch in range(40):
            for _ in range(batch % 7 + 1):
                psm.invoke_rw_grouped(workload_op(n))
                n += 1
            ticket = psm.commit_begin()
            if fd is None:
                psm.commit_write(ticket)
            else:
                assert _readable(fd, 10)
                psm.clear_commit_signal()
            assert psm.commit_written(ticket)
            psm.commit_end(ticket)
            # published: the head in the pool is the commit's (the shadow reads it there)
            assert psm._log.head == ticket.res == psm._log.committed_head
        assert psm.stats()["background_commits"] == ("no" if fd is None else "compiled-thread")
        assert psm.commit_begin() is None  # (nothing logged since)
    finally:
        psm.close(drain=False)  # (the log keeps them: the reopen replays it)
    psm = PSM(KV, path)
    try:
        assert psm.recovered and {"data": psm.state.data, "n": psm.state.n} == expected_state(n)
    finally:
        psm.close()


def test_writers_sharing_an_eventfd_neither_read_nor_close_it(writer_type, disk_file):
    sync_fd, fd = _open(disk_file)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    ws = [writer_type(sync_fd, fd, efd) for _ in range(3)]
    try:
        for i, w in enumerate(ws):
            assert w.fileno() == efd
            w.submit([(4096 * i, b"%d" % i * 100)], -1, b"")  # (no head)
        for w in ws:
            w.finish()
        assert _readable(efd, 1)
        assert os.eventfd_read(efd) == 3  # one signal per commit, none read by finish
        with open(disk_file, "rb") as f:
            data = f.read()
        assert all(data[4096 * i : 4096 * i + 100] == b"%d" % i * 100 for i in range(3))
        assert data[-8:] == bytes(8)
    finally:
        for w in ws:
            w.close()
        os.eventfd_write(efd, 1)  # (still open: its owner closes it)
        os.close(efd)
        os.close(sync_fd)
        os.close(fd)


@pytest.mark.parametrize("compiled", [True, False])
def test_commits_in_flight_end_in_order_whatever_order_they_are_written_in(disk_file,
                                                                           compiled,
                                                                           monkeypatch):
    """Several commits in flight (``background_commits(n)``): a later one may be written
    first; ending it waits for every earlier one, and the head published never covers a
    commit whose writes are not over."""
    import threading

    if compiled and _writer_type() is None:
        pytest.skip("PERSIMMON_PURE_PYTHON: the compiled writer is not loaded")
    path = os.path.join(os.path.dirname(disk_file), f"{uuid.uuid4().hex}.pool")
    psm = PSM(KV, path, log_size=256 << 10)
    lg = psm._log
    n = 0
    try:
        if not compiled:  # (the caller writes them: commit_write)
            monkeypatch.setattr(lg.dev, "background_writer", lambda efd=-1: None)
        fd = psm.background_commits(3)
        assert (fd is not None) == compiled and psm.stats()["commits_in_flight"] == 3
        for round_ in range(12):
            tickets = []
            for _ in range(3):
                for _ in range(round_ % 4 + 1):
                    psm.invoke_rw_grouped(workload_op(n))
                    n += 1
                tickets.append(psm.commit_begin())
            assert len(lg._inflight) == 3
            head = lg.head
            if not compiled:  # written last first: the first commit's write comes last
                psm.commit_write(tickets[2])
                psm.commit_write(tickets[1])
                ender = threading.Thread(target=psm.commit_end, args=(tickets[2],))
                ender.start()
                ender.join(0.2)
                assert ender.is_alive() and lg.head == head  # (waits for the first)
                psm.commit_write(tickets[0])
                ender.join(10)
                assert not ender.is_alive()
            else:
                while not all(psm.commit_written(t) for t in tickets):
                    assert _readable(fd, 10)
                    psm.clear_commit_signal()
                psm.commit_end(tickets[1])
                assert lg.head == tickets[1].res and len(lg._inflight) == 1
                psm.commit_end(tickets[2])
            assert lg.head == tickets[2].res == lg.committed_head and not lg._inflight
            psm.commit_end(tickets[0])  # (idempotent)
        # a fourth commit begun with three in flight ends the oldest first
        ts = []
        for _ in range(4):
            psm.invoke_rw_grouped(workload_op(n))
            n += 1
            ts.append(psm.commit_begin())
            if not compiled:
                psm.commit_write(ts[-1])
        assert list(lg._inflight) == ts[1:] and lg.head == ts[0].res
        psm.commit()  # (ends them all)
        assert not lg._inflight and lg.head == ts[-1].res
    finally:
        psm.close(drain=False)
    psm = PSM(KV, path)
    try:
        assert psm.recovered and {"data": psm.state.data, "n": psm.state.n} == expected_state(n)
    finally:
        psm.close()
