"""How an operation is written into the operation log, and read back.

An entry payload is one tag byte then the body:

* ``B`` + raw bytes: the operation is a ``bytes`` object (no pickling at all);
* a pickle (protocol 2 or later, so its first byte is ``0x80``, which serves as the tag):
  any other picklable operation;
* ``P`` + pickle: the same, as written by earlier versions (still read);
* ``V`` + pickle of ``(op, result_digest, state_digest)``: verify mode;
* ``G`` + u32 count + count u32 lengths + the payloads themselves: a group of operations
  logged with ``commit=False`` and written as one entry at the group commit (one checksum,
  one copy into the log for the whole group).  Each payload in a group is one of the forms
  above (never a group).
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from .errors import CorruptPoolError, UnpersistableError

_dumps = pickle.dumps
_loads = pickle.loads
_PROTO = pickle.HIGHEST_PROTOCOL
TAG_BYTES = 0x42  # B: the payload's first byte for a bytes operation
TAG_PICKLE = 0x80  # pickle's PROTO opcode: a payload that is a pickle as it stands
assert _PROTO >= 2
TAG_GROUP = 0x47  # G: a group of payloads
_GROUP_HEAD = struct.Struct("<BI")
GROUP_OVERHEAD = _GROUP_HEAD.size  # bytes of a group besides its payloads and their lengths


def encode(op: Any) -> bytes:
    """The log payload of ``op``; raises :class:`UnpersistableError` if it cannot be pickled."""
    if type(op) is bytes:
        return b"B" + op
    try:
        return _dumps(op, _PROTO)
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
    if tag == TAG_BYTES:
        return bytes(payload[1:]), None, None
    if tag == TAG_PICKLE:
        return _loads(payload), None, None
    if tag == 0x50:  # P
        return _loads(payload[1:]), None, None
    if tag == 0x56:  # V
        op, r, s = _loads(payload[1:])
        return op, r, s
    raise CorruptPoolError(f"unknown operation-log entry tag {tag!r}: the entry is damaged or "
                           "was written by a newer version")


def encode_group(payloads: list[bytes]) -> bytes:
    """One log payload carrying ``payloads`` (each made by :func:`encode`), in order."""
    n = len(payloads)
    return b"".join([_GROUP_HEAD.pack(TAG_GROUP, n), struct.pack(f"<{n}I", *map(len, payloads)),
                     *payloads])


def split(payload: bytes) -> list[bytes]:
    """The operation payloads in a log payload: the members of a group, else ``[payload]``.

    Raises :class:`CorruptPoolError` when a group's lengths do not add up to its size (a
    damaged entry that still passed its checksum: never expected, never silently misread).
    """
    if payload[0] != TAG_GROUP:
        return [payload]
    n = _GROUP_HEAD.unpack_from(payload)[1] if len(payload) >= GROUP_OVERHEAD else -1
    o = GROUP_OVERHEAD + 4 * n
    lens = struct.unpack_from(f"<{n}I", payload, GROUP_OVERHEAD) if 0 <= n and o <= len(
        payload) else ()
    if n < 0 or len(lens) != n or o + sum(lens) != len(payload):
        raise CorruptPoolError("a group entry of the operation log is damaged (its lengths "
                               "do not match its size)")
    out = []
    for ln in lens:
        out.append(payload[o : o + ln])
        o += ln
    return out
