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
