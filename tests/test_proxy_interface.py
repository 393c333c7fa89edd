"""The interface between the proxies and the heap (issue 26): proxies.py uses of a heap only
the members declared in persimmon.proxyheap.ProxyHeap, all public, and Heap provides them;
the heap's modules use of the proxies only the public names of proxies.py (its section "For
the heap"), never a private attribute of a proxy.  Read from the source with ``ast``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import persimmon
from persimmon import proxies
from persimmon.heap import Heap
from persimmon.proxyheap import ProxyHeap

SRC = Path(persimmon.__file__).parent
# The modules that make up the heap (Heap and what it is assembled from)
HEAP_MODULES = ("heap", "allocator", "writeset", "refcounts", "hashtable", "dramindex",
                "convert")


def _declared() -> set[str]:
    return {n for n in vars(ProxyHeap) if not n.startswith("_")} | set(
        ProxyHeap.__annotations__)


def _heap_names(fn: ast.AST) -> set[str]:
    """Local names in ``fn`` bound to a heap: parameters ``h``/``heap`` and names assigned
    from ``self._h`` or ``_get_h(...)``."""
    names = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.arg) and n.arg in ("h", "heap"):
            names.add(n.arg)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(
                n.targets[0], ast.Name):
            v = n.value
            if (isinstance(v, ast.Attribute) and v.attr == "_h") or (
                    isinstance(v, ast.Call) and isinstance(v.func, ast.Name)
                    and v.func.id == "_get_h"):
                names.add(n.targets[0].id)
    return names


def _heap_uses_in_proxies() -> list[tuple[int, str]]:
    tree = ast.parse((SRC / "proxies.py").read_text())
    uses = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        heaps = _heap_names(fn)
        for n in ast.walk(fn):
            if not isinstance(n, ast.Attribute):
                continue
            v = n.value
            if (isinstance(v, ast.Name) and v.id in heaps) or (
                    isinstance(v, ast.Attribute) and v.attr == "_h"):
                uses.append((n.lineno, n.attr))
    return uses


def test_the_proxies_use_only_the_declared_heap_members():
    uses = _heap_uses_in_proxies()
    assert len(uses) > 50  # (the scan finds them: a scan that finds nothing proves nothing)
    declared = _declared()
    bad = [(line, a) for line, a in uses if a not in declared]
    assert not bad, f"proxies.py uses heap members ProxyHeap does not declare: {bad}"
    assert not [a for a in declared if a.startswith("_")]


def test_the_scan_sees_a_private_heap_member():
    src = "def f(self):\n    h = self._h\n    return h._ix.get(1), self._h._load(2)\n"
    fn = ast.parse(src).body[0]
    heaps = _heap_names(fn)
    found = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute) and (
        (isinstance(n.value, ast.Name) and n.value.id in heaps)
        or (isinstance(n.value, ast.Attribute) and n.value.attr == "_h"))}
    assert found == {"_ix", "_load"}


def test_the_heap_provides_the_declared_members(tmp_path):
    heap = Heap.create(str(tmp_path / "p"), {"a": [1]}, initial_size=1 << 20)
    try:
        assert isinstance(heap, ProxyHeap)
        for name in _declared():
            assert hasattr(heap, name), name
            want = getattr(ProxyHeap, name, None)
            if callable(want):
                got = inspect.signature(getattr(Heap, name))
                assert list(got.parameters) == list(inspect.signature(want).parameters), name
    finally:
        heap.close()


def _private_uses_outside_self(mod: str) -> list[tuple[int, str]]:
    """``x._name`` in module ``mod`` where ``x`` is not ``self``, ``cls``, the heap being
    built in Heap's own constructors (``heap``) or the layout module (``L``)."""
    tree = ast.parse((SRC / f"{mod}.py").read_text())
    own = {"self", "cls", "heap", "L"}
    out = []
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and n.attr.startswith("_")
                and not n.attr.startswith("__")
                and not (isinstance(n.value, ast.Name) and n.value.id in own)):
            out.append((n.lineno, ast.unparse(n)))
    return out


def test_the_heap_uses_no_private_member_of_the_proxies():
    mods = [m for m in HEAP_MODULES if (SRC / f"{m}.py").exists()]
    assert "heap" in mods
    bad = {m: u for m in mods if (u := _private_uses_outside_self(m))}
    assert not bad, f"private members used across classes: {bad}"
    # and what they use of the proxies module is public
    for m in mods:
        tree = ast.parse((SRC / f"{m}.py").read_text())
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and n.value.id == "px"}
        assert not [u for u in used if u.startswith("_")], m
        assert used <= set(dir(proxies)), m
