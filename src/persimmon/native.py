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

API = 11  # the _speedups.API this tree was written against
# With the compiled module, a table of more entries than this whose keys are all bytes or
# str has no DRAM index: the module probes it in the pool (docs/heap.md, "DRAM index")
PROBE_OVER = 4096


def pure_python_requested() -> bool:
    """True when ``PERSIMMON_PURE_PYTHON`` asks for no compiled fast path (set, not "0")."""
    return os.environ.get("PERSIMMON_PURE_PYTHON", "0") not in ("", "0")


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
