"""The heap on every real device path: libpmem (forced to treat tmpfs as PM, cache flushes on
tmpfs, and its msync fallback), plain mmap + msync, and the tmpfs default (no flush); each in
a fresh process because libpmem reads PMEM_IS_PMEM_FORCE when it is loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from heap_workload import canon, native_state
from persimmon.heap import Heap

TESTS = os.path.dirname(os.path.abspath(__file__))

PATHS = {
    "msync": {"PERSIMMON_DEVICE": "msync"},
    "tmpfs-default": {"PERSIMMON_DEVICE": "auto", "PMEM_IS_PMEM_FORCE": "0"},
    "libpmem-cache-flush": {"PERSIMMON_DEVICE": "libpmem", "PMEM_IS_PMEM_FORCE": "0",
                            "PERSIMMON_TMPFS_PERSIST": "cache-flush"},
    "libpmem-msync-fallback": {"PERSIMMON_DEVICE": "libpmem", "PMEM_IS_PMEM_FORCE": "0",
                               "PERSIMMON_TMPFS_PERSIST": "msync"},
    "libpmem-forced-pmem": {"PERSIMMON_DEVICE": "libpmem", "PMEM_IS_PMEM_FORCE": "1"},
}
FLUSH_PATH = {"msync": "msync", "tmpfs-default": "none", "libpmem-cache-flush": "cache-flush",
              "libpmem-msync-fallback": "msync", "libpmem-forced-pmem": "cache-flush"}

WORKER = r"""
import sys, os
sys.path.insert(0, {tests!r})
from heap_workload import initial, op
from persimmon.heap import Heap
path = {path!r}
heap = Heap.open(path) if os.path.exists(path) else Heap.create(path, initial())
print("device", heap.dev.kind, heap.dev.is_pmem, heap.position, heap.dev.flush_path,
      flush=True)
i = heap.position
while i < {limit}:
    op(heap.root, i)
    heap.end_op()
    i += 1
    if i % 9 == 0:
        heap.commit(i)
        print("committed", i, flush=True)
heap.commit(i)
heap.close()
print("done", i, flush=True)
"""


def _env(name: str) -> dict:
    env = dict(os.environ)
    env.update(PATHS[name])
    return env


@pytest.mark.parametrize("name", list(PATHS))
def test_workload_and_sigkill_on_each_device_path(name, shm_path):
    code = WORKER.format(tests=TESTS, path=shm_path, limit=300)
    out = subprocess.run([sys.executable, "-c", code], env=_env(name), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first = out.stdout.split("\n")[0].split()
    kind, is_pmem, flush_path = first[1], first[2], first[4]
    assert kind == ("msync" if name == "msync" else "libpmem")
    assert is_pmem == ("True" if name == "libpmem-forced-pmem" else "False")
    assert flush_path == FLUSH_PATH[name]
    h = Heap.open(shm_path)
    assert h.position == 300 and canon(h.materialize()) == canon(native_state(300))
    h.close()
    # a SIGKILL in the middle of batches on this path rolls back to a commit
    code = WORKER.format(tests=TESTS, path=shm_path, limit=100000)
    p = subprocess.Popen([sys.executable, "-c", code], env=_env(name), stdout=subprocess.PIPE,
                         text=True)
    last = int(p.stdout.readline().split()[3])
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("committed"):
            last = int(line.split()[1])
    p.send_signal(signal.SIGKILL)
    p.wait()
    h = Heap.open(shm_path)
    assert h.position >= last > 300
    assert canon(h.materialize()) == canon(native_state(h.position))
    h.close()
