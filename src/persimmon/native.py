"""The one loader of the compiled fast paths (``persimmon._speedups``, built from
``_speedups.c``; docs/heap.md, "The compiled fast paths").

:data:`FAST` is the module, configured with the pool layout's tables, or None: when it was
not built, when ``PERSIMMON_PURE_PYTHON`` is set (not "0"), or when it is not the build this
tree expects (another API number or other layout constants: a stale build left behind by an
editable install).  Everything that has a compiled twin (the heap, the proxies, the op log,
the op codec, the shadow's apply loop) takes it from here; the Python code is the reference
the compiled code is held to.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from . import layout as L

API = 15  # the _speedups.API this tree was written against
# With the compiled module, a table of more entries than this whose keys are all bytes or
# str has no DRAM index: the module probes it in the pool (docs/heap.md, "DRAM index")
PROBE_OVER = 4096


def pure_python_requested() -> bool:
    """True when ``PERSIMMON_PURE_PYTHON`` asks for no compiled fast path (set, not "0")."""
    return os.environ.get("PERSIMMON_PURE_PYTHON", "0") not in ("", "0")


# ---------------------------------------------------------------------------- contract
# What the compiled module reads of Python objects by name.  The heap's and the undo log's
# attributes are read from their instance dicts (docs/heap.md), and the module declines
# (takes the Python path, silently: nothing fails, it only gets slower) when one is missing
# or of another type.  So the names are declared here, once, with the exact type the module
# requires where it checks one (None: any value); the module exports the names it reads
# (``_speedups.CONTRACT``), compared with these at load, and every Heap is checked against
# them when it is built (:func:`check_heap`), so a rename fails at once.
HEAP_ATTRS: dict[str, type | None] = {
    "_fresh_big": list, "_writable": bool, "_ctop": int, "_top": int, "_nolog": set,
    "_logged": list, "_freelists": list, "_fresh": list, "_rc": dict, "_deferred": list,
    "undo": None, "buf": None, "dev": None, "table_indexes": dict, "_ix_adds": int,
    "_ix_budget": int, "index_limit": int, "live_proxies": dict, "proxy_parents": dict,
    "fast": None, "_conv": list, "_opaque": dict, "_zero": list, "_memo": dict,
}
HEAP_METHODS = ("decref", "_ix_add", "_ix_probed", "load", "end_op")
UNDO_ATTRS: dict[str, type | None] = {
    "_persists": bool, "_entry_fence": bool, "dev": None, "_pos": int, "_end": int,
    "batch": int, "count": int, "_bmix": int,
}
DEVICE_ATTRS = ("size", "buf", "flush", "drain")
PROXY_CLASS_ATTRS = ("_own", "_dc")  # of the proxy classes (proxies.PObject and subclasses)
PROXY_SLOTS = ("_h", "_o", "_ad")  # __slots__ members of proxies.Proxy / PObject
# The fields of ``_speedups.ApplyContext``, the context of the shadow's compiled apply loop
# (``apply_run(ctx, pos, head, limit, in_batch)``): its keyword arguments and members
APPLY_CONTEXT = ("dev", "data", "cap", "apply", "apply_op", "root", "heap", "loads",
                 "max_batch", "threshold", "undo", "raised", "end_failed")


def contract() -> dict[str, tuple[str, ...]]:
    """The declaration above in the form ``_speedups.CONTRACT`` exports it."""
    return {"heap": tuple(HEAP_ATTRS), "heap_methods": HEAP_METHODS,
            "undo": tuple(UNDO_ATTRS), "device": DEVICE_ATTRS,
            "proxy_class": PROXY_CLASS_ATTRS, "proxy_slots": PROXY_SLOTS,
            "apply_context": APPLY_CONTEXT}


class ContractError(RuntimeError):
    """An object the compiled module reads lacks an attribute it relies on (a rename in
    Python that the declaration in persimmon.native and ``_speedups.c`` did not follow)."""


def _check_attrs(what: str, obj: Any, attrs: dict[str, type | None]) -> list[str]:
    d = getattr(obj, "__dict__", None)
    if type(d) is not dict:
        return [f"{what} has no instance dict"]
    bad = []
    for name, want in attrs.items():
        if name not in d:
            bad.append(f"{what}.{name} is missing from its instance dict")
        elif want is not None and type(d[name]) is not want:
            bad.append(f"{what}.{name} is a {type(d[name]).__name__}, not a {want.__name__}")
    return bad


def check_heap(heap: Any) -> None:
    """Raise :class:`ContractError` unless ``heap`` (a Heap just built), its undo log and
    its device have everything the compiled module reads (whether the module is loaded or
    not: the declaration is held to the Python classes in both modes)."""
    bad = _check_attrs(type(heap).__name__, heap, HEAP_ATTRS)
    bad += [f"{type(heap).__name__}.{m} is not a method" for m in HEAP_METHODS
            if not callable(getattr(type(heap), m, None))]
    undo = getattr(heap, "__dict__", {}).get("undo")
    if undo is not None:
        bad += _check_attrs(type(undo).__name__, undo, UNDO_ATTRS)
    for dev in {id(x): x for x in (getattr(heap, "dev", None), getattr(undo, "dev", None))
                if x is not None}.values():
        bad += [f"{type(dev).__name__}.{a} is missing" for a in DEVICE_ATTRS
                if not hasattr(dev, a)]
    if bad:
        raise ContractError("the compiled fast paths rely on attributes this heap lacks "
                            "(update persimmon.native's declaration and _speedups.c "
                            "together): " + "; ".join(bad))


def check_proxy_class(pcls: type) -> None:
    """Raise :class:`ContractError` unless the proxy class ``pcls`` has the class
    attributes the compiled ``__getattribute__`` looks up."""
    bad = [a for a in PROXY_CLASS_ATTRS if not hasattr(pcls, a)]
    if bad:
        raise ContractError(f"proxy class {pcls.__name__} lacks {', '.join(bad)}, which "
                            "the compiled fast paths read")


def _constants() -> dict[str, int]:
    """The layout constants compiled into the module, as this tree defines them."""
    return {"T_STR": L.T_STR, "T_BYTES": L.T_BYTES, "HT_NENT": L.HT_NENT,
            "HT_ITAB": L.HT_ITAB, "HT_ENTS": L.HT_ENTS, "PROBE_OVER": PROBE_OVER,
            "DUMMY": L.DUMMY, "PERTURB_SHIFT": L.PERTURB_SHIFT,
            "VALUE_TYPES": sum(1 << t for t in L.VALUE_TYPES)}


def configure(mod: Any) -> Any:
    """``mod`` configured with the layout's tables, or None (with a warning) when it is not
    the build this tree expects: a stale build left behind by an editable install whose C
    source changed since (``pip install -e .`` again rebuilds it)."""
    if getattr(mod, "API", None) != API or any(
            getattr(mod, k, None) != v for k, v in _constants().items()):
        warnings.warn(f"persimmon: ignoring the compiled fast path {mod!r} (API "
                      f"{getattr(mod, 'API', None)}, expected {API}, or layout constants "
                      "other than this tree's: rebuild it with pip install); the heap runs "
                      "in Python", RuntimeWarning, stacklevel=2)
        return None
    theirs = getattr(mod, "CONTRACT", None)
    if theirs != contract():
        warnings.warn(f"persimmon: ignoring the compiled fast path {mod!r}: the attributes "
                      f"it reads ({theirs}) are not the ones persimmon.native declares "
                      f"({contract()}); update both together", RuntimeWarning, stacklevel=2)
        return None
    import xxhash
    from xxhash import xxh3_64_intdigest, xxh32_intdigest

    # The library file of the xxhash package's extension: the module calls the xxHash
    # functions it exports directly when they give what these Python functions give.
    lib = getattr(getattr(xxhash, "_xxhash", None), "__file__", None)
    try:
        mod.configure(L._SMALL_TABLE, L.CLASS_SIZES, L.LEAVES, xxh3_64_intdigest,
                      xxh32_intdigest, lib)
    except (RuntimeError, ValueError):  # a big-endian machine, or tables it cannot hold
        return None
    return mod


def _load() -> Any:
    if pure_python_requested():
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return configure(_speedups)


FAST: Any = _load()


def commit_writer_type() -> Any:
    """``persimmon._commitio.Writer`` (``_commitio.c``: a disk pool's group commits written
    by a thread that never takes the GIL), or None when it was not built or
    ``PERSIMMON_PURE_PYTHON`` is set (a server then overlaps its commits with a Python
    thread: docs/device.md)."""
    if pure_python_requested():
        return None
    try:
        from ._commitio import Writer
    except ImportError:
        return None
    return Writer


def writeback_module() -> Any:
    """``persimmon._writeback`` (``_writeback.c``: the per-range loops of a disk pool's
    write-back), or None when it was not built or ``PERSIMMON_PURE_PYTHON`` is set (then
    their pure-Python twins in :mod:`persimmon.filedevice` run)."""
    if pure_python_requested():
        return None
    try:
        from . import _writeback
    except ImportError:
        return None
    return _writeback
