"""persimmon-redis with its pool in a directory on a disk file system (--dir): the startup
line and INFO say what the pool survives, and acknowledged writes survive a SIGKILL."""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from conftest import ServerProc
from persimmon.device import on_tmpfs


def _disk_dir() -> str:
    for d in ("/var/tmp", os.path.expanduser("~")):
        if os.path.isdir(d) and os.access(d, os.W_OK) and not on_tmpfs(d):
            return d
    raise AssertionError("no writable directory on a disk file system")


def _log(s: ServerProc) -> str:
    for _ in range(100):
        with open(s.log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if "survives" in text:
            return text
        time.sleep(0.05)
    return text


@pytest.mark.parametrize("overlap", ["no", "yes", "yes-in-redis.conf"])
def test_disk_pool_says_power_loss_and_keeps_acknowledged_writes(overlap):
    """Both ways of committing a batch (--commit-overlap, or persimmon-commit-overlap in a
    redis.conf): acknowledged writes, pipelined among reads from several clients at once,
    survive a SIGKILL."""
    root = tempfile.mkdtemp(prefix="persimmon-redis-disk-", dir=_disk_dir())
    extra: tuple = ("--commit-overlap", overlap)
    if overlap == "yes-in-redis.conf":
        conf = os.path.join(root, "redis.conf")
        with open(conf, "w") as f:
            f.write("persimmon-commit-overlap yes\n")
        extra, overlap = (conf,), "yes"
    s = ServerProc(pool_dir=os.path.join(root, "pool"), extra=extra).start()
    try:
        assert "the pool survives power loss" in _log(s)
        c = s.client()
        info = c.info("persimmon")
        assert info["survives"] == "power loss" and info["commit_overlap"] == overlap
        clients = [s.client() for _ in range(4)]
        for i in range(50):
            for j, cj in enumerate(clients):
                p = cj.pipeline(transaction=False)
                p.set(f"k{i}-{j}", f"v{i}")
                p.get(f"k{i}-{j}")
                p.incr(f"n{j}")
                assert p.execute() == [True, f"v{i}".encode(), i + 1]
        s.kill()
        s.start()
        c = s.client()
        assert c.dbsize() == 204 and c.get("k49-3") == b"v49"
        assert [int(c.get(f"n{j}")) for j in range(4)] == [50] * 4
        assert os.path.exists(os.path.join(root, "pool", "persimmon-redis.pool"))
    finally:
        s.cleanup()
        if os.path.exists(os.path.join(root, "redis.conf")):
            os.unlink(os.path.join(root, "redis.conf"))
        os.rmdir(root) if os.path.isdir(root) and not os.listdir(root) else None


def test_tmpfs_pool_says_it_is_lost_at_reboot():
    s = ServerProc().start()
    try:
        text = _log(s)
        assert "the pool survives process crashes" in text and "LOST AT REBOOT" in text
        assert s.client().info("persimmon")["survives"] == "process crashes"
    finally:
        s.cleanup()
