"""``persimmon crashtest``: it finds the planted bugs and passes the README's KV."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), TESTS]))
    return subprocess.run([sys.executable, "-m", "persimmon.cli", "crashtest", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_finds_an_operation_that_reads_the_clock():
    r = _run("crashtest_examples:Stamped", "--ops", "crashtest_examples:stamped_ops",
             "--seconds", "5", "--seed", "11")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL [determinism] operation 1 (('put'," in r.stdout
    assert "not deterministic" in r.stdout and "--seed 11" in r.stdout


def test_finds_an_operation_that_depends_on_set_order():
    r = _run("crashtest_examples:Tags", "--ops", "crashtest_examples:tags_ops",
             "--seconds", "5", "--seed", "3")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL [hash order] operation 12 (('pick',))" in r.stdout
    assert "iteration order of a set" in r.stdout and "PM copy's order differs" in r.stdout


def test_passes_the_readme_kv_with_crashes_of_both_kinds():
    r = _run("examples.kv_example:KV", "--ops", "examples.kv_example:kv_ops",
             "--seconds", "6", "--seed", "5", "--n-ops", "300")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok: 300 operations, seed 5")
    counts = dict(part.rsplit(" ", 1) for part in
                  r.stdout.split("(", 1)[1].rstrip(")\n").split(", "))
    assert int(counts["power failures"]) >= 10 and int(counts["SIGKILLs"]) >= 3, r.stdout


def test_bad_usage_is_a_clear_error_with_status_2():
    r = _run("no_such_module:KV", "--ops", "examples.kv_example:kv_ops", "--seconds", "1")
    assert r.returncode == 2 and "cannot import 'no_such_module'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = _run("examples.kv_example", "--ops", "examples.kv_example:kv_ops")
    assert r.returncode == 2 and "MODULE:NAME" in r.stderr, r.stderr


def test_the_example_is_the_readme_s_kv():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    example = open(os.path.join(ROOT, "examples", "kv_example.py"), encoding="utf-8").read()
    cls = example[example.index("class KV:"):example.index("def kv_ops")].strip()
    assert cls in readme
    assert "persimmon crashtest examples.kv_example:KV --ops examples.kv_example:kv_ops" in readme


def test_finds_a_type_test_that_only_verify_mode_sees():
    r = _run("crashtest_examples:Typed", "--ops", "crashtest_examples:typed_ops",
             "--seconds", "5", "--seed", "3")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL [verify mode] operation 5 (('put', 'k5', 47))" in r.stdout
    assert "isinstance(x, dict), not type(x) is dict" in r.stdout


def test_finds_a_persistence_bug_in_persimmon_itself(tmp_path):
    # The rollback's fence removed (the mutant issue 23 started from): the README's KV
    # fails once a power failure hits the recovery from a power failure.
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "src"), src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    undo = src / "persimmon" / "undolog.py"
    text = undo.read_text()
    fence = "            flush(a, 32)\n        self.dev.drain()\n"
    assert fence in text
    undo.write_text(text.replace(fence, "            flush(a, 32)\n"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), TESTS]))
    r = subprocess.run([sys.executable, "-m", "persimmon.cli", "crashtest",
                        "examples.kv_example:KV", "--ops", "examples.kv_example:kv_ops",
                        "--seconds", "8", "--seed", "1", "--power-failures", "150",
                        "--no-progress"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL [power failure during recovery] operation " in r.stdout, r.stdout
    assert "--seed 1" in r.stdout
