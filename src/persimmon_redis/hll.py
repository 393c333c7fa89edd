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
import struct
from bisect import bisect_right
from itertools import accumulate

P = 14
Q = 64 - P
REGISTERS = 1 << P
HDR = 16
DENSE_SIZE = HDR + (REGISTERS * 6 + 7) // 8
DENSE, SPARSE = 0, 1
M64 = (1 << 64) - 1
_MUL = 0xC6A4A7935BD1E995
ZERO, XZERO, VAL = 0, 1, 2
_U64 = struct.Struct("<Q")

try:  # optional: a vectorised hash for large PFADDs
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None


class Invalid(Exception):
    """A corrupted HLL (Redis: INVALIDOBJ)."""


def murmur64a(data: bytes, seed: int = 0xADC83B19) -> int:
    n = len(data)
    mul, m64 = _MUL, M64
    h = (seed ^ (n * mul)) & m64
    end = n - (n & 7)
    if end:
        for (k,) in _U64.iter_unpack(data[:end]):
            k = (k * mul) & m64
            k ^= k >> 47
            h = ((h ^ ((k * mul) & m64)) * mul) & m64
    if n & 7:
        h = ((h ^ int.from_bytes(data[end:], "little")) * mul) & m64
    h ^= h >> 47
    h = (h * mul) & m64
    return h ^ (h >> 47)


def pat_len(ele: bytes) -> tuple[int, int]:
    """``(register index, value)`` of an element."""
    h = murmur64a(ele)
    index = h & (REGISTERS - 1)
    h >>= P
    h |= 1 << Q
    return index, (h & -h).bit_length()


def pat_lens(elements: list) -> list:
    """``pat_len`` of many elements: MurmurHash64A vectorised with numpy (uint64 arithmetic
    wraps as C's does) when it is installed and the batch is large; the same values as
    ``pat_len`` one by one."""
    if _np is None or len(elements) < 64:
        return [pat_len(e) for e in elements]
    np = _np
    out: list = [None] * len(elements)
    groups: dict = {}
    for i, e in enumerate(elements):
        groups.setdefault(len(e), []).append(i)
    mul = np.uint64(_MUL)
    s47 = np.uint64(47)
    for n, idxs in groups.items():
        if len(idxs) < 8:
            for i in idxs:
                out[i] = pat_len(elements[i])
            continue
        raw = np.frombuffer(b"".join(elements[i] for i in idxs), dtype=np.uint8)
        raw = raw.reshape(len(idxs), n)
        h = np.full(len(idxs), (0xADC83B19 ^ (n * _MUL)) & M64, dtype=np.uint64)
        end = n - (n & 7)
        if end:
            blocks = np.ascontiguousarray(raw[:, :end]).view("<u8")
            for col in range(end // 8):
                k = blocks[:, col] * mul
                k ^= k >> s47
                k *= mul
                h ^= k
                h *= mul
        if n & 7:
            tail = np.zeros(len(idxs), dtype=np.uint64)
            for b in range(n & 7):
                tail |= raw[:, end + b].astype(np.uint64) << np.uint64(8 * b)
            h ^= tail
            h *= mul
        h ^= h >> s47
        h *= mul
        h ^= h >> s47
        index = (h & np.uint64(REGISTERS - 1)).tolist()
        rest = (h >> np.uint64(P)) | np.uint64(1 << Q)
        low = rest & (~rest + np.uint64(1))
        counts = np.frexp(low.astype(np.float64))[1].tolist()  # lowest set bit, 1-based
        for j, i in enumerate(idxs):
            out[i] = (index[j], counts[j])
    return out


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


def dense_registers(regs: bytes) -> bytearray:
    """The 16384 register values (one byte each) of dense register bytes (3 bytes hold 4
    registers, from the least significant bit on)."""
    if _np is not None:
        np = _np
        w = np.frombuffer(bytes(regs[:REGISTERS * 6 // 8]), dtype=np.uint8).reshape(-1, 3)
        w = w.astype(np.uint32)
        w = w[:, 0] | (w[:, 1] << 8) | (w[:, 2] << 16)
        out4 = np.stack([w & 63, (w >> 6) & 63, (w >> 12) & 63, w >> 18], axis=1)
        return bytearray(out4.astype(np.uint8).tobytes())
    out = bytearray(REGISTERS)
    if not any(regs):
        return out
    j = 0
    for g in range(0, REGISTERS * 6 // 8, 3):
        w = regs[g] | (regs[g + 1] << 8) | (regs[g + 2] << 16)
        if w:
            out[j] = w & 63
            out[j + 1] = (w >> 6) & 63
            out[j + 2] = (w >> 12) & 63
            out[j + 3] = w >> 18
        j += 4
    return out


def dense_from_registers(vals: bytes) -> bytearray:
    if _np is not None:
        np = _np
        v = np.frombuffer(bytes(vals), dtype=np.uint8).reshape(-1, 4).astype(np.uint32)
        w = v[:, 0] | (v[:, 1] << 6) | (v[:, 2] << 12) | (v[:, 3] << 18)
        out3 = np.stack([w & 0xFF, (w >> 8) & 0xFF, w >> 16], axis=1)
        return bytearray(out3.astype(np.uint8).tobytes())
    out = bytearray(DENSE_SIZE - HDR)
    g = 0
    for j in range(0, REGISTERS, 4):
        w = vals[j] | (vals[j + 1] << 6) | (vals[j + 2] << 12) | (vals[j + 3] << 18)
        if w:
            out[g] = w & 0xFF
            out[g + 1] = (w >> 8) & 0xFF
            out[g + 2] = w >> 16
        g += 3
    return out


def maxed(a: bytes, b: bytes) -> bytearray:
    """Register by register maximum of two register arrays."""
    if _np is not None:
        return bytearray(_np.maximum(_np.frombuffer(bytes(a), dtype=_np.uint8),
                                     _np.frombuffer(bytes(b), dtype=_np.uint8)).tobytes())
    return bytearray(map(max, a, b))


# ---------------------------------------------------------------------------- sparse
class Sparse:
    """Sparse opcodes as three parallel lists (kind, run length, value), so the opcode
    covering a register is found with ``accumulate`` and ``bisect`` at C speed."""

    def __init__(self, body: bytes) -> None:
        kinds: list = []
        lens: list = []
        vals: list = []
        i = 0
        n = len(body)
        while i < n:
            b = body[i]
            if b & 0x80:
                kinds.append(VAL)
                lens.append((b & 3) + 1)
                vals.append(((b >> 2) & 0x1F) + 1)
                i += 1
            elif b & 0x40:
                b2 = body[i + 1] if i + 1 < n else 0
                kinds.append(XZERO)
                lens.append((((b & 0x3F) << 8) | b2) + 1)
                vals.append(0)
                i += 2
            else:
                kinds.append(ZERO)
                lens.append((b & 0x3F) + 1)
                vals.append(0)
                i += 1
        self.kinds, self.lens, self.vals = kinds, lens, vals
        self.acc = list(accumulate(lens))  # where each opcode's run ends (kept up to date)
        self.size = HDR + n  # the string's length, as Redis checks it against the limit

    def to_bytes(self) -> bytes:
        out = bytearray()
        for kind, ln, val in zip(self.kinds, self.lens, self.vals, strict=True):
            if kind == VAL:
                out.append(0x80 | ((val - 1) << 2) | (ln - 1))
            elif kind == XZERO:
                out.append(0x40 | ((ln - 1) >> 8))
                out.append((ln - 1) & 0xFF)
            else:
                out.append(ln - 1)
        return bytes(out)

    def registers(self) -> bytearray:
        """Register values; Invalid unless the opcodes cover exactly 16384."""
        out = bytearray(REGISTERS)
        idx = 0
        for kind, ln, val in zip(self.kinds, self.lens, self.vals, strict=True):
            if kind == VAL:
                if idx + ln > REGISTERS:
                    raise Invalid
                out[idx:idx + ln] = bytes((val,)) * ln
            idx += ln
        if idx != REGISTERS:
            raise Invalid
        return out

    def to_dense(self) -> bytearray:
        """hllSparseToDense (Invalid when the opcodes do not cover 16384 registers)."""
        regs = bytearray(DENSE_SIZE - HDR)
        idx = 0
        for kind, ln, val in zip(self.kinds, self.lens, self.vals, strict=True):
            if kind == VAL:
                if idx + ln > REGISTERS:
                    break
                for j in range(idx, idx + ln):
                    dense_set(regs, j, val)
            idx += ln
        if idx != REGISTERS:
            raise Invalid
        return regs

    def set(self, index: int, count: int, max_bytes: int) -> int:
        """Redis's hllSparseSet: 1 if changed, 0 if not; raises Promote or Invalid."""
        if count > 32:
            raise Promote
        kinds, lens, vals, acc = self.kinds, self.lens, self.vals, self.acc
        pi = bisect_right(acc, index)
        if pi >= len(lens) or lens[pi] == 0:
            raise Invalid
        span = lens[pi]
        first = acc[pi] - span
        kind, runlen, curval = kinds[pi], span, vals[pi]
        prev = pi - 1 if pi > 0 else 0
        if kind == VAL:
            if curval >= count:
                return 0
            if runlen == 1:
                vals[pi] = count
                self._merge(prev)
                return 1
        if kind == ZERO and runlen == 1:
            kinds[pi], vals[pi] = VAL, count
            self._merge(prev)
            return 1
        last = first + span - 1
        sk: list = []
        sl: list = []
        sv: list = []
        if kind != VAL:
            if index != first:
                ln = index - first
                sk.append(XZERO if ln > 64 else ZERO)
                sl.append(ln)
                sv.append(0)
            sk.append(VAL)
            sl.append(1)
            sv.append(count)
            if index != last:
                ln = last - index
                sk.append(XZERO if ln > 64 else ZERO)
                sl.append(ln)
                sv.append(0)
        else:
            if index != first:
                sk.append(VAL)
                sl.append(index - first)
                sv.append(curval)
            sk.append(VAL)
            sl.append(1)
            sv.append(count)
            if index != last:
                sk.append(VAL)
                sl.append(last - index)
                sv.append(curval)
        delta = len(sk) + sk.count(XZERO) - (2 if kind == XZERO else 1)
        if delta > 0 and self.size + delta > max_bytes:
            raise Promote
        kinds[pi:pi + 1] = sk
        lens[pi:pi + 1] = sl
        vals[pi:pi + 1] = sv
        acc[pi:pi + 1] = list(accumulate(sl, initial=first))[1:]
        self.size += delta
        self._merge(prev)
        return 1

    def _merge(self, p: int) -> None:
        """Merge neighbouring VAL opcodes of the same value, scanning up to 5 from ``p``."""
        kinds, lens, vals, acc = self.kinds, self.lens, self.vals, self.acc
        scan = 5
        while p < len(kinds) and scan:
            scan -= 1
            if kinds[p] != VAL:
                p += 1
                continue
            if p + 1 < len(kinds) and kinds[p + 1] == VAL and vals[p] == vals[p + 1]:
                ln = lens[p] + lens[p + 1]
                if ln <= 4:
                    lens[p + 1] = ln
                    del kinds[p], lens[p], vals[p], acc[p]
                    self.size -= 1
                    continue
            p += 1


class Promote(Exception):
    """The sparse form must become dense."""


# ---------------------------------------------------------------------------- values
class Hll:
    """A decoded HLL being changed: ``hdr`` (bytearray of 16) and sparse ``ops`` or dense
    ``regs``."""

    def __init__(self, v: bytes) -> None:
        self.hdr = bytearray(v[:HDR])
        self.ops: Sparse | None = None
        self.regs: bytearray | None = None
        if v[4] == DENSE:
            self.regs = bytearray(v[HDR:])
        else:
            self.ops = Sparse(v[HDR:])

    def promote(self) -> None:
        self.regs = self.ops.to_dense()
        self.ops = None
        self.hdr[4] = DENSE

    def set(self, index: int, count: int, max_bytes: int) -> int:
        if self.ops is not None:
            try:
                return self.ops.set(index, count, max_bytes)
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
        body = self.ops.to_bytes() if self.ops is not None else bytes(self.regs)
        return bytes(self.hdr) + body


def registers(v: bytes) -> bytearray:
    """All register values of a valid-looking HLL string (Invalid if corrupted)."""
    if v[4] == DENSE:
        return dense_registers(v[HDR:])
    return Sparse(v[HDR:]).registers()


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


def count(regs: bytes) -> int:
    """Redis 7's cardinality estimate from register values (one byte each)."""
    histo = [regs.count(v) for v in range(Q + 2)]
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
