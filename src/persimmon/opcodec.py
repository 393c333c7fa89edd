"""How an operation is written into the operation log, and read back.

An entry payload is one tag byte then the body:

* ``B`` + raw bytes: the operation is a ``bytes`` object (no pickling at all);
* ``T`` + one packed value: an operation built only of exact tuples, bytes, ints that fit
  in 64 bits and None (the usual shape of a key-value operation), written and read without
  pickle.  A value is ``t`` + u32 count + the items, ``s`` + u8 length + bytes (shorter
  than 256), ``b`` + u32 length + bytes (256 or longer), ``i`` + i64, or ``N``; all
  little-endian, nesting at most 16 tuples deep.  The compiled module packs it when it is
  built (about 4x faster than pickle for a Redis SET); :func:`unpack` reads it either way;
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
from .native import FAST

_dumps = pickle.dumps
_loads = pickle.loads
_PROTO = pickle.HIGHEST_PROTOCOL
TAG_BYTES = 0x42  # B: the payload's first byte for a bytes operation
TAG_PICKLE = 0x80  # pickle's PROTO opcode: a payload that is a pickle as it stands
assert _PROTO >= 2
TAG_GROUP = 0x47  # G: a group of payloads
TAG_PACKED = 0x54  # T: a packed operation
_PACK_DEPTH = 16
_pack = getattr(FAST, "pack_op", None)
_unpack = getattr(FAST, "unpack_op", None)
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_GROUP_HEAD = struct.Struct("<BI")
GROUP_OVERHEAD = _GROUP_HEAD.size  # bytes of a group besides its payloads and their lengths


def encode(op: Any) -> bytes:
    """The log payload of ``op``; raises :class:`UnpersistableError` if it cannot be pickled."""
    if type(op) is bytes:
        return b"B" + op
    if _pack is not None and (p := _pack(op)) is not None:
        return p
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
    if tag == TAG_PACKED:
        return unpack(payload), None, None
    if tag == 0x50:  # P
        return _loads(payload[1:]), None, None
    if tag == 0x56:  # V
        op, r, s = _loads(payload[1:])
        return op, r, s
    raise CorruptPoolError(f"unknown operation-log entry tag {tag!r}: the entry is damaged or "
                           "was written by a newer version")


def pack(op: Any) -> bytes | None:
    """The ``T`` payload of ``op`` in pure Python, or None when ``op`` has a part other than
    an exact tuple, bytes, 64-bit int or None (the compiled ``pack_op`` gives the same
    bytes)."""
    out = [b"T"]
    if not _pack_into(op, out, 0):
        return None
    return b"".join(out)


def _pack_into(v: Any, out: list, depth: int) -> bool:
    t = type(v)
    if t is bytes:
        n = len(v)
        out.append(bytes((0x73, n)) if n < 256 else b"b" + _U32.pack(n))
        out.append(v)
    elif t is int:
        if not -(1 << 63) <= v < 1 << 63:
            return False
        out.append(b"i" + _I64.pack(v))
    elif v is None:
        out.append(b"N")
    elif t is tuple and depth < _PACK_DEPTH and len(v) <= 0xFFFFFFFF:
        out.append(b"t" + _U32.pack(len(v)))
        return all(_pack_into(x, out, depth + 1) for x in v)
    else:
        return False
    return True


def unpack(payload: bytes | memoryview) -> Any:
    """The operation in a ``T`` payload; raises :class:`CorruptPoolError` unless the payload
    is exactly one packed value."""
    try:
        if _unpack is not None:
            return _unpack(payload)
        mv = memoryview(payload)
        if len(mv) < 2 or mv[0] != TAG_PACKED:
            raise ValueError
        v, o = _unpack_at(mv, 1, 0)
        if o != len(mv):
            raise ValueError
        return v
    except (ValueError, IndexError, struct.error):
        raise CorruptPoolError("a packed operation in the operation log is damaged") from None


def _unpack_at(mv: memoryview, o: int, depth: int) -> tuple[Any, int]:
    t = mv[o]
    o += 1
    if t == 0x73 or t == 0x62:  # s, b
        if t == 0x73:
            n = mv[o]
            o += 1
        else:
            n = _U32.unpack_from(mv, o)[0]
            o += 4
            if n < 256:
                raise ValueError
        if o + n > len(mv):
            raise ValueError
        return bytes(mv[o : o + n]), o + n
    if t == 0x69:  # i
        return _I64.unpack_from(mv, o)[0], o + 8
    if t == 0x4E:  # N
        return None, o
    if t == 0x74 and depth < _PACK_DEPTH:  # t
        n = _U32.unpack_from(mv, o)[0]
        o += 4
        if o + n > len(mv):
            raise ValueError
        items = []
        for _ in range(n):
            x, o = _unpack_at(mv, o, depth + 1)
            items.append(x)
        return tuple(items), o
    raise ValueError


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
