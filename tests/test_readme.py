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
    blocks = _blocks()
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
            assert first.stdout.split() == ["6", "False", "2"]
            assert second.stdout.split() == ["12", "True", "2"]
