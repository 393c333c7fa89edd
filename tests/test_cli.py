"""``persimmon inspect`` and ``persimmon check``."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from persimmon import PSM
from persimmon.errors import CorruptPoolError
from persimmon.heap import Heap
from psm_apps import KV


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "persimmon.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_inspect_reports_log_undo_and_objects(shm_path):
    psm = PSM(KV, shm_path, log_size=1 << 20)
    for i in range(100):
        psm.invoke_rw(("set", f"k{i}", b"x" * i))
    psm.sync()
    psm._stop_shadow()  # what follows stays in the log tail only
    for i in range(50):
        psm.invoke_rw(("set", f"t{i}", i))
    psm.close(drain=False)
    out = cli("inspect", "--json", shm_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["layout_version"] == 1 and info["device"] in ("libpmem", "msync")
    assert info["log_head"] > info["commit_position"] >= 0
    assert info["log_unapplied_bytes"] == info["log_head"] - info["commit_position"]
    assert info["undo_state"] == "clean"
    assert info["log_epoch"] == 1  # (one process wrote the log)
    assert info["objects"]["object"] == 1 and info["objects"]["dict"] >= 1
    text = cli("inspect", shm_path)
    assert "log_head" in text.stdout and "undo_state" in text.stdout
    assert cli("check", shm_path).returncode == 0
    PSM(KV, shm_path).close()  # (a second process: a second epoch)
    assert json.loads(cli("inspect", "--json", shm_path).stdout)["log_epoch"] == 2


def test_inspect_shows_uncommitted_batch(shm_path):
    h = Heap.create(shm_path, {"d": {i: i for i in range(50)}})
    for i in range(50):
        h.root["d"][i] = -i
    h.end_op()
    # leave the batch uncommitted: inspect (without the lock) sees its undo entries
    info = json.loads(cli("inspect", "--json", shm_path).stdout)
    assert info["undo_state"].startswith("uncommitted batch of ")
    assert int(info["undo_state"].split()[3]) > 0
    h.close()


def test_check_detects_damage(shm_path, tmp_path):
    h = Heap.create(shm_path, {"d": {"a": [1, 2, 3]}})
    meta = h.pool.arena_off
    h.close()
    data = bytearray(open(shm_path, "rb").read())
    struct.pack_into("<q", data, meta + 16, meta + 64 * 1000 + 32)  # root -> garbage
    bad = tmp_path / "bad.pool"
    bad.write_bytes(bytes(data))
    out = cli("check", str(bad))
    assert out.returncode == 1
    assert "damaged" in out.stderr or "outside the heap" in out.stderr
    with pytest.raises(CorruptPoolError):
        Heap.open(str(bad))
    junk = tmp_path / "junk.pool"
    junk.write_bytes(b"\x00" * 10000)
    out = cli("check", str(junk))
    assert out.returncode == 1 and "not a Persimmon pool" in out.stderr
    out = cli("inspect", str(tmp_path / "missing.pool"))
    assert out.returncode == 1 and "persimmon:" in out.stderr and "Traceback" not in out.stderr
