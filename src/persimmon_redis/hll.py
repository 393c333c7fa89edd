"""Redis's HyperLogLog representation, byte for byte.

A HyperLogLog is a string: a 16-byte header (``HYLL``, encoding byte, 3 zero bytes, the
cached cardinality as 8 little-endian bytes whose top bit set means "stale") and then either
the *dense* registers (16384 registers of 6 bits, packed from the least significant bit of
each byte on, 12288 bytes) or the *sparse* opcodes (ZERO ``00xxxxxx``: 1-64 zero registers,
XZERO ``01xxxxxx yyyyyyyy``: 1-16384 zero registers, VAL ``1vvvvvxx``: 1-4 registers of value
1-32).  Elements hash with MurmurHash64A (seed 0xadc83b19); the low 14 bits pick the
register, the run of zeros after them (plus one) is the value.  The sparse update, its
merging of neighbouring VAL opcodes, the promotion to dense (a value over 32, or more than
``hll-sparse-max-bytes``) and the cardinality estimator follow Redis 7.0's hyperloglog.c,
so the bytes (what GET returns) and the counts are Redis's.
"""

from __future__ import annotations

import math

P = 14
Q = 64 - P
REGISTERS = 1 << P
HDR = 16
DENSE_SIZE = HDR + (REGISTERS * 6 + 7) // 8
DENSE, SPARSE = 0, 1
M64 = (1 << 64) - 1
_MUL = 0xC6A4A7935BD1E995
ZERO, XZERO, VAL = 0, 1, 2


class Invalid(Exception):
    """A corrupted HLL (Redis: INVALIDOBJ)."""


def murmur64a(data: bytes, seed: int = 0xADC83B19) -> int:
    n = len(data)
    h = (seed ^ (n * _MUL)) & M64
    end = n - (n & 7)
    for i in range(0, end, 8):
        k = int.from_bytes(data[i:i + 8], "little")
        k = (k * _MUL) & M64
        k ^= k >> 47
        k = (k * _MUL) & M64
        h ^= k
        h = (h * _MUL) & M64
    rest = n & 7
    if rest:
        h ^= int.from_bytes(data[end:], "little")
        h = (h * _MUL) & M64
    h ^= h >> 47
    h = (h * _MUL) & M64
    h ^= h >> 47
    return h


def pat_len(ele: bytes) -> tuple[int, int]:
    """``(register index, value)`` of an element."""
    h = murmur64a(ele)
    index = h & (REGISTERS - 1)
    h >>= P
    h |= 1 << Q
    return index, (h & -h).bit_length()


def empty() -> bytes:
    """A new HLL: sparse, one XZERO opcode covering every register."""
    return b"HYLL" + bytes((SPARSE, 0, 0, 0)) + bytes(8) + bytes((0x40 | 0x3F, 0xFF))


def check(v: bytes) -> bool:
    """Redis's isHLLObjectOrReply test."""
    if len(v) < HDR or v[:4] != b"HYLL" or v[4] > 1:
        return False
    return not (v[4] == DENSE and len(v) != DENSE_SIZE)


# ---------------------------------------------------------------------------- dense
def dense_get(regs: bytearray | bytes, i: int) -> int:
    byte = i * 6 >> 3
    fb = i * 6 & 7
    b1 = regs[byte + 1] if byte + 1 < len(regs) else 0
    return ((regs[byte] >> fb) | (b1 << (8 - fb))) & 63


def dense_set(regs: bytearray, i: int, val: int) -> None:
    byte = i * 6 >> 3
    fb = i * 6 & 7
    regs[byte] = (regs[byte] & ~(63 << fb) & 0xFF) | ((val << fb) & 0xFF)
    if byte + 1 < len(regs):
        regs[byte + 1] = (regs[byte + 1] & ~(63 >> (8 - fb)) & 0xFF) | (val >> (8 - fb))


def dense_registers(regs: bytes) -> list:
    """All 16384 register values of dense register bytes."""
    out = [0] * REGISTERS
    x = int.from_bytes(regs, "little")
    if not x:
        return out
    for g in range(REGISTERS // 4):
        w = (x >> (24 * g)) & 0xFFFFFF
        if w:
            j = 4 * g
            out[j] = w & 63
            out[j + 1] = (w >> 6) & 63
            out[j + 2] = (w >> 12) & 63
            out[j + 3] = w >> 18
    return out


def dense_from_registers(vals: list) -> bytearray:
    x = 0
    for i in range(REGISTERS - 1, -1, -1):
        x = (x << 6) | vals[i]
    return bytearray(x.to_bytes(DENSE_SIZE - HDR, "little"))


# ---------------------------------------------------------------------------- sparse
def sparse_ops(body: bytes) -> list:
    """Opcodes ``[kind, length, value]`` of sparse register bytes."""
    ops = []
    i = 0
    n = len(body)
    while i < n:
        b = body[i]
        if b & 0x80:
            ops.append([VAL, (b & 3) + 1, ((b >> 2) & 0x1F) + 1])
            i += 1
        elif b & 0x40:
            b2 = body[i + 1] if i + 1 < n else 0
            ops.append([XZERO, (((b & 0x3F) << 8) | b2) + 1, 0])
            i += 2
        else:
            ops.append([ZERO, (b & 0x3F) + 1, 0])
            i += 1
    return ops


def sparse_bytes(ops: list) -> bytes:
    out = bytearray()
    for kind, ln, val in ops:
        if kind == VAL:
            out.append(0x80 | ((val - 1) << 2) | (ln - 1))
        elif kind == XZERO:
            out.append(0x40 | ((ln - 1) >> 8))
            out.append((ln - 1) & 0xFF)
        else:
            out.append(ln - 1)
    return bytes(out)


def _oplen(op: list) -> int:
    return 2 if op[0] == XZERO else 1


def sparse_registers(ops: list) -> list:
    """Register values of sparse opcodes; Invalid unless they cover exactly 16384."""
    out = [0] * REGISTERS
    idx = 0
    for kind, ln, val in ops:
        if kind == VAL:
            if idx + ln > REGISTERS:
                raise Invalid
            for j in range(idx, idx + ln):
                out[j] = val
        idx += ln
    if idx != REGISTERS:
        raise Invalid
    return out


class Promote(Exception):
    """The sparse form must become dense."""


def sparse_set(ops: list, size: list, index: int, count: int, max_bytes: int) -> int:
    """Redis's hllSparseSet on an opcode list (``size[0]``: the string's byte length, kept
    up to date): 1 if changed, 0 if not; raises Promote or Invalid."""
    if count > 32:
        raise Promote
    first = 0
    pi = 0
    span = 0
    n = len(ops)
    while pi < n:
        span = ops[pi][1]
        if index <= first + span - 1:
            break
        first += span
        pi += 1
    if span == 0 or pi >= n:
        raise Invalid
    kind, runlen, curval = ops[pi]
    prev = pi - 1 if pi > 0 else 0
    if kind == VAL:
        if curval >= count:
            return 0
        if runlen == 1:
            ops[pi] = [VAL, 1, count]
            _merge(ops, prev, size)
            return 1
    if kind == ZERO and runlen == 1:
        ops[pi] = [VAL, 1, count]
        _merge(ops, prev, size)
        return 1
    last = first + span - 1
    seq = []
    if kind != VAL:
        if index != first:
            ln = index - first
            seq.append([XZERO if ln > 64 else ZERO, ln, 0])
        seq.append([VAL, 1, count])
        if index != last:
            ln = last - index
            seq.append([XZERO if ln > 64 else ZERO, ln, 0])
    else:
        if index != first:
            seq.append([VAL, index - first, curval])
        seq.append([VAL, 1, count])
        if index != last:
            seq.append([VAL, last - index, curval])
    delta = sum(_oplen(o) for o in seq) - _oplen(ops[pi])
    if delta > 0 and size[0] + delta > max_bytes:
        raise Promote
    ops[pi:pi + 1] = seq
    size[0] += delta
    _merge(ops, prev, size)
    return 1


def _merge(ops: list, p: int, size: list) -> None:
    """Merge neighbouring VAL opcodes of the same value, scanning up to 5 from ``p``."""
    scan = 5
    while p < len(ops) and scan:
        scan -= 1
        if ops[p][0] != VAL:
            p += 1
            continue
        if p + 1 < len(ops) and ops[p + 1][0] == VAL:
            v1, v2 = ops[p][2], ops[p + 1][2]
            if v1 == v2:
                ln = ops[p][1] + ops[p + 1][1]
                if ln <= 4:
                    ops[p + 1] = [VAL, ln, v1]
                    del ops[p]
                    size[0] -= 1
                    continue
        p += 1


def sparse_to_dense(ops: list) -> bytearray:
    """hllSparseToDense (Invalid when the opcodes do not cover 16384 registers)."""
    regs = bytearray(DENSE_SIZE - HDR)
    idx = 0
    for kind, ln, val in ops:
        if kind == VAL:
            if idx + ln > REGISTERS:
                break
            for j in range(idx, idx + ln):
                dense_set(regs, j, val)
        idx += ln
    if idx != REGISTERS:
        raise Invalid
    return regs


# ---------------------------------------------------------------------------- values
class Hll:
    """A decoded HLL being changed: ``hdr`` (bytearray of 16) and sparse ``ops`` or dense
    ``regs``."""

    def __init__(self, v: bytes) -> None:
        self.hdr = bytearray(v[:HDR])
        if v[4] == DENSE:
            self.ops = None
            self.regs: bytearray | None = bytearray(v[HDR:])
        else:
            self.ops = sparse_ops(v[HDR:])
            self.regs = None
            self.size = [len(v)]

    def promote(self) -> None:
        self.regs = sparse_to_dense(self.ops)
        self.ops = None
        self.hdr[4] = DENSE

    def set(self, index: int, count: int, max_bytes: int) -> int:
        if self.ops is not None:
            try:
                return sparse_set(self.ops, self.size, index, count, max_bytes)
            except Promote:
                self.promote()
        regs = self.regs
        if count > dense_get(regs, index):
            dense_set(regs, index, count)
            return 1
        return 0

    def invalidate(self) -> None:
        self.hdr[15] |= 0x80

    def encode(self) -> bytes:
        body = sparse_bytes(self.ops) if self.ops is not None else bytes(self.regs)
        return bytes(self.hdr) + body


def registers(v: bytes) -> list:
    """All register values of a valid-looking HLL string (Invalid if corrupted)."""
    if v[4] == DENSE:
        return dense_registers(v[HDR:])
    return sparse_registers(sparse_ops(v[HDR:]))


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        zp = z
        z += x * y
        y += y
        if zp == z:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1 - x
    while True:
        x = math.sqrt(x)
        zp = z
        y *= 0.5
        z -= math.pow(1 - x, 2) * y
        if zp == z:
            return z / 3


def count(regs: list) -> int:
    """Redis 7's cardinality estimate from register values."""
    histo = [0] * 64
    for r in regs:
        histo[r] += 1
    m = float(REGISTERS)
    z = m * _tau((m - histo[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += histo[j]
        z *= 0.5
    z += m * _sigma(histo[0] / m)
    e = 0.721347520444481703680 * m * m / z
    return int(math.floor(e + 0.5))


def cached(v: bytes) -> int | None:
    """The cached cardinality, or None when stale."""
    if v[15] & 0x80:
        return None
    return int.from_bytes(v[8:16], "little")


def with_cache(v: bytes, card: int) -> bytes:
    return v[:8] + card.to_bytes(8, "little") + v[16:]
