"""Pools on an ordinary file system (the disk path, persimmon.filedevice) under crashes.

* Simulated power loss: the runtime's workload on the disk devices over simulated files
  (the foreground's FileDevice and the shadow's DeferredFileDevice share the pool file and
  its write-back journal), one process interleaving the two; at every sync of either file,
  images a power loss could leave (any sector written since the last sync old or new, the
  old or the new length) are recovered and checked: every acknowledged operation is there
  and the state is that of a prefix of the submitted operations.
* Real crashes: the SIGKILL test of tests/test_runtime_crash.py on a pool in a directory
  of a disk file system (not tmpfs).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid

import pytest

from heap_workload import canon
from persimmon.cli import inspect_pool
from persimmon.device import PAGE, DeviceError, on_tmpfs, open_device
from persimmon.filedevice import (
    JOURNAL_SUFFIX,
    MERGE_GAP,
    DeferredFileDevice,
    FileDevice,
    merge_ranges,
    read_journal,
)
from persimmon.heap import Heap
from persimmon.opcodec import encode, encode_group
from persimmon.oplog import OpLog
from persimmon.psm import PSM, recover_state
from persimmon.shadow import Applier
from persimmon.simdevice import SimFile, sim_disk_devices
from psm_apps import KV, expected_state, workload_op
from test_runtime_crash import run_sigkill_iterations

SimFileDevice, SimDeferredDevice = sim_disk_devices()


def _state_dict(kv) -> dict:
    return {"data": kv.data, "n": kv.n}


def _sim_disk_shadow(log_size: int, interval: float, max_batch: int,
                     release_bytes: int | None = None):
    """A KV pool on a simulated disk, its foreground's op log and its shadow's applier:
    ``(pool_file, journal, pool, sh_dev, heap, fg, ap)``."""
    pool_file, journal = SimFile(512 << 10), SimFile(0)
    fg_dev = SimFileDevice(pool_file, journal)
    pool = Heap.create(fg_dev, KV(), log_size=log_size, undo_size=64 << 10,
                       initial_size=256 << 10).pool
    log_at = (pool.oplog_off, pool.oplog_size)  # (the log's place in the pool)
    OpLog.format(fg_dev, *log_at)
    sh_dev = SimDeferredDevice(pool_file, journal, interval=interval,
                               release_bytes=release_bytes)
    heap = Heap.open(sh_dev)
    fg = OpLog(fg_dev, *log_at)
    ap = Applier(heap, OpLog(sh_dev, *log_at), max_batch=max_batch)
    return pool_file, journal, pool, sh_dev, heap, fg, ap


def _log_and_apply(pool, fg: OpLog, sh_dev, ap: Applier, first: int, last: int) -> None:
    """Log workload ops ``first..last-1`` (a commit each); the shadow applies them."""
    for i in range(first, last):
        fg.append(encode(workload_op(i)))
        fg.commit()
    sh_dev.refresh(pool.oplog_off, pool.oplog_size)  # (as its untouched private pages see it)
    while ap.step():
        pass


def disk_dir() -> str:
    """A directory on a disk file system (not tmpfs) for pools of these tests."""
    for d in ("/var/tmp", os.path.expanduser("~"), os.path.dirname(os.path.abspath(__file__))):
        if os.path.isdir(d) and os.access(d, os.W_OK) and not on_tmpfs(d):
            return d
    pytest.fail("no writable directory on a disk file system (all of them are tmpfs)")


@pytest.fixture
def disk_path():
    d = tempfile.mkdtemp(prefix="persimmon-disk-test-", dir=disk_dir())
    yield os.path.join(d, f"{uuid.uuid4().hex}.pool")
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("max_group,interval,overlapped,release",
                         [(1, 0.0, 0, None), (7, 0.0, 0, None), (7, 1e9, 0, None),
                          (7, 0.0, 1, None), (3, 1e9, 1, None), (7, 0.0, 0, 0),
                          (7, 0.0, 0, 3 * PAGE), (3, 0.0, 1, 5 * PAGE), (3, 0.0, 3, None),
                          (2, 1e9, 4, 5 * PAGE)],
                         ids=["entry-per-op", "group-entries", "write-back-paced",
                              "overlapped-commits", "overlapped-paced",
                              "release-at-every-write-back", "release-deferred",
                              "overlapped-release-deferred", "three-commits-in-flight",
                              "four-in-flight-paced-release"])
def test_power_loss_at_every_sync_of_the_disk_path(max_group, interval, overlapped, release):
    """``interval`` 0: the shadow writes back at every commit; 1e9: only when it settles
    (goes idle), so batches pile up between write-backs and the tail waits for them.
    ``overlapped``: how many commits may be in flight (0: none, ``commit`` each batch), the
    server's way on a disk pool (OpLog.commit_begin/commit_write/commit_end): the next
    batch is appended while commits are in flight, and a batch is acknowledged only when
    the commit that staged it has ended (and so every earlier one).  With several in
    flight their writes are done in a random order (a later commit's range may be on the
    disk before an earlier one's), and a power loss also comes in the middle of a synced
    write (any of its sectors old or new).  ``release``: the bytes of
    pages written back the shadow gathers before it gives their private copies back
    (None: the default, 64 MiB, so only when it settles; 0: after every write-back).  The
    simulated release really replaces the private page by the file's, so one that dropped
    a page holding stores not yet written back would lose them and fail the checks."""
    n_ops = 220
    expected = {0: canon(expected_state(0))}
    kv = KV()
    for i in range(n_ops):
        kv.apply(workload_op(i))
        expected[i + 1] = canon(_state_dict(kv))
    pool_file, journal, pool, sh_dev, heap, fg, ap = _sim_disk_shadow(
        4 << 10, interval, 17, release)
    log_off, log_size = pool.oplog_off, pool.oplog_size
    rng, rel_rng = random.Random(5), random.Random(6)
    prog = {"acked": 0, "submitted": 0, "syncs": 0, "checks": 0, "replayed_journals": 0,
            "out_of_order": 0}

    def check(f: SimFile, when: str) -> None:
        prog["syncs"] += 1
        for s in range(2 if when != "after" else 1):
            seed = prog["syncs"] * 10 + s
            pf, jf = SimFile(pool_file.crash_image(seed)), SimFile(journal.crash_image(seed + 5))
            dev = SimFileDevice(pf, jf)
            prog["replayed_journals"] += dev.recover_journal() > 0
            state, _ = recover_state(dev)
            n = state.n
            assert prog["acked"] <= n <= prog["submitted"], (when, prog, n)
            assert canon(_state_dict(state)) == expected[n], (when, prog, n)
            prog["checks"] += 1

    def drive_shadow() -> None:
        if fg._inflight:  # (a full log: PSM's wait commits what is in flight)
            finish(fg._inflight[-1])
        sh_dev.refresh(log_off, log_size)  # (the log as its untouched private pages see it)
        if not ap.step():
            ap.commit()
            sh_dev.settle()
        elif release is not None and rel_rng.random() < 0.3:
            # a release in the middle of a batch too (stores not yet flushed or written
            # back are in the private pages then: they must keep their copies)
            sh_dev.release()

    staged: dict = {}  # ticket -> the operations it makes durable

    def write_some(tickets: list, everything: bool) -> None:
        # the writes of commits in flight, in a random order (the disk's)
        waiting = [t for t in tickets if not fg.commit_written(t)]
        rng.shuffle(waiting)
        for t in waiting if everything else waiting[: rng.randrange(len(waiting) + 1)]:
            inflight = list(fg._inflight)
            prog["out_of_order"] += any(not fg.commit_written(e)
                                        for e in inflight[: inflight.index(t)])
            fg.commit_write(t)

    def finish(ticket) -> None:
        earlier = list(fg._inflight)
        write_some(earlier[: earlier.index(ticket) + 1] if ticket in earlier else [], True)
        fg.commit_end(ticket)  # (and every commit begun before it)
        prog["acked"] = max(prog["acked"], staged[ticket])

    pool_file.on_sync = journal.on_sync = check
    if overlapped:
        assert fg.background_commits(overlapped) is None  # (a SimFile: commit_write here)
    i = 0
    ticket = None
    while i < n_ops:
        k = min(rng.randrange(1, max_group + 1), n_ops - i)
        payloads = [encode(workload_op(j)) for j in range(i, i + k)]
        prog["submitted"] = i + k
        fg.append(payloads[0] if k == 1 else encode_group(payloads), wait=drive_shadow)
        i += k
        if not overlapped:
            fg.commit()
            prog["acked"] = i
        else:
            if len(fg._inflight) >= overlapped:  # (commit_begin would end the oldest)
                finish(fg._inflight[0])
            ticket = fg.commit_begin()
            staged[ticket] = i
            write_some(list(fg._inflight), False)
            while fg._inflight and fg.commit_written(fg._inflight[0]) and rng.random() < 0.5:
                finish(fg._inflight[0])  # (the server ends those written, oldest first)
        for _ in range(rng.randrange(3)):
            drive_shadow()
    if fg._inflight:
        finish(fg._inflight[-1])
    assert prog["acked"] == n_ops
    sh_dev.refresh(log_off, log_size)
    while ap.step():
        pass
    ap.commit()
    sh_dev.settle()
    pool_file.on_sync = journal.on_sync = None
    assert ap.c.batches >= 5  # several batches
    assert ap.c.committed_ops == n_ops  # every operation once
    assert fg.head > 3 * fg.capacity  # wrapped around the log several times
    assert sh_dev.writebacks >= 3
    # every persist point checked: the log's syncs and both syncs of each write-back
    assert prog["syncs"] >= n_ops // max_group + 2 * sh_dev.writebacks
    assert prog["replayed_journals"] > 0  # some images needed the journal copied in place
    if overlapped > 1:  # a commit written while an earlier one was not, many times
        assert prog["out_of_order"] >= 3, prog
    assert sh_dev.releases >= 1 and sh_dev.dropped_pages >= 1
    if release is not None:  # (released between write-backs, not only when idle)
        assert sh_dev.releases >= 3
    # the shadow's view of the PM copy is what its program order made (nothing a release
    # dropped is missing from it)
    assert canon(_state_dict(Heap.open(SimFileDevice(SimFile(bytes(sh_dev.buf)),
                                                     SimFile(0))).materialize())) == \
        expected[n_ops]
    dev = SimFileDevice(SimFile(pool_file.dur), SimFile(journal.dur))
    dev.recover_journal()
    state, _ = recover_state(dev)
    assert canon(_state_dict(state)) == expected[n_ops]


def test_a_write_back_in_the_middle_of_a_batch_takes_the_batch_undo_entries():
    """On the shadow's device the undo log does not flush its entries one by one
    (``atomic_writeback``): a write-back in the middle of a batch (the shadow settling on
    its way out after its foreground died, a heap that grows) writes the ranges an earlier
    batch flushed as they are then, with this batch's stores in them, so it must write the
    batch's undo entries with them (``UndoLog.batch_ranges``) or recovery could not roll
    the batch back before replaying it."""
    n_ops = 80
    pool_file, journal, pool, sh_dev, heap, fg, ap = _sim_disk_shadow(
        64 << 10, 1e9, 10_000)  # (paced: no write-back)
    assert not heap.undo._entry_fence
    _log_and_apply(pool, fg, sh_dev, ap, 0, n_ops // 2)
    ap.commit()  # the first batch: committed, its ranges waiting for a write-back
    _log_and_apply(pool, fg, sh_dev, ap, n_ops // 2, n_ops)  # the same keys again, not committed
    assert sh_dev.writebacks == 0 and ap.in_batch == n_ops // 2
    sh_dev.settle()
    assert sh_dev.writebacks == 1
    dev = SimFileDevice(SimFile(pool_file.dur), SimFile(journal.dur))
    state, _ = recover_state(dev)  # (the second batch rolled back, then replayed)
    assert canon(_state_dict(state)) == canon(expected_state(n_ops))


def test_a_write_back_at_a_commit_point_leaves_the_committed_batch_undo_entries_out():
    """At a commit point the batch's commit record goes with the write-back, so its undo
    entries are needed by no state the write-back can leave: they are not written (on
    PM they are flushed one by one; here they would be a second copy of every block a
    batch changed, journalled and written in place)."""
    pool_file, journal, pool, sh_dev, heap, fg, ap = _sim_disk_shadow(
        64 << 10, 0.0, 10_000)  # (a write-back at every commit point)
    undo = (pool.undo_off, pool.undo_off + pool.undo_size)
    _log_and_apply(pool, fg, sh_dev, ap, 0, 40)
    assert heap.undo.count > 0 and heap.undo.batch_ranges()
    before = sh_dev.writebacks
    ap.commit()
    assert sh_dev.writebacks == before + 1
    written = read_journal(bytes(journal.cache), len(pool_file.cache))
    assert written
    assert not [off for off, d in written if off < undo[1] and off + len(d) > undo[0]]
    dev = SimFileDevice(SimFile(pool_file.dur), SimFile(journal.dur))
    state, _ = recover_state(dev)
    assert canon(_state_dict(state)) == canon(expected_state(40))


def test_the_shadow_pacing_settings_are_read_from_the_environment(monkeypatch):
    """``PERSIMMON_DISK_WRITEBACK_SECONDS`` and ``PERSIMMON_DISK_RELEASE_MIB`` set the
    shadow's device; a bad value is a clear error when any disk device opens (the
    foreground's included), not a shadow that fails."""
    monkeypatch.setenv("PERSIMMON_DISK_WRITEBACK_SECONDS", "2.5")
    monkeypatch.setenv("PERSIMMON_DISK_RELEASE_MIB", "256")
    sh = SimDeferredDevice(SimFile(4 * PAGE), SimFile(0), interval=None)  # type: ignore
    assert sh.interval == 2.5 and sh.release_bytes == 256 << 20
    monkeypatch.setenv("PERSIMMON_DISK_RELEASE_MIB", "0.5")
    assert SimDeferredDevice(SimFile(4 * PAGE), SimFile(0)).release_bytes == 512 << 10
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("PERSIMMON_DISK_RELEASE_MIB", bad)
        with pytest.raises(DeviceError, match="PERSIMMON_DISK_RELEASE_MIB"):
            SimFileDevice(SimFile(4 * PAGE), SimFile(0))
    monkeypatch.delenv("PERSIMMON_DISK_RELEASE_MIB")
    monkeypatch.setenv("PERSIMMON_DISK_WRITEBACK_SECONDS", "soon")
    with pytest.raises(DeviceError, match="PERSIMMON_DISK_WRITEBACK_SECONDS"):
        SimFileDevice(SimFile(4 * PAGE), SimFile(0))
    monkeypatch.delenv("PERSIMMON_DISK_WRITEBACK_SECONDS")
    assert SimDeferredDevice(SimFile(4 * PAGE), SimFile(0)).release_bytes == 64 << 20
    from persimmon.filedevice import writeback_seconds

    assert writeback_seconds() == 5.0  # (docs/device.md, "... and write-backs paced at 5 s")


def test_a_paced_write_back_is_hurried_when_the_log_space_it_frees_is_wanted():
    """``hurry_writeback``: the next commit point writes back however the pacing stands,
    once; the pacing holds again after it."""
    f, j = SimFile(64 << 10), SimFile(0)
    sh = SimDeferredDevice(f, j, interval=1e9)
    sh.buf[100:105] = b"hello"
    sh.flush(100, 5)
    sh.commit_point()  # paced: not yet
    assert f.cache[100:105] == bytes(5)
    sh.hurry_writeback()
    assert f.cache[100:105] == bytes(5)  # (only at a commit point)
    sh.commit_point()
    assert f.cache[100:105] == b"hello" and sh.writebacks == 1
    sh.buf[200:203] = b"abc"
    sh.flush(200, 3)
    sh.commit_point()  # paced again
    assert f.cache[200:203] == bytes(3) and sh.writebacks == 1


def test_the_shadow_writes_back_before_the_log_fills_however_long_the_pacing(
        disk_path, monkeypatch):
    """With write-backs paced far apart, a log that fills waits for them: the shadow writes
    back when a quarter of the log is applied but not yet free.  (Without that, this run
    filled its 2 MiB log about 11 times, each a stall until the shadow went idle.)"""
    monkeypatch.setenv("PERSIMMON_DISK_WRITEBACK_SECONDS", "1000")  # (the shadow inherits it)
    value = b"x" * 100
    with PSM(KV, disk_path, log_size=2 << 20) as psm:
        for i in range(200_000):  # about 15 times the log
            psm.invoke_rw_grouped((b"set", b"k%d" % (i % 5000), value))
            if i % 20 == 19:
                psm.commit()
        psm.commit()
        stats = psm.stats()
        assert stats["full_waits"] <= 3, stats
    with PSM(KV, disk_path) as again:
        assert again.state.n == 200_000 and again.state.data[b"k4999"] == value


def test_a_torn_journal_is_ignored_and_a_whole_one_copied_in_place():
    """The journal is all or nothing: a torn or stale image changes nothing."""
    f, j = SimFile(64 << 10), SimFile(0)
    sh = SimDeferredDevice(f, j, interval=1e9)
    sh.buf[100:105] = b"hello"
    sh.flush(100, 5)
    sh.buf[40000:40003] = b"abc"
    sh.flush(40000, 3)
    assert f.cache[100:105] == bytes(5)  # nothing reaches the file before a write-back
    sh.write_ordered(8, b"T" * 8)  # waits for the write-back of what was flushed before
    assert f.cache[8:16] == bytes(8)
    sh.commit_point()  # paced: not yet
    assert f.cache[100:105] == bytes(5)
    sh.settle()
    assert f.cache[100:105] == b"hello" and f.cache[40000:40003] == b"abc"
    assert f.cache[8:16] == b"T" * 8
    whole = bytes(j.cache)
    assert [off for off, _ in read_journal(whole, len(f.cache))] == [64, 40000]
    for cut in (10, 40, len(whole) - 1):
        torn = whole[:cut] + b"\xff" * (len(whole) - cut)
        assert read_journal(torn, len(f.cache)) is None
    # a pool whose in-place writes were lost but whose journal is whole: copied in place
    pf = SimFile(64 << 10)
    dev = SimFileDevice(pf, SimFile(whole))
    assert dev.recover_journal() == 2
    assert pf.cache[100:105] == b"hello" and pf.dur[40000:40003] == b"abc"
    assert dev.recover_journal() == 0  # invalidated once copied


def test_flushed_ranges_are_written_back_as_whole_lines_and_near_ones_as_one():
    """A write-back writes whole 64-byte lines, overlapping ranges once, and ranges less
    than ``MERGE_GAP`` bytes apart as one write (the bytes between from the private copy,
    the same moment's state); the journal holds exactly what is written in place."""
    assert merge_ranges([]) == []
    assert merge_ranges([(70, 1)]) == [(64, 64)]
    assert merge_ranges([(0, 0)]) == [(0, 64)]
    assert merge_ranges([(130, 10), (0, 200), (64, 8)]) == [(0, 256)]
    gap = MERGE_GAP
    assert merge_ranges([(0, 64), (64 + gap - 64, 64)]) == [(0, gap + 64)]
    assert merge_ranges([(0, 64), (64 + gap, 64)]) == [(0, 64), (64 + gap, 64)]
    assert MERGE_GAP < PAGE  # (a gap never spans a page no flushed range is in)
    f, j = SimFile(16 * PAGE), SimFile(0)
    sh = SimDeferredDevice(f, j, interval=1e9)
    sh.buf[1000:1004] = b"abcd"
    sh.buf[1100:1102] = b"xy"  # between two flushed ranges: written with them
    sh.buf[1200:1204] = b"efgh"
    sh.buf[5 * PAGE : 5 * PAGE + 4] = b"far!"
    sh.flush_ranges([(1000, 4), (1200, 4)])
    sh.flush(5 * PAGE, 4)
    assert sh.pending_bytes == 12
    sh.settle()
    assert [(off, len(d)) for off, d in read_journal(bytes(j.cache), len(f.cache))] == \
        [(960, 1216 - 960), (5 * PAGE, 64)]
    assert bytes(f.cache[1000:1004]) == b"abcd" and bytes(f.cache[1100:1102]) == b"xy"
    assert bytes(f.cache[1200:1204]) == b"efgh" and bytes(f.cache[5 * PAGE:][:4]) == b"far!"
    assert sh.pending_bytes == 0


def test_written_back_pages_are_released_later_and_only_if_unchanged():
    """The shadow gives back the private copies of pages it wrote back only once
    ``release_bytes`` of them have gathered, or when it settles (idle): not at each
    write-back.  A page stored into again and not yet written back keeps its copy."""
    f, j = SimFile(64 * PAGE), SimFile(0)
    sh = SimDeferredDevice(f, j, interval=0.0, release_bytes=4 * PAGE)
    for p in (1, 2, 3):  # three pages, one write-back each: below the threshold
        sh.buf[p * PAGE : p * PAGE + 4] = b"p%03d" % p
        sh.flush(p * PAGE, 4)
        sh.commit_point()
    assert sh.writebacks == 3 and sh.releases == 0 and sh.dropped_pages == 0
    assert f.cache[2 * PAGE : 2 * PAGE + 4] == b"p002"
    sh.buf[2 * PAGE + 8 : 2 * PAGE + 12] = b"late"  # stored, not written back yet
    sh.buf[9 * PAGE : 9 * PAGE + 4] = b"p009"
    sh.flush(9 * PAGE, 4)
    sh.commit_point()  # the fourth page: 4 pages gathered, released now
    assert sh.writebacks == 4 and sh.releases == 1
    assert sh.dropped_pages == 3  # page 2 holds a store the file has not: kept
    assert bytes(sh.buf[2 * PAGE + 8 : 2 * PAGE + 12]) == b"late"
    assert all(bytes(sh.buf[p * PAGE : p * PAGE + 4]) == b"p%03d" % p for p in (1, 2, 3, 9))
    sh.commit_point()  # nothing flushed: no write-back, nothing to release
    assert sh.writebacks == 4 and sh.releases == 1
    sh.flush(2 * PAGE + 8, 4)
    sh.commit_point()
    assert sh.releases == 1  # one page gathered
    sh.settle()  # idle: written back (nothing waits) and released
    assert sh.releases == 2 and sh.dropped_pages == 4
    assert f.cache[2 * PAGE + 8 : 2 * PAGE + 12] == b"late"
    sh.settle()
    assert sh.releases == 2  # nothing gathered since


def test_disk_pool_device_choice_and_creation(disk_path):
    dev = open_device(disk_path, size=1 << 20, create=True)
    try:
        assert isinstance(dev, FileDevice) and not dev.deferred
        assert dev.writes_through and dev.flush_path == "fdatasync"
        assert dev.survives == "power loss" and not dev.in_ram
        # created written, not sparse: every block allocated now
        st = os.stat(disk_path)
        assert st.st_blocks * 512 >= st.st_size
        dev.write(4096, b"through")
        dev.sync()
        with open(disk_path, "rb") as f:
            f.seek(4096)
            assert f.read(7) == b"through"
        assert bytes(dev.buf[4096:4103]) == b"through"  # the mapping sees the write
    finally:
        dev.close()
    from persimmon import filedevice

    filedevice.defer_writeback(True)
    try:
        sh = open_device(disk_path)
    finally:
        filedevice.defer_writeback(False)
    try:
        assert isinstance(sh, DeferredFileDevice)
        sh.buf[8192:8195] = b"xyz"
        sh.flush(8192, 3)
        with open(disk_path, "rb") as f:
            f.seek(8192)
            assert f.read(3) == bytes(3)  # private until written back
        sh.writeback()
        with open(disk_path, "rb") as f:
            f.seek(8192)
            assert f.read(3) == b"xyz"
        assert sh.dropped_pages == 0  # (the release waits: see the test below)
        sh.settle()
        assert sh.releases == 1 and sh.dropped_pages >= 1 and bytes(sh.buf[8192:8195]) == b"xyz"
        assert os.path.exists(disk_path + JOURNAL_SUFFIX)
    finally:
        sh.close()


def test_psm_on_a_disk_pool_survives_restart_and_says_so(disk_path):
    psm = PSM(KV, disk_path, log_size=256 << 10)
    try:
        assert psm.survives == "power loss" and psm.stats()["survives"] == "power loss"
        for i in range(300):
            psm.invoke_rw(workload_op(i), commit=i % 5 == 4)
        psm.commit()
        psm.sync()
    finally:
        psm.close()
    info = inspect_pool(disk_path)
    assert info["survives"] == "power loss" and info["device"] == "file"
    assert info["writeback_journal_bytes"] >= 0
    psm = PSM(KV, disk_path)
    try:
        assert psm.recovered and _state_dict(psm.state) == expected_state(300)
    finally:
        psm.close()


def test_a_tmpfs_pool_says_it_survives_process_crashes(shm_path):
    if not on_tmpfs(os.path.dirname(shm_path)):
        pytest.fail("/dev/shm is not a tmpfs here")
    psm = PSM(KV, shm_path, log_size=64 << 10)
    try:
        assert psm.survives == "process crashes"
    finally:
        psm.close()
    assert inspect_pool(shm_path)["survives"] == "process crashes"


ITERATIONS = int(os.environ.get("PERSIMMON_DISK_CRASH_ITERATIONS", "9"))


@pytest.mark.parametrize("groups", [False, True], ids=["commit-per-op", "group-commit"])
def test_sigkill_on_a_disk_pool(disk_path, groups):
    assert not on_tmpfs(os.path.dirname(disk_path))
    res = run_sigkill_iterations(disk_path, ITERATIONS, seed=7, groups=groups)
    assert min(res["modes"].values()) >= 1 and res["acked"] > ITERATIONS


def test_entries_a_torn_commit_left_behind_are_never_read_in_a_later_life():
    """Two commits in flight on a disk pool, the later one written, the earlier one not,
    and the power fails: recovery ends the log where the earlier one starts; the later
    one's entries are whole and valid, past that end.  The next process logs new entries
    of the same sizes, so they end exactly where the old ones begin, commits them (the
    head is not synced) and the power fails again: the third life reads the new entries
    and stops there, because the old ones carry the first life's epoch."""
    pool_file, journal = SimFile(512 << 10), SimFile(0)
    dev = SimFileDevice(pool_file, journal)
    heap = Heap.create(dev, KV(), log_size=8 << 10, undo_size=64 << 10,
                       initial_size=256 << 10)
    off, size = heap.pool.oplog_off, heap.pool.oplog_size
    OpLog.format(dev, off, size)
    dev.sync()

    def life(image: bytes, jimage: bytes) -> tuple:
        d = SimFileDevice(SimFile(image), SimFile(jimage))
        d.recover_journal()
        lg = OpLog(d, off, size)
        end = lg.recover_end(0)
        return d, lg, [p for _e, p in lg.entries(0, end)]

    first = OpLog(dev, off, size)
    assert first.begin_epoch() == 1
    first.background_commits(2)
    for i in range(3):
        first.append(b"kept-%d" % i + bytes(90))
    first.commit()
    for i in range(3):
        first.append(b"A-%d" % i + bytes(93))
    a = first.commit_begin()
    for i in range(3):
        first.append(b"B-%d" % i + bytes(93))
    b = first.commit_begin()
    first.commit_write(b)  # the later commit is on the disk, the earlier one is not
    assert not first.commit_written(a) and first.commit_written(b)
    d2, second, seen = life(bytes(pool_file.dur), bytes(journal.dur))
    kept = [b"kept-%d" % i + bytes(90) for i in range(3)]
    assert seen == kept
    # the B entries are there, whole, right after where A's were to be
    assert second.begin_epoch() == 2
    for i in range(3):
        second.append(b"C-%d" % i + bytes(93))  # (the sizes of A's entries)
    assert second.commit() == b.res - (b.res - a.res)  # (C ends where B begins)
    d3, third, seen = life(bytes(d2.io.dur), bytes(d2._journal.dur))
    assert seen == kept + [b"C-%d" % i + bytes(93) for i in range(3)]
    # and without the epoch the B entries would have been read: they are valid for
    # their positions, only their epoch is not the log's
    third._tag = 1 << 48
    assert third._valid_at(a.res) is not None
