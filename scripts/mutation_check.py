"""Mutation check of the persistence layer: remove each persist step in turn, run the crash
tests against the mutant, and fail when one survives.

    python scripts/mutation_check.py                 # every mutant (Python and C)
    python scripts/mutation_check.py --python-only   # skip the C mutants (no rebuild)
    python scripts/mutation_check.py --list          # the mutants, nothing run
    python scripts/mutation_check.py --only undolog  # mutants whose id contains the text

A *persist step* is a flush, fence (drain) or persist call in a device user (undolog, oplog,
pool, heap's commit, the base Device's persist), a listing of blocks for the flush at commit
(heap's ``_logged``/``_fresh``), and the compiled paths' equivalents in ``_speedups.c`` (the
undo entry's flush and fence in ``undo_append``, the listing of logged blocks, of an entry's
blocks and of a reused chunk). Each is found in the source by pattern, so a new step is
checked without editing this file. A mutant is the tree with that one statement removed; the
Python mutants run the crash tests with ``PERSIMMON_PURE_PYTHON=1`` (the Python path is then
the one taken), and, if none fails, compiled (a line reached only beside the compiled
module); the C mutants rebuild the extension in a temporary copy and run them compiled. The
crash tests run in a fixed order with ``-x``; the first that fails names the catcher.

A step that is redundant on purpose carries a comment ``# mutation: redundant (<why>; proved
by tests/<file>::<test>)`` (C: ``/* mutation: redundant ... */``) on its line: its surviving
mutant is accepted if that test passes on the unmutated tree.  Exit status 1 when any other
mutant survives.  The table (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join("src", "persimmon")

CRASH_TESTS = [
    "tests/test_recovery_crash.py",
    "tests/test_oplog.py::test_crash_at_every_fence_keeps_a_prefix_with_all_committed",
    "tests/test_runtime_crash.py::test_crash_at_every_fence_of_runtime_workload",
    "tests/test_heap_crash.py::test_crash_at_every_fence_recovers_a_committed_state",
    "tests/test_heap_crash.py::test_crash_at_every_fence_of_a_big_table_probed_in_the_pool",
    "tests/test_heap_crash.py::test_repeated_crashes_each_recovered_and_continued",
    "tests/test_group_commit.py::test_the_shadow_commits_only_between_entries",
    # the salvage of damaged free space at open: its repair must reach the durable image
    "tests/test_heap_salvage.py",
]

# Python: the device users; a call of flush/drain/persist that is a whole statement
PY_FILES = ["undolog.py", "oplog.py", "pool.py", "heap.py", "allocator.py", "writeset.py",
            "refcounts.py", "graphwalk.py", "hashtable.py", "device.py"]
PY_CALL = re.compile(r"^(\s*)((self\.)?(dev\.)?(flush|drain|persist)\(.*\))\s*(#.*)?$")
PY_LIST = re.compile(r"^(\s*)(self\._(logged|fresh)\.(append|extend)\(.*\))\s*(#.*)?$")
# device.py: only the base class's persist (flush then drain), which the simulator uses; the
# libpmem and msync devices' bodies are what a flush *is* on real hardware, which a
# simulated power failure cannot observe (docs/crashtest.md).
DEVICE_SCOPE = ("class Device", "class MsyncDevice")

# C: (what the step is, pattern, replacement)
C_RULES = [
    ("the undo entry's flush", r'PyObject_CallMethod\(udev, "flush", "LL", at, 64LL\)',
     "Py_NewRef(Py_None)"),
    ("the undo entry's fence", r"PyObject_CallMethodNoArgs\(udev, s_drain\)",
     "Py_NewRef(Py_None)"),
    ("a logged block listed for the commit flush", r"PyList_Append\(h->logged, bk\) < 0", "0"),
    ("an entry's block listed for the commit flush", r"PyList_Append\(h->logged, k\)", "0"),
    ("a reused chunk listed for the commit flush", r"PyList_Append\(h->fresh, t\)", "0"),
]

REDUNDANT = re.compile(r"mutation: redundant \((.*?);\s*proved by (tests/\S+?)\)")


@dataclass
class Mutant:
    ident: str
    file: str  # relative to src/persimmon
    line: int  # 1-based
    what: str
    new_text: str  # the replacement line
    kind: str  # "py" or "c"
    redundant: tuple[str, str] | None = None


def _function_at(lines: list[str], i: int) -> str:
    for j in range(i, -1, -1):
        m = re.match(r"\s*def (\w+)|\s*(?:static )?\w[\w\s\*]*?\b(\w+)\(.*\)\s*\{\s*$", lines[j])
        if m:
            return m.group(1) or m.group(2)
        # a C function whose parameters continue on the next lines
        m = re.match(r"static \w[\w\s\*]*?\b(\w+)\([^)]*,\s*$", lines[j])
        if m:
            return m.group(1)
    return "?"


def discover() -> list[Mutant]:
    out: list[Mutant] = []
    for name in PY_FILES:
        path = os.path.join(ROOT, PKG, name)
        lines = open(path).read().split("\n")
        in_scope = name != "device.py"
        for i, line in enumerate(lines):
            if name == "device.py":
                if line.startswith(DEVICE_SCOPE[0]):
                    in_scope = True
                elif line.startswith("class ") or line.startswith("def "):
                    in_scope = False
            if not in_scope:
                continue
            m = PY_CALL.match(line) or PY_LIST.match(line)
            if not m:
                continue
            indent, stmt = m.group(1), m.group(2)
            red = REDUNDANT.search(line) or (i and REDUNDANT.search(lines[i - 1]))
            func = _function_at(lines, i)
            out.append(Mutant(f"{name[:-3]}:{i + 1}", name, i + 1,
                              f"{func}: `{stmt}` removed", indent + "pass  # MUTANT", "py",
                              red.groups() if red else None))
    cpath = os.path.join(ROOT, PKG, "_speedups.c")
    clines = open(cpath).read().split("\n")
    for what, pat, repl in C_RULES:
        for i, line in enumerate(clines):
            if re.search(pat, line):
                red = REDUNDANT.search(line)
                func = _function_at(clines, i)
                out.append(Mutant(f"_speedups.c:{i + 1}", "_speedups.c", i + 1,
                                  f"{func}: {what} removed", re.sub(pat, repl, line), "c",
                                  red.groups() if red else None))
    return out


def _tree(tmp: str, m: Mutant) -> str:
    """A copy of src/ (and setup.py) with the mutant applied; returns its src path."""
    src = os.path.join(tmp, "src")
    shutil.copytree(os.path.join(ROOT, "src"), src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    path = os.path.join(src, "persimmon", m.file)
    lines = open(path).read().split("\n")
    lines[m.line - 1] = m.new_text
    with open(path, "w") as f:
        f.write("\n".join(lines))
    if m.kind == "c":
        shutil.copy(os.path.join(ROOT, "setup.py"), tmp)
        shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp)
        for so in os.listdir(os.path.join(src, "persimmon")):
            if so.startswith("_speedups") and so.endswith(".so"):
                os.unlink(os.path.join(src, "persimmon", so))
        r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=tmp, capture_output=True, text=True)
        built = [f for f in os.listdir(os.path.join(src, "persimmon"))
                 if f.startswith("_speedups") and f.endswith(".so")]
        if r.returncode != 0 or not built:
            raise RuntimeError(f"{m.ident}: the mutant does not build:\n{r.stderr[-2000:]}")
    return src


def run_tests(src: str, pure: bool, tests: list[str], timeout: float) -> tuple[str | None, str]:
    """(the first failing test or None, the tail of the output)."""
    env = dict(os.environ, PYTHONPATH=src)
    env.pop("PERSIMMON_PURE_PYTHON", None)
    if pure:
        env["PERSIMMON_PURE_PYTHON"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "(timeout)", ""
    out = r.stdout + r.stderr
    m = re.search(r"^FAILED (\S+)", out, re.M) or re.search(r"^ERROR (\S+)", out, re.M)
    if m:
        return m.group(1), out[-1500:]
    if r.returncode not in (0, 5):
        return "(pytest exit %d)" % r.returncode, out[-1500:]
    return None, out[-300:]


def check_fast_module_used(src: str) -> None:
    env = dict(os.environ, PYTHONPATH=src)
    env.pop("PERSIMMON_PURE_PYTHON", None)
    r = subprocess.run([sys.executable, "-c", "import persimmon.heap as h; print(h.FAST.__file__)"],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    if not r.stdout.strip().startswith(src):
        raise RuntimeError(f"the rebuilt module is not the one imported: {r.stdout}{r.stderr}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python-only", action="store_true")
    ap.add_argument("--c-only", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--tests", nargs="+", default=CRASH_TESTS,
                    help="the tests to run against each mutant (default: the crash tests)")
    a = ap.parse_args(argv)
    mutants = [m for m in discover() if a.only in m.ident or a.only in m.what]
    if a.python_only:
        mutants = [m for m in mutants if m.kind == "py"]
    if a.c_only:
        mutants = [m for m in mutants if m.kind == "c"]
    if a.list:
        for m in mutants:
            print(f"{m.ident:22} {m.what}")
        return 0
    rows = []
    survivors = 0
    t_all = time.monotonic()
    for n, m in enumerate(mutants, 1):
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="persimmon-mutant-") as tmp:
            src = _tree(tmp, m)
            if m.kind == "c":
                check_fast_module_used(src)
            caught, tail = run_tests(src, m.kind == "py", a.tests, a.timeout)
            if caught is None and m.kind == "py":
                # a Python line reached only beside the compiled module (append_group's
                # flush after the C write): the compiled run
                caught, tail = run_tests(src, False, a.tests, a.timeout)
                if caught is not None:
                    caught += " (compiled)"
        verdict = "caught"
        if caught is None:
            if m.redundant:
                why, test = m.redundant
                ok, _ = run_tests(os.path.join(ROOT, "src"), m.kind == "py", [test], a.timeout)
                verdict = f"redundant ({why}; {test} {'passes' if ok is None else 'FAILS'})"
                if ok is not None:
                    survivors += 1
            else:
                verdict = "SURVIVED"
                survivors += 1
        dt = time.monotonic() - t0
        print(f"[{n}/{len(mutants)}] {m.ident} {verdict} by {caught} ({dt:.0f} s)",
              file=sys.stderr, flush=True)
        rows.append((m, verdict, caught, dt))
    print("| mutant | step removed | result | caught by |")
    print("| --- | --- | --- | --- |")
    for m, verdict, caught, _dt in rows:
        print(f"| `{m.ident}` | {m.what} | {verdict} | {caught or '-'} |")
    print(f"\n{len(rows)} mutants, {survivors} surviving; {time.monotonic() - t_all:.0f} s",
          flush=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
