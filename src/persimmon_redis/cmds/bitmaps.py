"""Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD,
BITFIELD_RO, with Redis 7.0's replies and errors.

Bit 0 is the most significant bit of byte 0, as in Redis.  Whole ranges are handled as
Python integers (``int.from_bytes``, ``int.bit_count``) and ``bytes.translate``, never bit
by bit.  A written string is stored as a new ``bytes`` (values stay immutable ``bytes``, so
the PM copy holds them inline).
"""

from __future__ import annotations

import re
from typing import Any

from ..keyspace import Ctx, changes, delete, get_str, mark_raw, set_value, to_int
from ..registry import command
from ..replies import E_SYNTAX, RError

E_OFFSET = "ERR bit offset is not an integer or out of range"
E_BIT = "ERR bit is not an integer or out of range"
E_TYPE = ("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not "
          "supported but i64 is.")
MAX_BYTES = 512 * 1024 * 1024  # proto-max-bulk-len: the largest string a bit may address
_LL = re.compile(rb"-?(0|[1-9][0-9]*)\Z")


def bit_offset(b: bytes, hash_bits: int = 0) -> int:
    """A bit offset argument (``#n`` means ``n * hash_bits`` for BITFIELD)."""
    use_hash = hash_bits > 0 and b[:1] == b"#"
    body = b[1:] if use_hash else b
    if not _LL.match(body) or len(body) > 20:
        raise RError(E_OFFSET)
    v = int(body)
    if not -(1 << 63) <= v < (1 << 63):
        raise RError(E_OFFSET)
    if use_hash:
        v *= hash_bits
    if v < 0 or (v >> 3) >= MAX_BYTES:
        raise RError(E_OFFSET)
    return v


def _padded(ctx: Ctx, key: bytes, maxbit: int) -> tuple[bytes, bool]:
    """The string at ``key`` grown with zero bytes so bit ``maxbit`` exists, and whether it
    was created or grown (WRONGTYPE if not a string)."""
    v = get_str(ctx, key, write=True)
    need = (maxbit >> 3) + 1
    if v is None:
        return bytes(need), True
    if len(v) < need:
        return v + bytes(need - len(v)), True
    return v, False


@command("setbit", arity=4, flags=("write", "denyoom"))
def cmd_setbit(ctx: Ctx, a: list) -> Any:
    off = bit_offset(a[2])
    on = to_int(a[3], E_BIT)
    if on & ~1:
        raise RError(E_BIT)
    v, grown = _padded(ctx, a[1], off)
    byte = off >> 3
    mask = 1 << (7 - (off & 7))
    old = v[byte] & mask
    if grown or bool(old) != bool(on):
        nb = (v[byte] | mask) if on else (v[byte] & ~mask)
        set_value(ctx, a[1], v[:byte] + bytes((nb,)) + v[byte + 1:], keep_ttl=True,
                  raw=True)
    else:
        changes(0)  # (Redis counts a SETBIT only when it created, grew or changed the string)
        mark_raw(ctx, a[1])  # (and makes the string raw all the same)
    return 1 if old else 0


@command("getbit", arity=3, flags=("readonly", "fast"))
def cmd_getbit(ctx: Ctx, a: list) -> Any:
    off = bit_offset(a[2])
    v = get_str(ctx, a[1])
    if v is None:
        return 0
    byte = off >> 3
    if byte >= len(v):
        return 0
    return 1 if v[byte] & (1 << (7 - (off & 7))) else 0


def _range(n: int, start: int, end: int, isbit: bool) -> tuple[int, int]:
    tot = n << 3 if isbit else n
    if start < 0:
        start += tot
    if end < 0:
        end += tot
    start = max(start, 0)
    end = max(end, 0)
    if end >= tot:
        end = tot - 1
    return start, end


def _bits_of(v: bytes, start: int, end: int) -> tuple[int, int]:
    """Bits ``start..end`` (inclusive, bit offsets) of ``v`` as ``(int, width)``."""
    b0, b1 = start >> 3, end >> 3
    x = int.from_bytes(v[b0:b1 + 1], "big")
    drop = 7 - (end & 7)
    keep = end - start + 1
    return (x >> drop) & ((1 << keep) - 1), keep


@command("bitcount", arity=-2, flags=("readonly",))
def cmd_bitcount(ctx: Ctx, a: list) -> Any:
    n = len(a)
    v = get_str(ctx, a[1])
    if v is None:
        return 0
    if n not in (2, 4, 5):
        raise RError(E_SYNTAX)
    if n == 2:
        return int.from_bytes(v, "big").bit_count()
    start = to_int(a[2])
    end = to_int(a[3])
    isbit = False
    if n == 5:
        u = a[4].upper()
        if u == b"BIT":
            isbit = True
        elif u != b"BYTE":
            raise RError(E_SYNTAX)
    if start < 0 and end < 0 and start > end:
        return 0
    start, end = _range(len(v), start, end, isbit)
    if start > end:
        return 0
    if not isbit:
        return int.from_bytes(v[start:end + 1], "big").bit_count()
    return _bits_of(v, start, end)[0].bit_count()


@command("bitpos", arity=-3, flags=("readonly",))
def cmd_bitpos(ctx: Ctx, a: list) -> Any:
    n = len(a)
    bit = to_int(a[2])
    if bit not in (0, 1):
        raise RError("ERR The bit argument must be 1 or 0.")
    v = get_str(ctx, a[1])
    if v is None:
        return -1 if bit else 0
    isbit = False
    end_given = False
    if n in (4, 5, 6):
        start = to_int(a[3])
        if n == 6:
            u = a[5].upper()
            if u == b"BIT":
                isbit = True
            elif u != b"BYTE":
                raise RError(E_SYNTAX)
        if n >= 5:
            end = to_int(a[4])
            end_given = True
        else:
            end = (len(v) << 3) + 7 if isbit else len(v) - 1
        start, end = _range(len(v), start, end, isbit)
    elif n == 3:
        start, end = 0, len(v) - 1
    else:
        raise RError(E_SYNTAX)
    if start > end:
        return -1
    if not isbit:
        start, end = start << 3, (end << 3) + 7
    x, width = _bits_of(v, start, end)
    if bit:
        if x == 0:
            return -1
        return start + width - x.bit_length()
    inv = x ^ ((1 << width) - 1)
    if inv == 0:
        # no clear bit in range: past the end of the string unless an end was given
        return -1 if end_given else start + width
    return start + width - inv.bit_length()


@command("bitop", arity=-4, flags=("write", "denyoom"), keys=(2, -1, 1))
def cmd_bitop(ctx: Ctx, a: list) -> Any:
    op = a[1].lower()
    if op not in (b"and", b"or", b"xor", b"not"):
        raise RError(E_SYNTAX)
    if op == b"not" and len(a) != 4:
        raise RError("ERR BITOP NOT must be called with a single source key.")
    srcs = [get_str(ctx, k) for k in a[3:]]
    vals = [s if s is not None else b"" for s in srcs]
    maxlen = max(len(s) for s in vals)
    if not maxlen:
        delete(ctx, a[2])
        return 0
    ints = [int.from_bytes(s + bytes(maxlen - len(s)), "big") for s in vals]
    if op == b"not":
        r = ints[0] ^ ((1 << (8 * maxlen)) - 1)
    else:
        r = ints[0]
        for x in ints[1:]:
            if op == b"and":
                r &= x
            elif op == b"or":
                r |= x
            else:
                r ^= x
    set_value(ctx, a[2], r.to_bytes(maxlen, "big"))
    return maxlen


# ---------------------------------------------------------------------------- BITFIELD
def _field_type(b: bytes) -> tuple[bool, int]:
    sign = b[:1]
    if sign not in (b"i", b"u") or not _LL.match(b[1:]) or len(b) > 22:
        raise RError(E_TYPE)
    bits = int(b[1:])
    if bits < 1 or (sign == b"i" and bits > 64) or (sign == b"u" and bits > 63):
        raise RError(E_TYPE)
    return sign == b"i", bits


def _get_field(v: bytes, off: int, bits: int, signed: bool) -> int:
    b0 = off >> 3
    b1 = (off + bits - 1) >> 3
    chunk = v[b0:b1 + 1]
    if len(chunk) < b1 - b0 + 1:
        chunk += bytes(b1 - b0 + 1 - len(chunk))
    x = int.from_bytes(chunk, "big")
    x = (x >> ((b1 - b0 + 1) * 8 - (off & 7) - bits)) & ((1 << bits) - 1)
    if signed and x >> (bits - 1):
        x -= 1 << bits
    return x


def _set_field(v: bytearray, off: int, bits: int, val: int) -> None:
    b0 = off >> 3
    b1 = (off + bits - 1) >> 3
    nbytes = b1 - b0 + 1
    x = int.from_bytes(v[b0:b1 + 1], "big")
    shift = nbytes * 8 - (off & 7) - bits
    mask = ((1 << bits) - 1) << shift
    x = (x & ~mask) | ((val & ((1 << bits) - 1)) << shift)
    v[b0:b1 + 1] = x.to_bytes(nbytes, "big")


def _wrap(x: int, bits: int, signed: bool) -> int:
    x &= (1 << bits) - 1
    if signed and x >> (bits - 1):
        x -= 1 << bits
    return x


def _bitfield(ctx: Ctx, a: list, ro: bool) -> Any:
    ops = []
    ow = b"wrap"
    j = 2
    n = len(a)
    write = False
    maxbit = 0
    while j < n:
        rem = n - j - 1
        sub = a[j].lower()
        if sub == b"get" and rem >= 2:
            pass
        elif sub in (b"set", b"incrby") and rem >= 3:
            pass
        elif sub == b"overflow" and rem >= 1:
            ow = a[j + 1].lower()
            if ow not in (b"wrap", b"sat", b"fail"):
                raise RError("ERR Invalid OVERFLOW type specified")
            j += 2
            continue
        else:
            raise RError(E_SYNTAX)
        signed, bits = _field_type(a[j + 1])
        off = bit_offset(a[j + 2], bits)
        arg = 0
        if sub != b"get":
            write = True
            maxbit = max(maxbit, off + bits - 1)
            arg = to_int(a[j + 3])
        ops.append((sub, signed, bits, off, arg, ow))
        j += 3 if sub == b"get" else 4
    if not write:
        v = get_str(ctx, a[1])
        return [_get_field(v or b"", off, bits, signed) for _, signed, bits, off, _, _ in ops]
    if ro:
        raise RError("ERR BITFIELD_RO only supports the GET subcommand")
    cur, grown = _padded(ctx, a[1], maxbit)
    buf = bytearray(cur)
    out: list = []
    changed = grown
    n = 0  # Redis's count: every SET/INCRBY written that changed its field or grew the key
    for sub, signed, bits, off, arg, ow in ops:
        if sub == b"get":
            out.append(_get_field(buf, off, bits, signed))
            continue
        old = _get_field(buf, off, bits, signed)
        if signed:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        else:
            lo, hi = 0, (1 << bits) - 1
        if sub == b"incrby":
            new = old + arg
        else:
            new = arg if signed else arg & ((1 << 64) - 1)
        if lo <= new <= hi:
            res = new
        elif ow == b"wrap":
            res = _wrap(new, bits, signed)
        elif ow == b"sat":
            res = hi if new > hi else lo
        else:
            out.append(None)
            continue
        out.append(res if sub == b"incrby" else old)
        if res != old or grown:
            changed = True
            n += 1
        _set_field(buf, off, bits, res)
    if changed:
        set_value(ctx, a[1], bytes(buf), keep_ttl=True, raw=True)
    elif cur is not None and a[1] in ctx.data:
        mark_raw(ctx, a[1])
    changes(n)
    return out


@command("bitfield", arity=-2, flags=("write", "denyoom"))
def cmd_bitfield(ctx: Ctx, a: list) -> Any:
    return _bitfield(ctx, a, False)


@command("bitfield_ro", arity=-2, flags=("readonly", "fast"))
def cmd_bitfield_ro(ctx: Ctx, a: list) -> Any:
    return _bitfield(ctx, a, True)
