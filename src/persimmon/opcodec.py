"""How an operation is written into the operation log, and read back.

An entry payload is one tag byte then the body:

* ``B`` + raw bytes: the operation is a ``bytes`` object (no pickling at all);
* ``P`` + pickle: any other picklable operation;
* ``V`` + pickle of ``(op, result_digest, state_digest)``: verify mode.
"""

from __future__ import annotations

import pickle
from typing import Any

from .errors import UnpersistableError

_dumps = pickle.dumps
_loads = pickle.loads
_PROTO = pickle.HIGHEST_PROTOCOL


def encode(op: Any) -> bytes:
    """The log payload of ``op``; raises :class:`UnpersistableError` if it cannot be pickled."""
    if type(op) is bytes:
        return b"B" + op
    try:
        return b"P" + _dumps(op, _PROTO)
    except Exception as e:
        raise UnpersistableError(
            f"{type(op).__module__}.{type(op).__qualname__}", "operation",
            f"an operation must be bytes or picklable ({e})",
        ) from None


def encode_verified(op: Any, result_digest: int, state_digest: int | None) -> bytes:
    """Payload carrying the foreground's digests of the result and of the state."""
    return b"V" + _dumps((op, result_digest, state_digest), _PROTO)


def decode(payload: bytes | memoryview) -> tuple[Any, int | None, int | None]:
    """``(op, result_digest, state_digest)``; digests are None outside verify mode."""
    tag = payload[0]
    if tag == 0x42:  # B
        return bytes(payload[1:]), None, None
    if tag == 0x50:  # P
        return _loads(payload[1:]), None, None
    if tag == 0x56:  # V
        op, r, s = _loads(payload[1:])
        return op, r, s
    raise ValueError(f"unknown operation-log entry tag {tag!r}")
