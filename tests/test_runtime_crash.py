"""Durability and failure atomicity of the runtime under crashes.

* Real crashes: a workload process writes through ``invoke_rw`` and reports every
  acknowledged operation over a pipe; it is SIGKILLed at random moments (the foreground, the
  shadow, or both).  The pool is reopened: every acknowledged operation must be in the
  recovered state, and the state must be the result of a prefix of the submitted operations.
* Simulated power failures: the same workload on the crash-simulation device, with the
  foreground and the shadow interleaved in one process; at every fence, PM images that a
  power failure could leave are recovered and checked the same way.  The log is small, so
  the run wraps around it many times, over many shadow batches.

``PERSIMMON_CRASH_ITERATIONS=N`` runs longer, ``PERSIMMON_CRASH_SEED=S`` with other kill timings.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from crashsim import FenceProbe
from heap_workload import canon
from persimmon.heap import Heap
from persimmon.opcodec import encode, encode_group
from persimmon.oplog import OpLog
from persimmon.psm import PSM, recover_state
from persimmon.shadow import Applier
from persimmon.simdevice import SimDevice
from psm_apps import KV, BigKV, big_expected, expected_state, workload_op

TESTS = os.path.dirname(os.path.abspath(__file__))
ITERATIONS = int(os.environ.get("PERSIMMON_CRASH_ITERATIONS", "30"))
SEED = int(os.environ.get("PERSIMMON_CRASH_SEED", "1"))  # the kill timings' seed

CHILD = r"""
import sys
sys.path.insert(0, {tests!r})
from persimmon import PSM
from psm_apps import {app}, {opfn} as workload_op
p = PSM({app}, {path!r}, log_size=256 << 10, lock_timeout=10)
print("shadow", p.shadow_pid, p.state.n, flush=True)
i = p.state.n
while True:
    p.invoke_rw(workload_op(i))
    sys.stdout.write("ack %d\n" % i)
    sys.stdout.flush()
    i += 1
"""

# the same with group commit: groups of 1-40 operations logged with commit=False, all
# acknowledged after one commit() (the persimmon-redis server's pattern)
CHILD_GROUPS = r"""
import random, sys
sys.path.insert(0, {tests!r})
from persimmon import PSM
from psm_apps import {app}, {opfn} as workload_op
p = PSM({app}, {path!r}, log_size=256 << 10, lock_timeout=10)
print("shadow", p.shadow_pid, p.state.n, flush=True)
i = p.state.n
rng = random.Random(i)
while True:
    k = rng.randrange(1, 41)
    for j in range(i, i + k):
        p.invoke_rw(workload_op(j), commit=False)
    p.commit()
    i += k
    sys.stdout.write("ack %d\n" % (i - 1))
    sys.stdout.flush()
"""


def _state_dict(kv) -> dict:
    return {"data": kv.data, "n": kv.n}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# the state machines the SIGKILL test runs: class, operation, expected state after n
APPS = {"kv": (KV, "workload_op", expected_state), "big": (BigKV, "big_op", big_expected)}


def run_sigkill_iterations(path: str, iterations: int, seed: int = 1,
                           groups: bool = False, app: str = "kv") -> dict:
    rng = random.Random(seed)
    cls, opfn, expected = APPS[app]
    child = (CHILD_GROUPS if groups else CHILD).replace("{app}", cls.__name__).replace(
        "{opfn}", opfn)
    modes = {"foreground": 0, "shadow": 0, "both": 0}
    total_acked = 0
    for it in range(iterations):
        mode = ("foreground", "shadow", "both")[it % 3]
        p = subprocess.Popen(
            [sys.executable, "-c", child.format(tests=TESTS, path=path)],
            stdout=subprocess.PIPE, text=True,
        )
        first = p.stdout.readline().split()
        assert first and first[0] == "shadow", first
        shadow_pid, start_n = int(first[1]), int(first[2])
        last_ack = start_n - 1
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        killed_shadow = False
        while True:
            line = p.stdout.readline()
            if line.startswith("ack "):
                last_ack = int(line.split()[1])
            if time.monotonic() >= deadline:
                if mode == "shadow" and not killed_shadow:
                    _kill(shadow_pid)
                    killed_shadow = True
                    deadline = time.monotonic() + rng.uniform(0.05, 0.3)
                    continue
                break
        if mode == "both":
            _kill(shadow_pid)
        p.kill()
        # acknowledgements already in the pipe were sent before the kill
        for line in p.stdout.read().splitlines():
            if line.startswith("ack ") and line[4:].isdigit():
                last_ack = int(line.split()[1])
        p.wait()
        modes[mode] += 1
        psm = PSM(cls, path, lock_timeout=10)
        try:
            n = psm.state.n
            assert n >= last_ack + 1, f"acknowledged op {last_ack} lost (recovered {n})"
            assert _state_dict(psm.state) == expected(n), "not a prefix state"
            total_acked = last_ack + 1
        finally:
            psm.close()
    return {"modes": modes, "acked": total_acked}


@pytest.mark.parametrize(("groups", "app"), [(False, "kv"), (True, "kv"), (True, "big")],
                         ids=["commit-per-op", "group-commit", "big-table-group-commit"])
def test_sigkill_foreground_shadow_both(shm_path, groups, app):
    # big: a table of more entries than get a DRAM index, whose stores the shadow makes
    # by probing the pool's index table (with the compiled module)
    try:
        res = run_sigkill_iterations(shm_path, ITERATIONS, seed=SEED, groups=groups, app=app)
    except BaseException:
        # keep the pool for a post-mortem (`persimmon inspect`/`check`), and say where
        kept = os.path.join(tempfile.gettempdir(), "persimmon-failed-" + os.path.basename(shm_path))
        if os.path.exists(shm_path):
            shutil.copyfile(shm_path, kept)
            print(f"the pool at the failure is kept at {kept}")
        raise
    assert sum(res["modes"].values()) == ITERATIONS and min(res["modes"].values()) >= 1
    assert res["acked"] > ITERATIONS


@pytest.mark.parametrize("max_group,big", [(1, False), (7, False), (1, True)],
                         ids=["entry-per-op", "group-entries", "big-entries"])
def test_crash_at_every_fence_of_runtime_workload(max_group, big):
    """With ``max_group`` > 1 the foreground logs groups of 1..max_group operations as one
    entry each (as ``PSM.invoke_rw(commit=False)`` + ``commit()`` do), acknowledged together;
    the shadow must commit only at entry boundaries for every image to be a prefix state.
    ``big``: every ninth operation is bigger than half the log, and the foreground commits
    before it waits for space (as PSM does), so wrap-around padding markers are committed
    alone at the head and the shadow moves past them (a commit at a lap boundary)."""
    n_ops = 300

    def op(i: int):
        return ("set", f"big{i % 4}", b"B%d" % i * 700) if big and i % 9 == 8 \
            else workload_op(i)

    expected = {0: canon(expected_state(0))}
    kv = KV()
    for i in range(n_ops):
        kv.apply(op(i))
        expected[i + 1] = canon(_state_dict(kv))
    dev = FenceProbe(512 << 10)
    heap = Heap.create(dev, KV(), log_size=4 << 10, undo_size=64 << 10,
                       initial_size=256 << 10)
    pool = heap.pool
    OpLog.format(dev, pool.oplog_off, pool.oplog_size)
    fg = OpLog(dev, pool.oplog_off, pool.oplog_size)
    shadow_log = OpLog(dev, pool.oplog_off, pool.oplog_size)
    ap = Applier(heap, shadow_log, max_batch=17)
    lone_padding = []
    read = shadow_log.read

    def counting_read(pos: int):
        r = read(pos)
        if r is not None and r[0] is None:
            lone_padding.append(pos)
        return r

    shadow_log.read = counting_read
    rng = random.Random(3)
    prog = {"acked": 0, "submitted": 0, "fences": 0, "checks": 0}

    def check(d: SimDevice, when: str) -> None:
        prog["fences"] += 1
        for s in range(3 if when == "before" else 1):
            img = d.crash_image(prog["fences"] * 10 + s)
            state, _ = recover_state(SimDevice.from_image(img))
            n = state.n
            assert prog["acked"] <= n <= prog["submitted"], (when, prog, n)
            assert canon(_state_dict(state)) == expected[n], (when, prog, n)
            prog["checks"] += 1

    def drive_shadow() -> None:
        if not ap.step():
            ap.commit()

    def wait_for_space() -> None:
        if big:
            fg.commit()  # (what was appended: a padding marker, alone)
        drive_shadow()

    dev.check = check
    i = 0
    while i < n_ops:
        k = min(rng.randrange(1, max_group + 1), n_ops - i)
        payloads = [encode(op(j)) for j in range(i, i + k)]
        prog["submitted"] = i + k
        fg.append(payloads[0] if k == 1 else encode_group(payloads), wait=wait_for_space)
        fg.commit()
        i += k
        prog["acked"] = i
        for _ in range(rng.randrange(3)):
            drive_shadow()
    while ap.step():
        pass
    ap.commit()
    dev.check = None
    assert ap.c.batches >= 5  # several shadow batches
    assert ap.c.committed_ops == n_ops  # every operation counted once, groups included
    assert fg.head > 4 * fg.capacity  # wrapped around the log several times
    assert bool(lone_padding) == big, lone_padding
    assert prog["fences"] > n_ops and prog["checks"] > 3 * n_ops
    state, _ = recover_state(SimDevice.from_image(dev.persisted_image()))
    assert canon(_state_dict(state)) == expected[n_ops]


if __name__ == "__main__":  # pragma: no cover - the long run
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    path = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                        f"persimmon-crash-{os.getpid()}.pool")
    try:
        print(run_sigkill_iterations(path, n, seed=int(time.time())))
    finally:
        if os.path.exists(path):
            os.unlink(path)
