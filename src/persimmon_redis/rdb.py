"""Redis's DUMP payload: one value in the RDB object encoding, the RDB version (10) and a
CRC-64 (Jones) footer.

``dump(value)`` writes the plain RDB types (string, list, set, ZSET_2, hash) and streams as
STREAM_LISTPACKS_2, which Redis 7.0 loads; ``load(payload)`` reads what Redis 7.0 (and
older versions) DUMP: those plus int and LZF strings, quicklists of listpacks or ziplists,
intsets, listpack and ziplist hashes and sorted sets, and streams (v1 and v2).  Pure
functions on bytes; the values are this package's (bytes, deque, set, ZSet, dict, Stream).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from .datatypes import ZSet
from .stream import Consumer, Group, Nack, Stream

RDB_VERSION = 10
T_STRING, T_LIST, T_SET, T_ZSET, T_HASH, T_ZSET_2 = 0, 1, 2, 3, 4, 5
T_LIST_ZIPLIST, T_SET_INTSET, T_ZSET_ZIPLIST, T_HASH_ZIPLIST = 10, 11, 12, 13
T_LIST_QUICKLIST, T_STREAM, T_HASH_LISTPACK, T_ZSET_LISTPACK = 14, 15, 16, 17
T_LIST_QUICKLIST_2, T_STREAM_2 = 18, 19


class BadFormat(Exception):
    """A payload this reader cannot decode."""


# ---------------------------------------------------------------------------- CRC-64
def _table() -> list:
    poly = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 reflected
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        out.append(c)
    return out


_CRC = _table()


def crc64(data: bytes, crc: int = 0) -> int:
    t = _CRC
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def footer(body: bytes) -> bytes:
    body += struct.pack("<H", RDB_VERSION)
    return body + struct.pack("<Q", crc64(body))


def check(payload: bytes) -> bool:
    if len(payload) < 10:
        return False
    ver = payload[-10] | (payload[-9] << 8)
    if ver > RDB_VERSION:
        return False
    return crc64(payload[:-8]) == struct.unpack("<Q", payload[-8:])[0]


# ---------------------------------------------------------------------------- writing
def _len(n: int) -> bytes:
    if n < 64:
        return bytes((n,))
    if n < 16384:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def _str(b: bytes) -> bytes:
    if 0 < len(b) <= 11 and (b[:1] != b"-" or len(b) > 1) and b.lstrip(b"-").isdigit() \
            and (b == b"0" or b.lstrip(b"-")[:1] != b"0"):
        v = int(b)
        if -128 <= v <= 127:
            return b"\xc0" + struct.pack("<b", v)
        if -32768 <= v <= 32767:
            return b"\xc1" + struct.pack("<h", v)
        if -(1 << 31) <= v < (1 << 31):
            return b"\xc2" + struct.pack("<i", v)
    return _len(len(b)) + b


def _lp(items: list) -> bytes:
    """A listpack of ints and byte strings."""
    body = bytearray()
    for it in items:
        if isinstance(it, int):
            if 0 <= it <= 127:
                enc = bytes((it,))
            elif -4096 <= it <= 4095:
                v = it & 0x1FFF
                enc = bytes((0xC0 | (v >> 8), v & 0xFF))
            elif -(1 << 15) <= it < (1 << 15):
                enc = b"\xf1" + struct.pack("<h", it)
            elif -(1 << 23) <= it < (1 << 23):
                enc = b"\xf2" + (it & 0xFFFFFF).to_bytes(3, "little")
            elif -(1 << 31) <= it < (1 << 31):
                enc = b"\xf3" + struct.pack("<i", it)
            else:
                enc = b"\xf4" + struct.pack("<q", it)
        else:
            n = len(it)
            if n < 64:
                enc = bytes((0x80 | n,)) + it
            elif n < 4096:
                enc = bytes((0xE0 | (n >> 8), n & 0xFF)) + it
            else:
                enc = b"\xf0" + struct.pack("<I", n) + it
        body += enc + _backlen(len(enc))
    total = 6 + len(body) + 1
    return struct.pack("<IH", total, min(len(items), 65535)) + bytes(body) + b"\xff"


def _backlen(n: int) -> bytes:
    if n <= 127:
        return bytes((n,))
    if n < 16383:
        return bytes((n >> 7, (n & 127) | 128))
    if n < 2097151:
        return bytes((n >> 14, ((n >> 7) & 127) | 128, (n & 127) | 128))
    if n < 268435455:
        return bytes((n >> 21, ((n >> 14) & 127) | 128, ((n >> 7) & 127) | 128,
                      (n & 127) | 128))
    return bytes((n >> 28, ((n >> 21) & 127) | 128, ((n >> 14) & 127) | 128,
                  ((n >> 7) & 127) | 128, (n & 127) | 128))


def _ms(v: int) -> bytes:
    return struct.pack("<q", v)


def dump(v: Any) -> bytes:
    """The DUMP payload of a value."""
    if isinstance(v, bytes):
        body = bytes((T_STRING,)) + _str(v)
    elif isinstance(v, deque | list):
        body = bytes((T_LIST,)) + _len(len(v)) + b"".join(_str(x) for x in v)
    elif isinstance(v, set):
        body = bytes((T_SET,)) + _len(len(v)) + b"".join(_str(x) for x in sorted(v))
    elif isinstance(v, ZSet):
        items = v.items()
        body = bytes((T_ZSET_2,)) + _len(len(items)) + b"".join(
            _str(m) + struct.pack("<d", s) for s, m in reversed(items))
    elif isinstance(v, dict):
        body = bytes((T_HASH,)) + _len(len(v)) + b"".join(
            _str(k) + _str(x) for k, x in v.items())
    elif isinstance(v, Stream):
        body = bytes((T_STREAM_2,)) + _dump_stream(v)
    else:
        raise BadFormat("unknown value type")
    return footer(body)


def _dump_stream(s: Any) -> bytes:
    out = bytearray(_len(len(s.nodes)))
    for node in s.nodes:
        master = node[0]
        mfields = list(s.entries[master][0::2])
        items: list = [len(node), 0, len(mfields), *mfields, 0]
        for i in node:
            fv = s.entries[i]
            fields = list(fv[0::2])
            same = fields == mfields
            items += [2 if same else 0, (i >> 64) - (master >> 64),
                      (i & ((1 << 64) - 1)) - (master & ((1 << 64) - 1))]
            if same:
                items += list(fv[1::2])
                items.append(len(fields) + 3)
            else:
                items.append(len(fields))
                items += list(fv)
                items.append(len(fields) * 2 + 4)
        out += _str(struct.pack(">QQ", master >> 64, master & ((1 << 64) - 1)))
        out += _str(_lp(items))
    m64 = (1 << 64) - 1
    out += _len(len(s)) + _len(s.last_id >> 64) + _len(s.last_id & m64)
    out += _len(s.first_id >> 64) + _len(s.first_id & m64)
    out += _len(s.max_deleted >> 64) + _len(s.max_deleted & m64)
    out += _len(s.entries_added)
    out += _len(len(s.groups))
    for name in sorted(s.groups):
        g = s.groups[name]
        out += _str(name) + _len(g.last_id >> 64) + _len(g.last_id & m64)
        er = g.entries_read
        out += _len(er if er >= 0 else (1 << 64) - 1)
        pel = g.pel_ids()
        out += _len(len(pel))
        for i in pel:
            n = g.pel[i]
            out += struct.pack(">QQ", i >> 64, i & m64) + _ms(n.time) + _len(n.count)
        out += _len(len(g.consumers))
        for cn in sorted(g.consumers):
            c = g.consumers[cn]
            out += _str(cn) + _ms(c.seen)
            cp = g.pel_ids(c.pel)
            out += _len(len(cp))
            for i in cp:
                out += struct.pack(">QQ", i >> 64, i & m64)
    return bytes(out)


# ---------------------------------------------------------------------------- reading
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.d = data
        self.p = 0

    def take(self, n: int) -> bytes:
        if self.p + n > len(self.d):
            raise BadFormat("truncated")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def length(self) -> tuple[int, bool]:
        """``(length, encoded)`` of an RDB length field."""
        b = self.byte()
        kind = b >> 6
        if kind == 0:
            return b & 0x3F, False
        if kind == 1:
            return ((b & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return b & 0x3F, True
        if b == 0x80:
            return struct.unpack(">I", self.take(4))[0], False
        if b == 0x81:
            return struct.unpack(">Q", self.take(8))[0], False
        raise BadFormat("bad length")

    def num(self) -> int:
        n, enc = self.length()
        if enc:
            raise BadFormat("unexpected encoded value")
        return n

    def string(self) -> bytes:
        n, enc = self.length()
        if not enc:
            return self.take(n)
        if n == 0:
            return b"%d" % struct.unpack("<b", self.take(1))[0]
        if n == 1:
            return b"%d" % struct.unpack("<h", self.take(2))[0]
        if n == 2:
            return b"%d" % struct.unpack("<i", self.take(4))[0]
        if n == 3:
            clen = self.num()
            ulen = self.num()
            return _lzf(self.take(clen), ulen)
        raise BadFormat("bad string encoding")

    def ms(self) -> int:
        return struct.unpack("<q", self.take(8))[0]


def _lzf(src: bytes, ulen: int) -> bytes:
    out = bytearray()
    i = 0
    n = len(src)
    while i < n:
        ctrl = src[i]
        i += 1
        if ctrl < 32:
            out += src[i:i + ctrl + 1]
            i += ctrl + 1
        else:
            ln = ctrl >> 5
            ref = len(out) - ((ctrl & 0x1F) << 8) - 1
            if ln == 7:
                ln += src[i]
                i += 1
            ref -= src[i]
            i += 1
            if ref < 0:
                raise BadFormat("bad LZF data")
            for _ in range(ln + 2):
                out.append(out[ref])
                ref += 1
    if len(out) != ulen:
        raise BadFormat("bad LZF length")
    return bytes(out)


def _num_str(v: Any) -> bytes:
    return v if isinstance(v, bytes) else b"%d" % v


def listpack(data: bytes) -> list:
    """The elements of a listpack (ints as ``bytes`` of their digits)."""
    out: list = []
    p = 6
    n = len(data)
    while p < n:
        b = data[p]
        if b == 0xFF:
            return out
        if b < 0x80:
            out.append(b"%d" % b)
            size = 1
        elif b < 0xC0:
            ln = b & 0x3F
            out.append(data[p + 1:p + 1 + ln])
            size = 1 + ln
        elif b < 0xE0:
            v = ((b & 0x1F) << 8) | data[p + 1]
            out.append(b"%d" % (v - 8192 if v >= 4096 else v))
            size = 2
        elif b < 0xF0:
            ln = ((b & 0x0F) << 8) | data[p + 1]
            out.append(data[p + 2:p + 2 + ln])
            size = 2 + ln
        elif b == 0xF0:
            ln = struct.unpack("<I", data[p + 1:p + 5])[0]
            out.append(data[p + 5:p + 5 + ln])
            size = 5 + ln
        elif b in (0xF1, 0xF2, 0xF3, 0xF4):
            w = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[b]
            out.append(b"%d" % int.from_bytes(data[p + 1:p + 1 + w], "little", signed=True))
            size = 1 + w
        else:
            raise BadFormat("bad listpack entry")
        p += size + len(_backlen(size))
    raise BadFormat("listpack without end")


def ziplist(data: bytes) -> list:
    """The elements of a ziplist (ints as ``bytes`` of their digits)."""
    out: list = []
    p = 10
    n = len(data)
    while p < n:
        if data[p] == 0xFF:
            return out
        p += 5 if data[p] == 0xFE else 1  # prevlen
        b = data[p]
        kind = b >> 6
        if kind == 0:
            ln = b & 0x3F
            out.append(data[p + 1:p + 1 + ln])
            p += 1 + ln
        elif kind == 1:
            ln = ((b & 0x3F) << 8) | data[p + 1]
            out.append(data[p + 2:p + 2 + ln])
            p += 2 + ln
        elif kind == 2:
            ln = struct.unpack(">I", data[p + 1:p + 5])[0]
            out.append(data[p + 5:p + 5 + ln])
            p += 5 + ln
        else:
            w = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}.get(b)
            if w is not None:
                out.append(b"%d" % int.from_bytes(data[p + 1:p + 1 + w], "little",
                                                   signed=True))
                p += 1 + w
            elif 0xF1 <= b <= 0xFD:
                out.append(b"%d" % ((b & 0x0F) - 1))
                p += 1
            else:
                raise BadFormat("bad ziplist entry")
    raise BadFormat("ziplist without end")


def _intset(data: bytes) -> list:
    enc, n = struct.unpack("<II", data[:8])
    if enc not in (2, 4, 8) or len(data) != 8 + enc * n:
        raise BadFormat("bad intset")
    return [b"%d" % int.from_bytes(data[8 + i * enc:8 + (i + 1) * enc], "little",
                                   signed=True) for i in range(n)]


def _score(b: bytes) -> float:
    try:
        return float(b)
    except ValueError:
        raise BadFormat("bad score") from None


def load(payload: bytes) -> Any:
    """The value of a DUMP payload (footer already checked); BadFormat if unreadable."""
    r = _Reader(payload[:-10])
    try:
        t = r.byte()
        v = _load(r, t)
    except (IndexError, struct.error, ValueError) as e:
        raise BadFormat(str(e)) from None
    if r.p != len(r.d):
        raise BadFormat("trailing bytes")
    return v


def _load(r: _Reader, t: int) -> Any:
    if t == T_STRING:
        return r.string()
    if t == T_LIST:
        return deque(r.string() for _ in range(r.num()))
    if t in (T_LIST_QUICKLIST, T_LIST_QUICKLIST_2):
        out: deque = deque()
        for _ in range(r.num()):
            container = r.num() if t == T_LIST_QUICKLIST_2 else 2
            blob = r.string()
            if container == 1:
                out.append(blob)
            elif t == T_LIST_QUICKLIST_2:
                out.extend(listpack(blob))
            else:
                out.extend(ziplist(blob))
        return out
    if t == T_LIST_ZIPLIST:
        return deque(ziplist(r.string()))
    if t == T_SET:
        return {r.string() for _ in range(r.num())}
    if t == T_SET_INTSET:
        return set(_intset(r.string()))
    if t in (T_ZSET, T_ZSET_2):
        z = ZSet()
        for _ in range(r.num()):
            m = r.string()
            if t == T_ZSET_2:
                s = struct.unpack("<d", r.take(8))[0]
            else:
                ln = r.byte()
                s = {253: float("nan"), 254: float("inf"), 255: float("-inf")}.get(ln)
                if s is None:
                    s = _score(r.take(ln))
            z.add(m, s)
        return z
    if t in (T_ZSET_ZIPLIST, T_ZSET_LISTPACK):
        items = (ziplist if t == T_ZSET_ZIPLIST else listpack)(r.string())
        z = ZSet()
        for m, s in zip(items[0::2], items[1::2], strict=True):
            z.add(m, _score(s))
        return z
    if t == T_HASH:
        h = {}
        for _ in range(r.num()):
            k = r.string()
            h[k] = r.string()
        return h
    if t in (T_HASH_ZIPLIST, T_HASH_LISTPACK):
        items = (ziplist if t == T_HASH_ZIPLIST else listpack)(r.string())
        return dict(zip(items[0::2], items[1::2], strict=True))
    if t in (T_STREAM, T_STREAM_2):
        return _load_stream(r, t == T_STREAM_2)
    raise BadFormat(f"unsupported type {t}")


def _load_stream(r: _Reader, v2: bool) -> Stream:
    s = Stream()
    m64 = (1 << 64) - 1
    for _ in range(r.num()):
        key = r.string()
        if len(key) != 16:
            raise BadFormat("bad stream node key")
        ms, seq = struct.unpack(">QQ", key)
        master = (ms << 64) | seq
        lp = listpack(r.string())
        count, deleted, nf = int(lp[0]), int(lp[1]), int(lp[2])
        mfields = lp[3:3 + nf]
        p = 3 + nf + 1
        ids = []
        while p < len(lp):
            flags = int(lp[p])
            eid = master + (int(lp[p + 1]) << 64) + int(lp[p + 2])
            p += 3
            if flags & 2:
                fv = tuple(x for pair in zip(mfields, lp[p:p + nf], strict=True) for x in pair)
                p += nf
            else:
                n = int(lp[p])
                fv = tuple(lp[p + 1:p + 1 + 2 * n])
                p += 1 + 2 * n
            p += 1  # lp-count
            if not flags & 1:
                s.entries[eid] = fv
                ids.append(eid)
        if ids:
            s.nodes.append(ids)
            s.used.append(count + deleted)
            s.lasts.append(ids[-1])
    length = r.num()
    s.last_id = (r.num() << 64) | r.num()
    if v2:
        s.first_id = (r.num() << 64) | r.num()
        s.max_deleted = (r.num() << 64) | r.num()
        s.entries_added = r.num()
    else:
        s.first_id = s.first_valid_id()
        s.entries_added = length
    if length != len(s.entries):
        raise BadFormat("stream length mismatch")
    for _ in range(r.num()):
        name = r.string()
        last = (r.num() << 64) | r.num()
        er = r.num() if v2 else -1
        if er == m64:
            er = -1
        if not v2:
            er = s.distance(last)
        g = Group(last, er)
        for _ in range(r.num()):
            ms, seq = struct.unpack(">QQ", r.take(16))
            g.pel[(ms << 64) | seq] = Nack(None, r.ms(), r.num())
        for _ in range(r.num()):
            cname = r.string()
            c = Consumer(cname, r.ms())
            for _ in range(r.num()):
                ms, seq = struct.unpack(">QQ", r.take(16))
                i = (ms << 64) | seq
                if i not in g.pel:
                    raise BadFormat("consumer entry not in the group's pel")
                g.pel[i].consumer = cname
                c.pel[i] = True
            g.consumers[cname] = c
        s.groups[name] = g
    return s

