"""Kill points chosen, not hoped for: SIGKILL a process at a chosen step and sweep the steps.

A forked child arms ``persimmon.killpoints`` for one site (the write path, ``Heap.open``, the
rollback, the rebuild walk, the operation log's append-to-head-persist window), runs a
workload and SIGKILLs itself at step ``n``; the parent recovers the pool and checks it against
what the child reported as done (commits, acknowledged operations).  A first run counts the
site's steps; the sweep then kills at up to ``PER_SITE`` steps spread evenly over them
(``PERSIMMON_KILL_FULL=1``: every step).  The counts are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from heap_workload import canon, initial, native_state, op
from persimmon import killpoints
from persimmon.heap import Heap
from persimmon.psm import PSM, recover_state
from psm_apps import KV, expected_state, workload_op

FULL = os.environ.get("PERSIMMON_KILL_FULL") == "1"
# kills per site in CI: every step of the short windows (open, rollback), a spread of the
# long ones
PER_SITE = {"open": 150, "rollback": 150, "write": 60, "rebuild": 50, "oplog": 60}
if os.environ.get("PERSIMMON_KILL_PER_SITE"):
    PER_SITE = dict.fromkeys(PER_SITE, int(os.environ["PERSIMMON_KILL_PER_SITE"]))
BASE_OPS, PENDING, AFTER, BATCH = 30, 13, 21, 7


def _fork(body) -> tuple[int, list[str]]:
    """Run ``body(write)`` in a forked child; (its wait status, the lines it wrote)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            body(lambda s: os.write(w, s.encode() + b"\n"))
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks).decode().split()


def _base_pool(path: str) -> None:
    """A pool with BASE_OPS operations committed and PENDING more stored but never committed,
    left by a process that exits without closing it (so an open rolls them back)."""
    def body(say):
        h = Heap.create(path, initial(), undo_size=64 << 10, initial_size=256 << 10)
        for i in range(BASE_OPS + PENDING):
            op(h.root, i)
            h.end_op()
            if i + 1 == BASE_OPS:
                h.commit(BASE_OPS)
        say("ok")

    status, out = _fork(body)
    assert os.WIFEXITED(status) and out == ["ok"], (status, out)


def _heap_child(path: str, at: int, site: str):
    def body(say):
        killpoints.arm(at, [site])
        h = Heap.open(path)
        p = h.position
        say(f"open {p}")
        for i in range(p, p + AFTER):
            op(h.root, i)
            h.end_op()
            if (i + 1 - p) % BATCH == 0:
                h.commit(i + 1)
                say(f"commit {i + 1}")
        killpoints.disarm()
        h.close()
        say(f"steps {killpoints.steps()}")
    return body


def _sweep(total: int, site: str) -> list[int]:
    k = PER_SITE[site]
    if FULL or total <= k:
        return list(range(1, total + 1))
    return sorted({1 + (j * (total - 1)) // (k - 1) for j in range(k)})


_EXP: dict[int, object] = {}


def _exp(n: int) -> object:
    if n not in _EXP:
        _EXP[n] = canon(native_state(n))
    return _EXP[n]


@pytest.mark.parametrize("site", ["write", "open", "rollback", "rebuild"])
def test_sigkill_at_each_step_of_a_heap_site(shm_path, site):
    base = shm_path + ".base"
    try:
        _base_pool(base)
        shutil.copyfile(base, shm_path)
        status, out = _fork(_heap_child(shm_path, 0, site))
        assert os.WIFEXITED(status) and out[-2] == "steps", out
        total = int(out[-1])
        assert total > 20, (site, total)
        points = _sweep(total, site)
        kills = 0
        for at in points:
            shutil.copyfile(base, shm_path)
            status, out = _fork(_heap_child(shm_path, at, site))
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                site, at, status, out)
            kills += 1
            done = BASE_OPS
            opened = False
            for word, val in zip(out[::2], out[1::2], strict=True):
                opened |= word == "open"
                if word == "commit":
                    done = int(val)
            h = Heap.open(shm_path)
            try:
                p = h.position
                where = f"{site} step {at} of {total} ({' '.join(out)})"
                # every commit reported is there; at most the batch in flight beyond it
                assert done <= p <= done + BATCH and (opened or p == BASE_OPS), (where, p)
                assert canon(h.materialize()) == _exp(p), where
                h.check()
            finally:
                h.close()
        print(f"kill points [{site}]: {total} steps, {kills} SIGKILLs")
        assert kills == len(points) and kills >= min(total, PER_SITE[site])
    finally:
        if os.path.exists(base):
            os.unlink(base)


R_OPS = 24


def _psm_child(path: str, at: int):
    def body(say):
        p = PSM(KV, path, log_size=256 << 10, lock_timeout=10)
        say(f"shadow {p.shadow_pid}")
        killpoints.arm(at, ["oplog"])
        i = 0
        while i < R_OPS:
            if i < R_OPS // 2:  # an entry per operation, then groups of 3 (commit=False)
                p.invoke_rw(workload_op(i))
                i += 1
            else:
                for j in range(i, i + 3):
                    p.invoke_rw(workload_op(j), commit=False)
                p.commit()
                i += 3
            say(f"ack {i}")
        killpoints.disarm()
        say(f"steps {killpoints.steps()}")
        p.close()
    return body


def test_sigkill_at_each_step_between_log_append_and_head_persist(shm_path):
    status, out = _fork(_psm_child(shm_path, 0))
    assert os.WIFEXITED(status) and out[-2] == "steps", out
    total = int(out[-1])
    os.unlink(shm_path)
    assert total > 100, total
    # (the foreground's steps vary a little with the shadow's timing: whether a commit finds
    # it asleep and rings the doorbell; the sweep stays inside the steps every run has)
    points = [at for at in _sweep(total, "oplog") if at <= total * 9 // 10]
    for at in points:
        status, out = _fork(_psm_child(shm_path, at))
        shadow = int(out[1])
        try:  # the shadow dies with it ("both"): nothing writes the pool while we read it
            os.kill(shadow, signal.SIGKILL)
        except ProcessLookupError:
            pass
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (at, out)
        acked = max([int(v) for w, v in zip(out[::2], out[1::2], strict=True) if w == "ack"],
                    default=0)
        state, _ = recover_state(shm_path)
        where = f"oplog step {at} of {total} (acked {acked})"
        assert acked <= state.n <= R_OPS, (where, state.n)
        assert {"data": state.data, "n": state.n} == expected_state(state.n), where
        os.unlink(shm_path)
    print(f"kill points [oplog]: {total} steps, {len(points)} SIGKILLs")


def test_disarmed_kill_points_install_nothing():
    import sys

    assert sys.gettrace() is None or "killpoints" not in repr(sys.gettrace())
    killpoints.arm(0, ["rollback"])
    try:
        assert sys.gettrace() is killpoints._call
    finally:
        killpoints.disarm()
    assert sys.gettrace() is None
    with pytest.raises(ValueError, match="unknown kill-point site"):
        killpoints.arm(1, ["nowhere"])


S_OPS = 40


def _shadow_child(path: str, at: int):
    """A PSM whose first shadow is killed at step ``at`` of its write path and commits (the
    watchdog starts another, which rolls back and carries on); the foreground syncs."""
    def body(say):
        killpoints.arm(at, ["write", "open", "rollback"], role="child")
        p = PSM(KV, path, log_size=256 << 10, lock_timeout=10, shadow_idle=False,
                max_batch=6)
        for i in range(S_OPS):
            p.invoke_rw(workload_op(i))
        p.sync(timeout=60)
        say(f"restarts {p.stats()['shadow_restarts']}")
        say(f"steps {killpoints.steps()}")
        p.close()
        say("closed 1")
    return body


def test_sigkill_the_shadow_at_each_step_of_its_write_path(shm_path):
    status, out = _fork(_shadow_child(shm_path, 0))
    assert os.WIFEXITED(status) and out[:2] == ["restarts", "0"], out
    total = int(out[3])
    os.unlink(shm_path)
    assert total > 200, total
    # (the shadow's batches, so its commits' steps, vary with timing: the sweep stays well
    # inside the steps every run has)
    span = total * 8 // 10
    k = 25 if not FULL else span
    points = sorted({1 + (j * (span - 1)) // (k - 1) for j in range(k)})
    for at in points:
        status, out = _fork(_shadow_child(shm_path, at))
        assert os.WIFEXITED(status) and out[:2] == ["restarts", "1"], (at, out)
        assert out[-2:] == ["closed", "1"], (at, out)
        h = Heap.open(shm_path)  # the new shadow applied and committed everything
        try:
            assert h.position > 0
            st = h.materialize()
            assert {"data": dict(st.data), "n": st.n} == expected_state(S_OPS), at
            h.check()
        finally:
            h.close()
        os.unlink(shm_path)
    print(f"kill points [shadow write/open/rollback]: {total} steps, {len(points)} SIGKILLs")
