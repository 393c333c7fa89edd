"""scripts/mutation_check.py: it finds every kind of persist step, a crash test catches the
rollback's fence removed, and a mutant that survives fails the check."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "mutation_check.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_it_lists_every_kind_of_persist_step():
    r = _run("--list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for needle in ["rollback: `self.dev.drain()`", "rollback: `flush(a, 32)`",
                   "_log_block_python: `dev.flush(pos, 64)`",
                   "commit: `dev.persist(self._head_at, 8)`", "commit: `dev.drain()`",
                   "write_commit: `self.dev.persist(off, 64)`",
                   "clear_torn_record:", "set_tail:", "persist: `self.drain()`",
                   "_log_blocks: `self._logged.append(b)`", "undo_append: the undo entry's fence",
                   "h_list_for_flush:", "h_alloc: a reused chunk"]:
        assert any(needle in ln for ln in lines), needle
    assert len(lines) >= 35


def test_the_rollback_fence_mutant_is_caught_and_a_survivor_fails_the_check():
    r = _run("--only", "rollback: `self.dev.drain()`")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| caught | tests/test_recovery_crash.py::" in r.stdout
    assert "1 mutants, 0 surviving" in r.stdout
    # the same mutant against a test that cannot see it: it survives, the check fails
    r = _run("--only", "rollback: `self.dev.drain()`", "--tests", "tests/test_opcodec.py")
    assert r.returncode == 1 and "| SURVIVED |" in r.stdout, r.stdout + r.stderr
