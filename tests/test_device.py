"""Device layer: both real paths, mode forcing, errors, the crash simulator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from persimmon import libpmem
from persimmon.device import (
    PAGE,
    DeviceError,
    MsyncDevice,
    _PageRanges,
    on_tmpfs,
    open_device,
)
from persimmon.errors import PoolExistsError
from persimmon.simdevice import SimDevice

HAVE_LIBPMEM = libpmem.load() is not None


@pytest.mark.parametrize("mode", ["msync", "libpmem"])
def test_write_flush_grow_reopen(mode, shm_path):
    if mode == "libpmem" and not HAVE_LIBPMEM:
        pytest.fail("libpmem1 is not installed (scripts/test.sh installs it)")
    dev = open_device(shm_path, size=64 << 10, create=True, mode=mode)
    assert dev.kind == mode and dev.size == 64 << 10 and mode in repr(dev)
    dev.buf[100:105] = b"hello"
    dev.persist(100, 5)
    dev.grow(256 << 10)
    assert dev.size == 256 << 10 and bytes(dev.buf[100:105]) == b"hello"
    dev.buf[200 << 10 : (200 << 10) + 3] = b"end"
    dev.flush(200 << 10, 3)
    dev.drain()
    dev.close()
    dev.close()  # idempotent
    again = open_device(shm_path, mode=mode)
    assert again.size == 256 << 10
    assert bytes(again.buf[100:105]) == b"hello" and bytes(again.buf[200 << 10 :][:3]) == b"end"
    again.close()
    with pytest.raises(PoolExistsError):
        open_device(shm_path, size=4096, create=True, mode=mode)
    with pytest.raises(FileNotFoundError):
        open_device(shm_path + ".missing", mode=mode)


PROBE = (
    "from persimmon.device import open_device\n"
    "d = open_device(%r, size=8192, create=True)\n"
    "d.buf[0:4] = b'abcd'; d.persist(0, 4)\n"
    "print(d.kind, d.is_pmem); d.close()\n"
)


@pytest.mark.parametrize(
    "env,expect",
    [
        ({"PERSIMMON_DEVICE": "msync"}, "msync False"),
        ({"PERSIMMON_DEVICE": "libpmem", "PMEM_IS_PMEM_FORCE": "0"}, "libpmem False"),
        ({"PERSIMMON_DEVICE": "libpmem", "PMEM_IS_PMEM_FORCE": "1"}, "libpmem True"),
    ],
)
def test_path_selection_and_forced_pmem(env, expect, shm_path):
    e = dict(os.environ)
    e.pop("PMEM_IS_PMEM_FORCE", None)
    e.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE % shm_path], env=e,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expect
    with open(shm_path, "rb") as f:
        assert f.read(4) == b"abcd"


def test_msync_ranges_are_page_rounded_and_merged(shm_path):
    r = _PageRanges()
    r.add(10, 5)
    r.add(PAGE - 1, 2)  # straddles pages 0 and 1
    r.add(5 * PAGE + 7, 1)
    r.add(6 * PAGE, PAGE)
    assert r.take() == [(0, 2 * PAGE), (5 * PAGE, 2 * PAGE)]
    assert r.take() == []
    dev = open_device(shm_path, size=16 * PAGE, create=True, mode="msync")
    assert isinstance(dev, MsyncDevice)
    dev.flush(3 * PAGE + 1, 10)
    assert dev._pending.pages == {3}
    dev.drain()
    assert not dev._pending.pages
    dev.close()


def test_unknown_mode_is_rejected(shm_path):
    with pytest.raises(ValueError):
        open_device(shm_path, size=4096, create=True, mode="floppy")


def test_sim_device_models_power_failure():
    dev = SimDevice(8192)
    dev.buf[0:8] = b"durable!"
    dev.persist(0, 8)
    dev.buf[64:72] = b"flushed?"
    dev.flush(64, 8)  # flushed but no fence yet
    dev.buf[128:136] = b"volatile"
    imgs = [dev.crash_image(s) for s in range(40)]
    assert all(i[0:8] == b"durable!" for i in imgs)
    for region in (slice(64, 72), slice(128, 136)):
        seen = {i[region] for i in imgs}
        assert seen == {bytes(8), bytes(dev.buf[region])}, "both outcomes must occur"
    assert dev.crash_image(7) == dev.crash_image(7)
    # the choice is per 8-byte word
    dev.buf[1024:1024 + 64] = b"w" * 64
    halves = {tuple(i[1024 + 8 * k : 1032 + 8 * k] == b"w" * 8 for k in range(8))
              for i in (dev.crash_image(s) for s in range(20))}
    assert len(halves) > 2
    dev.drain()
    assert dev.persisted_image()[64:72] == b"flushed?"
    assert dev.persisted_image()[128:136] == bytes(8)


def test_sim_device_fence_callback_and_grow():
    calls = []
    dev = SimDevice(4096, on_fence=lambda d: calls.append(d.fences))
    dev.buf[0:3] = b"abc"
    dev.persist(0, 3)
    dev.drain()
    assert calls == [1, 2] and dev.fences == 2
    dev.grow(16384)
    assert dev.size == 16384 and bytes(dev.buf[0:3]) == b"abc"
    assert dev.crash(1).persisted_image()[0:3] == b"abc"
    assert SimDevice.from_image(b"xyz" + bytes(61)).buf[0:3] == b"xyz"


def test_tmpfs_persists_by_nothing_unless_asked(shm_path, tmp_path, monkeypatch):
    from persimmon.device import on_tmpfs

    if not HAVE_LIBPMEM:
        pytest.fail("libpmem1 is not installed (scripts/test.sh installs it)")
    monkeypatch.delenv("PERSIMMON_TMPFS_PERSIST", raising=False)
    monkeypatch.delenv("PERSIMMON_TMPFS_MSYNC", raising=False)
    for mode in ("auto", "libpmem"):
        d = open_device(shm_path, size=8192, create=(mode == "auto"), mode=mode)
        assert on_tmpfs(shm_path) and d.flush_path == "none" and not d.is_pmem
        assert d.persists_nothing  # what lets the op log skip its persist calls
        d.buf[0:4] = b"abcd"
        d.persist(0, 4)
        d.flush(0, 4)
        d.drain()
        d.close()
    # a store is in the file the moment it is made: another mapping sees it, no flush needed
    d = open_device(shm_path, mode="auto")
    d.buf[8:12] = b"wxyz"
    with open(shm_path, "rb") as f:
        assert f.read(12) == b"abcd\x00\x00\x00\x00wxyz"
    d.close()
    os.unlink(shm_path)
    for env, want in ((("PERSIMMON_TMPFS_PERSIST", "cache-flush"), "cache-flush"),
                      (("PERSIMMON_TMPFS_PERSIST", "msync"), "msync"),
                      (("PERSIMMON_TMPFS_MSYNC", "1"), "msync")):
        monkeypatch.delenv("PERSIMMON_TMPFS_PERSIST", raising=False)
        monkeypatch.setenv(*env)
        d = open_device(shm_path, size=8192, create=True, mode="libpmem")
        assert d.flush_path == want and not d.persists_nothing
        d.close()
        os.unlink(shm_path)
    monkeypatch.setenv("PERSIMMON_TMPFS_PERSIST", "sometimes")
    with pytest.raises(DeviceError, match="PERSIMMON_TMPFS_PERSIST"):
        open_device(shm_path, size=8192, create=True)
    monkeypatch.delenv("PERSIMMON_TMPFS_PERSIST")
    # the msync path asked for by name msyncs even on tmpfs; other file systems are not tmpfs
    d = open_device(shm_path, size=8192, create=True, mode="msync")
    assert d.flush_path == "msync" and not d.persists_nothing
    d.close()
    assert not SimDevice(4096).persists_nothing  # the crash simulator sees every persist
    other = str(tmp_path / "disk.pool")
    d = open_device(other, size=8192, create=True, mode="libpmem")
    assert d.flush_path == ("none" if on_tmpfs(other) else "msync")
    d.close()
    d = open_device(other, mode="msync")
    assert d.flush_path == "msync"
    d.close()


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.parametrize("mode", ["msync", "libpmem"])
def test_prefault_maps_a_range_at_once_and_changes_no_byte(mode, shm_path, tmp_path):
    if mode == "libpmem" and not HAVE_LIBPMEM:
        pytest.fail("libpmem1 is not installed (scripts/test.sh installs it)")
    dev = open_device(shm_path, size=8 << 20, create=True, mode=mode)
    assert dev.in_ram
    dev.buf[5000:5003] = b"abc"
    assert dev.prefault(4096, (6 << 20) + 10)
    assert bytes(dev.buf[5000:5003]) == b"abc" and not any(dev.buf[8192:8192 + 4096])
    f0 = _minor_faults()
    for off in range(4096, 6 << 20, PAGE):  # a store into each prefaulted page
        dev.buf[off + 7] = 1
    assert _minor_faults() - f0 < 16  # (against ~1,500 page faults without the prefault)
    f0 = _minor_faults()
    for off in range((6 << 20) + PAGE, 8 << 20, PAGE):  # pages left alone still fault
        dev.buf[off + 7] = 1
    assert _minor_faults() - f0 > 100
    assert not dev.prefault(8 << 20, 4096)  # past the end: nothing to do
    dev.close()
    disk = open_device(str(tmp_path / "p.pool"), size=1 << 20, create=True, mode=mode)
    # in_ram follows the file system (the runtime prefaults its log only on tmpfs)
    assert disk.in_ram == on_tmpfs(str(tmp_path))
    disk.close()
    assert not SimDevice(4096).prefault(0, 4096)
