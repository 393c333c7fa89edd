"""Settings that change what the state machine does, kept in the state itself (the
``\x00datacfg`` operation that sets them is in ``cmds/datacfg.py``).

``stream-node-max-entries`` (where a stream starts a new node, which approximate trimming
removes whole) and ``hll-sparse-max-bytes`` (when a HyperLogLog turns dense) decide the
result of XADD/XTRIM and PFADD/PFMERGE.  So CONFIG SET of them is a logged operation
(``\\x00datacfg name value``) that stores the value on the state: the shadow applies it in
its place in the log, and the PM copy trims and promotes exactly as the DRAM copy did.
"""

from __future__ import annotations

from typing import Any

from .replies import RError

# CONFIG name -> (state attribute, default)
SETTINGS: dict[bytes, tuple[str, int]] = {
    b"stream-node-max-entries": ("stream_node_max", 100),
    b"stream-node-max-bytes": ("stream_node_max_bytes", 4096),
    b"hll-sparse-max-bytes": ("hll_sparse_max_bytes", 3000),
}


def get(state: Any, name: bytes) -> int:
    attr, default = SETTINGS[name]
    return getattr(state, attr, default)


def parse(name: bytes, value: bytes) -> int:
    """A setting's value (Redis's error for a bad one)."""
    try:
        v = int(value)
    except ValueError:
        v = -1
    if v < 0 or v >= 1 << 63 or not value.isdigit():
        raise RError(f"ERR Invalid argument '{value.decode('utf-8', 'replace')}' for CONFIG "
                     f"SET '{name.decode()}' - argument couldn't be parsed into an integer")
    return v
