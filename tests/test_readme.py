"""The examples in README.md run as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_examples_run_and_recover(tmp_path):
    blocks = [b for b in _blocks() if "persimmon_tapir" not in b]
    assert len(blocks) >= 2
    for i, code in enumerate(blocks):
        pools = re.findall(r'"(/dev/shm/[^"]+\.pool)"', code)
        uniq = {p: str(tmp_path / f"{i}-{os.path.basename(p)}") for p in pools}
        for old, new in uniq.items():
            code = code.replace(old, new)
        script = tmp_path / f"example{i}.py"
        script.write_text(code)
        first = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               timeout=120, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        second = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                timeout=120, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        if i == 0:
            assert first.stdout.split() == ["42", "recovered:", "False"]
            assert second.stdout.split() == ["42", "recovered:", "True"]
        if i == 1:
            assert first.stdout.split() == ["8", "False", "3"]
            assert second.stdout.split() == ["16", "True", "3"]


def _code_lines(path: str) -> int:
    """Lines of code: not blank, not a comment, not part of a docstring."""
    import ast

    src = open(path, encoding="utf-8").read()
    docs: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i, line in enumerate(src.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in docs)


def test_the_port_line_count_in_readme_and_docs_is_true():
    n = _code_lines(os.path.join(ROOT, "src", "persimmon_redis", "persistence.py"))
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    doc = open(os.path.join(ROOT, "docs", "redis.md"), encoding="utf-8").read()
    assert f"**{n} lines of code**" in readme
    assert f"({n} lines of code" in doc


def test_readme_tapir_example_survives_a_cluster_restart():
    import shutil
    import signal
    import time

    (block,) = [b for b in _blocks() if "persimmon_tapir" in b]
    d = f"/dev/shm/tapir-readme-{os.getpid()}"
    code = block.replace("/dev/shm/my-tapir", d)
    cmd = [sys.executable, "-m", "persimmon_tapir", "cluster", "--shards", "2", "--dir", d]
    outputs = []
    try:
        for _ in range(2):
            cluster = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                while not os.path.exists(os.path.join(d, "cluster.json")):
                    time.sleep(0.05)
                run = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, timeout=120)
                assert run.returncode == 0, run.stderr
                outputs.append(run.stdout.split())
            finally:
                cluster.send_signal(signal.SIGTERM)
                cluster.wait(60)
        assert outputs == [["1", "True"], ["2", "True"]]
    finally:
        time.sleep(0.1)
        shutil.rmtree(d, ignore_errors=True)


def test_the_tapir_port_line_count_in_readme_and_docs_is_true():
    n = _code_lines(os.path.join(ROOT, "src", "persimmon_tapir", "persistence.py"))
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    doc = open(os.path.join(ROOT, "docs", "tapir.md"), encoding="utf-8").read()
    assert f"`src/persimmon_tapir/persistence.py` — **{n} lines of code**" in readme
    assert f"**{n} lines of code**" in doc
