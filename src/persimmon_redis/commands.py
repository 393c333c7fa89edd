"""Data commands: the handlers that read and change the dataset, and the command table.

A handler is ``fn(ctx, argv) -> reply`` where ``ctx`` gives the database and the operation's
clock.  Write handlers run inside ``RedisState.apply`` (so, with persistence, also in the
shadow process on the PM copy); read handlers run on the DRAM copy only.  Handlers must stay
deterministic: no clock but ``ctx.now``, no randomness (the server layer resolves random
choices into explicit arguments first).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from itertools import islice
from typing import Any

from . import longdouble
from .replies import (
    E_DB,
    E_FLOAT,
    E_HASH_FLOAT,
    E_HASH_INT,
    E_INT,
    E_NAN,
    E_NOKEY,
    E_OVERFLOW,
    E_POSITIVE,
    E_RANGE,
    E_SYNTAX,
    OK,
    WRONGTYPE,
    RDouble,
    RError,
    RMap,
    RPairs,
    fmt_double,
)
from .state import ZSet, type_name

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
_INT_RE = re.compile(rb"-?(0|[1-9][0-9]*)\Z")
_FLOAT_RE = re.compile(rb"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity)\Z", re.I)


# (state, {db index: (db, data, expires)}) of the last state seen.  Which objects those are
# changes only when SWAPDB swaps two databases (a Db's data and expires are never
# reassigned), so they are resolved once per state, not once per operation: on the PM copy
# each of those reads is an attribute lookup through a proxy (about 9 us per operation).
# Keyed by identity, holding the state, so a new state (recovery, a test) never hits.
# The third item keeps one Ctx per database for execute_op, reused from one logged write to
# the next (only its clock changes), so a write allocates no Ctx.
_views: list = [None, {}, {}]


def forget_views() -> None:
    """Drop the resolved databases (after SWAPDB)."""
    _views[0] = None
    _views[1] = {}
    _views[2] = {}


class Ctx:
    """What a handler sees: the state, the database index and the clock of the operation."""

    __slots__ = ("state", "dbi", "db", "now", "data", "expires")

    def __init__(self, state: Any, dbi: int, now: int) -> None:
        self.state = state
        self.now = now
        self.select(dbi)

    def select(self, dbi: int) -> None:
        self.dbi = dbi
        state = self.state
        if state is _views[0]:
            v = _views[1].get(dbi)
        else:
            forget_views()
            _views[0] = state
            v = None
        if v is None:
            db = state.dbs[dbi]
            v = _views[1][dbi] = (db, db.data, db.expires)
        self.db, self.data, self.expires = v


# ---------------------------------------------------------------------------- parsing
def to_int(b: bytes, err: str = E_INT) -> int:
    if not _INT_RE.match(b):
        raise RError(err)
    v = int(b)
    if not I64_MIN <= v <= I64_MAX:
        raise RError(err)
    return v


def to_float(b: bytes, err: str = E_FLOAT) -> float:
    if not _FLOAT_RE.match(b):
        raise RError(err)
    v = float(b)
    if math.isnan(v):
        raise RError(err)
    return v


# ---------------------------------------------------------------------------- key access
def lookup(ctx: Ctx, key: bytes) -> Any:
    """The live value of ``key`` or None; a key past its deadline counts as absent."""
    v = ctx.data.get(key)
    if v is None:
        return None
    expires = ctx.expires
    if expires:  # most datasets have no TTLs: skip the second lookup
        exp = expires.get(key)
        if exp is not None and exp <= ctx.now:
            return None
    return v


def lookup_write(ctx: Ctx, key: bytes) -> Any:
    """Like :func:`lookup`, and deletes an expired key (inside a write operation)."""
    v = ctx.data.get(key)
    if v is None:
        return None
    expires = ctx.expires
    if expires:
        exp = expires.get(key)
        if exp is not None and exp <= ctx.now:
            del ctx.data[key]
            del expires[key]
            return None
    return v


def delete(ctx: Ctx, key: bytes) -> bool:
    data = ctx.data
    if key in data:
        del data[key]
        ctx.expires.pop(key, None)
        return True
    return False


def _typed(ctx: Ctx, key: bytes, kind: type | tuple, write: bool) -> Any:
    v = lookup_write(ctx, key) if write else lookup(ctx, key)
    if v is not None and not isinstance(v, kind):
        raise RError(WRONGTYPE)
    return v


def get_str(ctx: Ctx, key: bytes, write: bool = False) -> bytes | None:
    return _typed(ctx, key, bytes, write)


def _container(ctx: Ctx, key: bytes, kind: type, write: bool, create: bool) -> Any:
    """The value at ``key`` if it is a ``kind`` (None if absent; a new empty one if
    ``create``); WRONGTYPE if it holds something else."""
    v = _typed(ctx, key, kind, write)
    if v is None and create:
        ctx.data[key] = kind()
        v = ctx.data[key]
    return v


def get_hash(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, dict, write, create)


def get_list(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, deque, write, create)


def get_set(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, set, write, create)


def get_zset(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, ZSet, write, create)


def drop_if_empty(ctx: Ctx, key: bytes, v: Any) -> None:
    if v is not None and len(v) == 0:
        delete(ctx, key)


def set_value(ctx: Ctx, key: bytes, value: Any, keep_ttl: bool = False) -> None:
    ctx.data[key] = value
    if not keep_ttl:
        expires = ctx.expires
        if expires and key in expires:
            del expires[key]


# ---------------------------------------------------------------------------- strings
def cmd_get(ctx: Ctx, a: list) -> Any:
    return get_str(ctx, a[1])


def cmd_set(ctx: Ctx, a: list) -> Any:
    key, val = a[1], a[2]
    n = len(a)
    if n == 3:  # plain SET: whatever was there (even expired, even another type) is replaced
        set_value(ctx, key, val)
        return OK
    nx = xx = get = keepttl = False
    deadline = None
    i = 3
    while i < n:
        opt = a[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get = True
        elif opt == b"KEEPTTL" and deadline is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and deadline is None and not keepttl \
                and i + 1 < n:
            t = to_int(a[i + 1])
            if t <= 0 or (opt in (b"EX", b"EXAT") and t > I64_MAX // 1000):
                raise RError("ERR invalid expire time in 'set' command")
            deadline = {b"EX": ctx.now + t * 1000, b"PX": ctx.now + t, b"EXAT": t * 1000,
                        b"PXAT": t}[opt]
            i += 1
        else:
            raise RError(E_SYNTAX)
        i += 1
    old = lookup_write(ctx, key)
    if get and old is not None and not isinstance(old, bytes):
        raise RError(WRONGTYPE)
    if (nx and old is not None) or (xx and old is None):
        return old if get else None
    set_value(ctx, key, val, keep_ttl=keepttl)
    if deadline is not None:
        ctx.expires[key] = deadline
    return old if get else OK


def cmd_setnx(ctx: Ctx, a: list) -> Any:
    if lookup_write(ctx, a[1]) is not None:
        return 0
    set_value(ctx, a[1], a[2])
    return 1


def _setex(ctx: Ctx, a: list, unit: int, name: str) -> Any:
    t = to_int(a[2])
    if t <= 0:
        raise RError(f"ERR invalid expire time in '{name}' command")
    set_value(ctx, a[1], a[3])
    ctx.expires[a[1]] = ctx.now + t * unit
    return OK


def cmd_setex(ctx: Ctx, a: list) -> Any:
    return _setex(ctx, a, 1000, "setex")


def cmd_psetex(ctx: Ctx, a: list) -> Any:
    return _setex(ctx, a, 1, "psetex")


def cmd_mget(ctx: Ctx, a: list) -> Any:
    out = []
    for k in a[1:]:
        v = lookup(ctx, k)
        out.append(v if isinstance(v, bytes) else None)
    return out


def cmd_mset(ctx: Ctx, a: list) -> Any:
    if len(a) % 2 == 0:
        raise RError("ERR wrong number of arguments for 'mset' command")
    for i in range(1, len(a), 2):
        set_value(ctx, a[i], a[i + 1])
    return OK


def cmd_msetnx(ctx: Ctx, a: list) -> Any:
    if len(a) % 2 == 0:
        raise RError("ERR wrong number of arguments for 'msetnx' command")
    if any(lookup_write(ctx, a[i]) is not None for i in range(1, len(a), 2)):
        return 0
    for i in range(1, len(a), 2):
        set_value(ctx, a[i], a[i + 1])
    return 1


def cmd_getset(ctx: Ctx, a: list) -> Any:
    old = get_str(ctx, a[1], write=True)
    set_value(ctx, a[1], a[2])
    return old


def cmd_getdel(ctx: Ctx, a: list) -> Any:
    old = get_str(ctx, a[1], write=True)
    if old is not None:
        delete(ctx, a[1])
    return old


def cmd_getex(ctx: Ctx, a: list) -> Any:
    key = a[1]
    deadline = None
    persist = False
    if len(a) > 2:
        opt = a[2].upper()
        if opt == b"PERSIST" and len(a) == 3:
            persist = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and len(a) == 4:
            t = to_int(a[3])
            if t <= 0:
                raise RError("ERR invalid expire time in 'getex' command")
            deadline = {b"EX": ctx.now + t * 1000, b"PX": ctx.now + t, b"EXAT": t * 1000,
                        b"PXAT": t}[opt]
        else:
            raise RError(E_SYNTAX)
    v = get_str(ctx, key, write=True)
    if v is not None:
        if persist:
            ctx.expires.pop(key, None)
        elif deadline is not None:
            ctx.expires[key] = deadline
    return v


def cmd_append(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1], write=True)
    nv = (v or b"") + a[2]
    set_value(ctx, a[1], nv, keep_ttl=True)
    return len(nv)


def cmd_strlen(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1])
    return len(v) if v is not None else 0


def _range(start: int, end: int, n: int) -> tuple[int, int]:
    if start < 0:
        start = max(0, n + start)
    if end < 0:
        end = n + end
    end = min(end, n - 1)
    return start, end


def cmd_getrange(ctx: Ctx, a: list) -> Any:
    start, end = to_int(a[2]), to_int(a[3])
    v = get_str(ctx, a[1]) or b""
    if start < 0 and end < 0 and start > end:
        return b""
    s, e = _range(start, end, len(v))
    return v[s : e + 1] if s <= e else b""


def cmd_setrange(ctx: Ctx, a: list) -> Any:
    off = to_int(a[2])
    if off < 0 or off + len(a[3]) > 512 * 1024 * 1024:
        raise RError("ERR offset is out of range")
    v = get_str(ctx, a[1], write=True)
    if v is None and not a[3]:
        return 0
    v = v or b""
    if not a[3]:
        return len(v)
    if len(v) < off:
        v = v + bytes(off - len(v))
    nv = v[:off] + a[3] + v[off + len(a[3]) :]
    set_value(ctx, a[1], nv, keep_ttl=True)
    return len(nv)


def _incr(ctx: Ctx, key: bytes, by: int) -> int:
    v = get_str(ctx, key, write=True)
    cur = to_int(v) if v is not None else 0
    n = cur + by
    if not I64_MIN <= n <= I64_MAX:
        raise RError(E_OVERFLOW)
    set_value(ctx, key, b"%d" % n, keep_ttl=True)
    return n


def cmd_incr(ctx: Ctx, a: list) -> Any:
    return _incr(ctx, a[1], 1)


def cmd_decr(ctx: Ctx, a: list) -> Any:
    return _incr(ctx, a[1], -1)


def cmd_incrby(ctx: Ctx, a: list) -> Any:
    return _incr(ctx, a[1], to_int(a[2]))


def cmd_decrby(ctx: Ctx, a: list) -> Any:
    by = to_int(a[2])
    if by == I64_MIN:
        raise RError("ERR decrement would overflow")
    return _incr(ctx, a[1], -by)


def _ld(text: bytes, err: str) -> Fraction:
    if not _FLOAT_RE.match(text):
        raise RError(err)
    x = longdouble.parse(text)
    if x is None:
        if b"inf" in text.lower():  # strtold accepts infinity: the sum is what fails
            raise RError(E_NAN)
        raise RError(err)
    return x


def _ld_add(cur: bytes | None, by: Fraction, cur_err: str) -> bytes:
    """``cur + by`` as Redis computes and stores it (long double; see longdouble.py)."""
    c = _ld(cur, cur_err) if cur is not None else Fraction(0)
    n = longdouble.add(c, by)
    if longdouble.too_big(n):
        raise RError(E_NAN)
    return longdouble.human(n)


def cmd_incrbyfloat(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1], write=True)
    s = _ld_add(v, _ld(a[2], E_FLOAT), E_FLOAT)
    set_value(ctx, a[1], s, keep_ttl=True)
    return s


def cmd_lcs(ctx: Ctx, a: list) -> Any:
    x = get_str(ctx, a[1]) or b""
    y = get_str(ctx, a[2]) or b""
    want_len = False
    for opt in a[3:]:
        if opt.upper() == b"LEN":
            want_len = True
        else:
            raise RError(E_SYNTAX)
    m, n = len(x), len(y)
    prev = [0] * (n + 1)
    rows = [prev]
    for i in range(1, m + 1):
        cur = [0] * (n + 1)
        xi = x[i - 1]
        for j in range(1, n + 1):
            cur[j] = prev[j - 1] + 1 if xi == y[j - 1] else max(prev[j], cur[j - 1])
        rows.append(cur)
        prev = cur
    if want_len:
        return rows[m][n]
    out = bytearray()
    i, j = m, n
    while i and j:
        if x[i - 1] == y[j - 1]:
            out.append(x[i - 1])
            i -= 1
            j -= 1
        elif rows[i - 1][j] >= rows[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return bytes(reversed(out))


# ---------------------------------------------------------------------------- keys
def cmd_del(ctx: Ctx, a: list) -> Any:
    n = 0
    for k in a[1:]:
        if lookup_write(ctx, k) is not None:
            delete(ctx, k)
            n += 1
    return n


def cmd_exists(ctx: Ctx, a: list) -> Any:
    return sum(1 for k in a[1:] if lookup(ctx, k) is not None)


def cmd_type(ctx: Ctx, a: list) -> Any:
    from .replies import Status

    v = lookup(ctx, a[1])
    return Status("none") if v is None else Status(type_name(v).decode())


def cmd_rename(ctx: Ctx, a: list, nx: bool = False) -> Any:
    src, dst = a[1], a[2]
    v = lookup_write(ctx, src)
    if v is None:
        raise RError(E_NOKEY)
    if nx and lookup_write(ctx, dst) is not None:
        return 0
    exp = ctx.expires.get(src)
    if src == dst:
        return 1 if nx else OK
    delete(ctx, src)
    set_value(ctx, dst, v)
    if exp is not None:
        ctx.expires[dst] = exp
    return 1 if nx else OK


def cmd_renamenx(ctx: Ctx, a: list) -> Any:
    if a[1] == a[2]:
        if lookup_write(ctx, a[1]) is None:
            raise RError(E_NOKEY)
        return 0
    return cmd_rename(ctx, a, nx=True)


def live_keys(ctx: Ctx) -> list:
    now = ctx.now
    exp = ctx.expires
    return [k for k in ctx.data if (e := exp.get(k)) is None or e > now]


def glob_match(pattern: bytes, s: bytes) -> bool:
    """Redis glob (``* ? [abc] [^a] [a-z] \\x``)."""
    return _glob_re(pattern).match(s) is not None


_glob_cache: dict[bytes, Any] = {}


def _glob_re(pattern: bytes) -> Any:
    r = _glob_cache.get(pattern)
    if r is None:
        out = b""
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i : i + 1]
            if c == b"*":
                out += b".*"
            elif c == b"?":
                out += b"."
            elif c == b"\\" and i + 1 < n:
                i += 1
                out += re.escape(pattern[i : i + 1])
            elif c == b"[":
                j = pattern.find(b"]", i + 1)
                if j < 0:
                    out += re.escape(c)
                else:
                    body = pattern[i + 1 : j]
                    neg = body.startswith(b"^")
                    if neg:
                        body = body[1:]
                    body = body.replace(b"\\", b"\\\\")
                    out += b"[" + (b"^" if neg else b"") + body + b"]"
                    i = j
            else:
                out += re.escape(c)
            i += 1
        try:
            r = re.compile(out + b"\\Z", re.S)
        except re.error:
            r = re.compile(re.escape(pattern) + b"\\Z")
        if len(_glob_cache) < 1024:
            _glob_cache[pattern] = r
    return r


def cmd_keys(ctx: Ctx, a: list) -> Any:
    if a[1] == b"*":
        return live_keys(ctx)
    rx = _glob_re(a[1])
    return [k for k in live_keys(ctx) if rx.match(k)]


def _scan_args(a: list, start: int) -> tuple[Any, int, bytes | None]:
    pattern = None
    count = 10
    tfilter = None
    i = start
    while i < len(a):
        opt = a[i].upper()
        if opt == b"MATCH" and i + 1 < len(a):
            pattern = a[i + 1]
        elif opt == b"COUNT" and i + 1 < len(a):
            count = to_int(a[i + 1])
            if count < 1:
                raise RError(E_SYNTAX)
        elif opt == b"TYPE" and i + 1 < len(a) and start == 2:
            tfilter = a[i + 1].lower()
        else:
            raise RError(E_SYNTAX)
        i += 2
    return (_glob_re(pattern) if pattern is not None else None), count, tfilter


def _cursor(b: bytes) -> int:
    try:
        c = to_int(b)
    except RError:
        raise RError("ERR invalid cursor") from None
    if c < 0:
        raise RError("ERR invalid cursor")
    return c


def _scan_list(items: list, cursor: int, count: int) -> tuple[int, list]:
    chunk = items[cursor : cursor + count]
    nxt = cursor + count
    return (0 if nxt >= len(items) else nxt), chunk


def cmd_scan(ctx: Ctx, a: list) -> Any:
    cursor = _cursor(a[1])
    rx, count, tfilter = _scan_args(a, 2)
    keys = live_keys(ctx)
    nxt, chunk = _scan_list(keys, cursor, count)
    if rx is not None:
        chunk = [k for k in chunk if rx.match(k)]
    if tfilter is not None:
        chunk = [k for k in chunk if type_name(ctx.data[k]) == tfilter]
    return [b"%d" % nxt, chunk]


def cmd_dbsize(ctx: Ctx, a: list) -> Any:
    return len(live_keys(ctx))


def _ttl(ctx: Ctx, key: bytes, ms: bool, absolute: bool) -> int:
    if lookup(ctx, key) is None:
        return -2
    e = ctx.expires.get(key)
    if e is None:
        return -1
    if absolute:
        return e if ms else e // 1000
    left = e - ctx.now
    return left if ms else (left + 500) // 1000


def cmd_ttl(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], False, False)


def cmd_pttl(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], True, False)


def cmd_expiretime(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], False, True)


def cmd_pexpiretime(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], True, True)


def _expire(ctx: Ctx, a: list, unit: int, absolute: bool, name: str) -> Any:
    key = a[1]
    t = to_int(a[2])
    flags = {x.upper() for x in a[3:]}
    if flags - {b"NX", b"XX", b"GT", b"LT"}:
        raise RError(f"ERR Unsupported option {a[3 + 0].decode('utf-8', 'replace')}")
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        raise RError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        raise RError("ERR GT and LT options at the same time are not compatible")
    if abs(t) > I64_MAX // unit:
        raise RError(f"ERR invalid expire time in '{name}' command")
    deadline = t * unit if absolute else ctx.now + t * unit
    if lookup_write(ctx, key) is None:
        return 0
    cur = ctx.expires.get(key)
    if b"NX" in flags and cur is not None:
        return 0
    if b"XX" in flags and cur is None:
        return 0
    if b"GT" in flags and (cur is None or deadline <= cur):
        return 0
    if b"LT" in flags and cur is not None and deadline >= cur:
        return 0
    if deadline <= ctx.now:
        delete(ctx, key)
    else:
        ctx.expires[key] = deadline
    return 1


def cmd_expire(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1000, False, "expire")


def cmd_pexpire(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1, False, "pexpire")


def cmd_expireat(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1000, True, "expireat")


def cmd_pexpireat(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1, True, "pexpireat")


def cmd_persist(ctx: Ctx, a: list) -> Any:
    if lookup_write(ctx, a[1]) is None:
        return 0
    return 1 if ctx.expires.pop(a[1], None) is not None else 0


def _copy_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v
    if isinstance(v, dict):
        return dict(v.items())
    if isinstance(v, deque):
        return deque(v)
    if isinstance(v, set):
        return set(v)
    z = ZSet()
    for score, member in v.items():
        z.add(member, score)
    return z


def cmd_copy(ctx: Ctx, a: list) -> Any:
    src, dst = a[1], a[2]
    target = ctx.dbi
    replace = False
    i = 3
    while i < len(a):
        opt = a[i].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and i + 1 < len(a):
            target = to_int(a[i + 1])
            i += 1
        else:
            raise RError(E_SYNTAX)
        i += 1
    if not 0 <= target < len(ctx.state.dbs):
        raise RError(E_DB)
    v = lookup_write(ctx, src)
    if v is None:
        return 0
    exp = ctx.expires.get(src)
    tctx = Ctx(ctx.state, target, ctx.now)
    if src == dst and target == ctx.dbi:
        raise RError("ERR source and destination objects are the same")
    if lookup_write(tctx, dst) is not None:
        if not replace:
            return 0
        delete(tctx, dst)
    set_value(tctx, dst, _copy_value(v))
    if exp is not None:
        tctx.expires[dst] = exp
    return 1


def cmd_move(ctx: Ctx, a: list) -> Any:
    target = to_int(a[2], "ERR value is not an integer or out of range")
    if not 0 <= target < len(ctx.state.dbs):
        raise RError(E_DB)
    if target == ctx.dbi:
        raise RError("ERR source and destination objects are the same")
    v = lookup_write(ctx, a[1])
    tctx = Ctx(ctx.state, target, ctx.now)
    if v is None or lookup_write(tctx, a[1]) is not None:
        return 0
    exp = ctx.expires.get(a[1])
    delete(ctx, a[1])
    set_value(tctx, a[1], v)
    if exp is not None:
        tctx.expires[a[1]] = exp
    return 1


def cmd_swapdb(ctx: Ctx, a: list) -> Any:
    try:
        i, j = to_int(a[1]), to_int(a[2])
    except RError:
        raise RError("ERR invalid first DB index") from None
    n = len(ctx.state.dbs)
    if not (0 <= i < n and 0 <= j < n):
        raise RError(E_DB)
    dbs = ctx.state.dbs
    if i != j:
        dbs[i], dbs[j] = dbs[j], dbs[i]
        forget_views()
        ctx.select(ctx.dbi)  # the rest of a transaction sees the swapped databases
    return OK


def cmd_flushdb(ctx: Ctx, a: list) -> Any:
    if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"ASYNC", b"SYNC")):
        raise RError(E_SYNTAX)
    ctx.data.clear()
    ctx.expires.clear()
    return OK


def cmd_flushall(ctx: Ctx, a: list) -> Any:
    if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"ASYNC", b"SYNC")):
        raise RError(E_SYNTAX)
    for db in ctx.state.dbs:
        db.data.clear()
        db.expires.clear()
    return OK


def cmd_touch(ctx: Ctx, a: list) -> Any:
    return cmd_exists(ctx, a)


def cmd_object(ctx: Ctx, a: list) -> Any:
    sub = a[1].upper()
    if sub == b"HELP":
        return [b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"ENCODING <key>", b"FREQ <key>", b"IDLETIME <key>", b"REFCOUNT <key>"]
    if sub not in (b"ENCODING", b"FREQ", b"IDLETIME", b"REFCOUNT"):
        raise RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. "
                     "Try OBJECT HELP.")
    if len(a) != 3:
        raise RError(f"ERR wrong number of arguments for 'object|{sub.lower().decode()}' "
                     "command")
    v = lookup(ctx, a[2])
    if v is None:
        return None
    if sub == b"ENCODING":
        if isinstance(v, bytes):
            if _INT_RE.match(v) and len(v) <= 20:
                return b"int"
            return b"embstr" if len(v) <= 44 else b"raw"
        if isinstance(v, dict):
            return b"listpack" if len(v) <= 128 else b"hashtable"
        if isinstance(v, deque):
            return b"quicklist"
        if isinstance(v, set):
            return b"hashtable"
        return b"skiplist"
    if sub == b"FREQ":
        raise RError("ERR An LFU maxmemory policy is not selected, access frequency not "
                     "tracked. Please note that when switching between policies at runtime "
                     "LRU and LFU data will take some time to adjust.")
    if sub == b"IDLETIME":
        return 0
    if sub == b"REFCOUNT":
        return 1
    raise RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. "
                 "Try OBJECT HELP.")


def cmd_expired(ctx: Ctx, a: list) -> Any:
    """Internal: delete keys the active expiry cycle found past their deadline."""
    n = 0
    for k in a[1:]:
        e = ctx.expires.get(k)
        if e is not None and e <= ctx.now:
            delete(ctx, k)
            n += 1
    return n


# ---------------------------------------------------------------------------- hashes
def cmd_hset(ctx: Ctx, a: list) -> Any:
    if len(a) % 2 != 0 or len(a) < 4:
        raise RError(f"ERR wrong number of arguments for '{a[0].decode().lower()}' command")
    h = get_hash(ctx, a[1], write=True, create=True)
    n = 0
    for i in range(2, len(a), 2):
        if a[i] not in h:
            n += 1
        h[a[i]] = a[i + 1]
    return OK if a[0].lower() == b"hmset" else n


def cmd_hsetnx(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1], write=True, create=True)
    if a[2] in h:
        return 0
    h[a[2]] = a[3]
    return 1


def cmd_hget(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return h.get(a[2]) if h is not None else None


def cmd_hmget(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return [h.get(f) if h is not None else None for f in a[2:]]


def cmd_hdel(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1], write=True)
    if h is None:
        return 0
    n = 0
    for f in a[2:]:
        if h.pop(f, None) is not None:
            n += 1
    drop_if_empty(ctx, a[1], h)
    return n


def cmd_hexists(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return 1 if h is not None and a[2] in h else 0


def cmd_hlen(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return len(h) if h is not None else 0


def cmd_hstrlen(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    v = h.get(a[2]) if h is not None else None
    return len(v) if v is not None else 0


def cmd_hkeys(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return list(h.keys()) if h is not None else []


def cmd_hvals(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return list(h.values()) if h is not None else []


def cmd_hgetall(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return RMap(list(h.items())) if h is not None else RMap()


def cmd_hincrby(ctx: Ctx, a: list) -> Any:
    by = to_int(a[3])
    h = get_hash(ctx, a[1], write=True, create=True)
    cur = h.get(a[2])
    c = to_int(cur, E_HASH_INT) if cur is not None else 0
    n = c + by
    if not I64_MIN <= n <= I64_MAX:
        raise RError(E_OVERFLOW)
    h[a[2]] = b"%d" % n
    return n


def cmd_hincrbyfloat(ctx: Ctx, a: list) -> Any:
    # a bad increment is reported before the key is looked at
    if _FLOAT_RE.match(a[3]) and b"inf" in a[3].lower():
        raise RError("ERR value is NaN or Infinity")
    by = _ld(a[3], E_FLOAT)
    h = get_hash(ctx, a[1], write=True, create=True)
    s = _ld_add(h.get(a[2]), by, E_HASH_FLOAT)
    h[a[2]] = s
    return s


def cmd_hscan(ctx: Ctx, a: list) -> Any:
    cursor = _cursor(a[2])
    rx, count, _ = _scan_args(a, 3)
    h = get_hash(ctx, a[1])
    items = list(h.items()) if h is not None else []
    nxt, chunk = _scan_list(items, cursor, count)
    out = []
    for f, v in chunk:
        if rx is None or rx.match(f):
            out += [f, v]
    return [b"%d" % nxt, out]


# ---------------------------------------------------------------------------- lists
def _push(ctx: Ctx, a: list, left: bool, only_existing: bool) -> Any:
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        if only_existing:
            return 0
        lst = get_list(ctx, a[1], write=True, create=True)
    for v in a[2:]:
        if left:
            lst.appendleft(v)
        else:
            lst.append(v)
    return len(lst)


def cmd_lpush(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, True, False)


def cmd_rpush(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, False, False)


def cmd_lpushx(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, True, True)


def cmd_rpushx(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, False, True)


def _pop(ctx: Ctx, a: list, left: bool) -> Any:
    count = None
    if len(a) == 3:
        count = to_int(a[2], E_POSITIVE)
        if count < 0:
            raise RError(E_POSITIVE)
    elif len(a) > 3:
        raise RError(f"ERR wrong number of arguments for '{a[0].decode().lower()}' command")
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        return None
    if count is None:
        v = lst.popleft() if left else lst.pop()
        drop_if_empty(ctx, a[1], lst)
        return v
    out = []
    for _ in range(min(count, len(lst))):
        out.append(lst.popleft() if left else lst.pop())
    drop_if_empty(ctx, a[1], lst)
    return out


def cmd_lpop(ctx: Ctx, a: list) -> Any:
    return _pop(ctx, a, True)


def cmd_rpop(ctx: Ctx, a: list) -> Any:
    return _pop(ctx, a, False)


def cmd_llen(ctx: Ctx, a: list) -> Any:
    lst = get_list(ctx, a[1])
    return len(lst) if lst is not None else 0


def cmd_lindex(ctx: Ctx, a: list) -> Any:
    i = to_int(a[2])
    lst = get_list(ctx, a[1])
    if lst is None:
        return None
    n = len(lst)
    if i < 0:
        i += n
    return lst[i] if 0 <= i < n else None


def cmd_lset(ctx: Ctx, a: list) -> Any:
    i = to_int(a[2])
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        raise RError(E_NOKEY)
    n = len(lst)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise RError(E_RANGE)
    lst[i] = a[3]
    return OK


def cmd_lrange(ctx: Ctx, a: list) -> Any:
    start, end = to_int(a[2]), to_int(a[3])
    lst = get_list(ctx, a[1])
    if lst is None:
        return []
    s, e = _range(start, end, len(lst))
    if s > e:
        return []
    return list(islice(lst, s, e + 1))


def cmd_ltrim(ctx: Ctx, a: list) -> Any:
    start, end = to_int(a[2]), to_int(a[3])
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        return OK
    n = len(lst)
    s, e = _range(start, end, n)
    if s > e or s >= n:
        delete(ctx, a[1])
        return OK
    for _ in range(n - 1 - e):
        lst.pop()
    for _ in range(s):
        lst.popleft()
    return OK


def cmd_lrem(ctx: Ctx, a: list) -> Any:
    count = to_int(a[2])
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        return 0
    items = list(lst)
    removed = 0
    keep: list = []
    if count >= 0:
        for v in items:
            if v == a[3] and (count == 0 or removed < count):
                removed += 1
            else:
                keep.append(v)
    else:
        for v in reversed(items):
            if v == a[3] and removed < -count:
                removed += 1
            else:
                keep.append(v)
        keep.reverse()
    if removed:
        lst.clear()
        lst.extend(keep)
        drop_if_empty(ctx, a[1], lst)
    return removed


def cmd_linsert(ctx: Ctx, a: list) -> Any:
    where = a[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise RError(E_SYNTAX)
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        return 0
    items = list(lst)
    try:
        i = items.index(a[3])
    except ValueError:
        return -1
    lst.insert(i if where == b"BEFORE" else i + 1, a[4])
    return len(lst)


def cmd_lpos(ctx: Ctx, a: list) -> Any:
    rank, count, maxlen = 1, None, 0
    i = 3
    while i < len(a):
        opt = a[i].upper()
        if i + 1 >= len(a):
            raise RError(E_SYNTAX)
        if opt == b"RANK":
            rank = to_int(a[i + 1])
            if rank == 0:
                raise RError("ERR RANK can't be zero: use 1 to start from the first match, "
                             "2 from the second ... or use negative to start from the end "
                             "of the list")
        elif opt == b"COUNT":
            count = to_int(a[i + 1])
            if count < 0:
                raise RError("ERR COUNT can't be negative")
        elif opt == b"MAXLEN":
            maxlen = to_int(a[i + 1])
            if maxlen < 0:
                raise RError("ERR MAXLEN can't be negative")
        else:
            raise RError(E_SYNTAX)
        i += 2
    lst = get_list(ctx, a[1])
    if lst is None:
        return [] if count is not None else None
    items = list(lst)
    idx = range(len(items)) if rank > 0 else range(len(items) - 1, -1, -1)
    skip = abs(rank) - 1
    found = []
    for scanned, j in enumerate(idx):
        if maxlen and scanned >= maxlen:
            break
        if items[j] == a[2]:
            if skip:
                skip -= 1
                continue
            found.append(j)
            if count is None or (count and len(found) >= count):
                break
    if count is None:
        return found[0] if found else None
    return found


def _move(ctx: Ctx, src: bytes, dst: bytes, wherefrom: bytes, whereto: bytes) -> Any:
    sl = get_list(ctx, src, write=True)
    if sl is None:
        return None
    dl = get_list(ctx, dst, write=True)
    v = sl.popleft() if wherefrom == b"LEFT" else sl.pop()
    if src == dst:
        sl.appendleft(v) if whereto == b"LEFT" else sl.append(v)
        return v
    drop_if_empty(ctx, src, sl)
    if dl is None:
        dl = get_list(ctx, dst, write=True, create=True)
    dl.appendleft(v) if whereto == b"LEFT" else dl.append(v)
    return v


def cmd_rpoplpush(ctx: Ctx, a: list) -> Any:
    get_list(ctx, a[2])  # type check of the destination first
    return _move(ctx, a[1], a[2], b"RIGHT", b"LEFT")


def cmd_lmove(ctx: Ctx, a: list) -> Any:
    wf, wt = a[3].upper(), a[4].upper()
    if wf not in (b"LEFT", b"RIGHT") or wt not in (b"LEFT", b"RIGHT"):
        raise RError(E_SYNTAX)
    get_list(ctx, a[2])
    return _move(ctx, a[1], a[2], wf, wt)


def parse_mpop(a: list, first: int, kinds: tuple) -> tuple[list, bytes, int]:
    """numkeys key... (LEFT|RIGHT|MIN|MAX) [COUNT n] -> (keys, where, count)."""
    try:
        numkeys = to_int(a[first])
    except RError:
        raise RError("ERR numkeys should be greater than 0") from None
    if numkeys <= 0:
        raise RError("ERR numkeys should be greater than 0")
    if len(a) < first + 2 + numkeys:
        raise RError(E_SYNTAX)
    keys = a[first + 1 : first + 1 + numkeys]
    where = a[first + 1 + numkeys].upper()
    if where not in kinds:
        raise RError(E_SYNTAX)
    rest = a[first + 2 + numkeys :]
    count = 1
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"COUNT":
            raise RError(E_SYNTAX)
        count = to_int(rest[1])
        if count <= 0:
            raise RError("ERR count should be greater than 0")
    return keys, where, count


def cmd_lmpop(ctx: Ctx, a: list) -> Any:
    keys, where, count = parse_mpop(a, 1, (b"LEFT", b"RIGHT"))
    for k in keys:
        lst = get_list(ctx, k, write=True)
        if lst:
            out = [lst.popleft() if where == b"LEFT" else lst.pop()
                   for _ in range(min(count, len(lst)))]
            drop_if_empty(ctx, k, lst)
            return [k, out]
    return None


# ---------------------------------------------------------------------------- sets
def cmd_sadd(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1], write=True, create=True)
    n = 0
    for m in a[2:]:
        if m not in s:
            s.add(m)
            n += 1
    return n


def cmd_srem(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1], write=True)
    if s is None:
        return 0
    n = 0
    for m in a[2:]:
        if m in s:
            s.discard(m)
            n += 1
    drop_if_empty(ctx, a[1], s)
    return n


def cmd_smembers(ctx: Ctx, a: list) -> Any:
    from .replies import RSet

    s = get_set(ctx, a[1])
    return RSet(s) if s is not None else RSet()


def cmd_sismember(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return 1 if s is not None and a[2] in s else 0


def cmd_smismember(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return [1 if s is not None and m in s else 0 for m in a[2:]]


def cmd_scard(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return len(s) if s is not None else 0


def cmd_spop_members(ctx: Ctx, a: list) -> Any:
    """Internal: SPOP / SRANDMEMBER-with-removal resolved to explicit members.

    argv: (b"\\x00spop", key, single, member...) where single is b"1" for the
    count-less form.
    """
    s = get_set(ctx, a[1], write=True)
    if s is None:
        return None if a[2] == b"1" else []
    out = []
    for m in a[3:]:
        if m in s:
            s.discard(m)
            out.append(m)
    drop_if_empty(ctx, a[1], s)
    if a[2] == b"1":
        return out[0] if out else None
    return out


def cmd_smove(ctx: Ctx, a: list) -> Any:
    src = get_set(ctx, a[1], write=True)
    dst = get_set(ctx, a[2], write=True)
    if src is None or a[3] not in src:
        return 0
    if a[1] == a[2]:
        return 1
    src.discard(a[3])
    drop_if_empty(ctx, a[1], src)
    if dst is None:
        dst = get_set(ctx, a[2], write=True, create=True)
    dst.add(a[3])
    return 1


def _sets(ctx: Ctx, keys: list, write: bool = False) -> list:
    return [get_set(ctx, k, write=write) for k in keys]


def _sinter(sets: list) -> set:
    if any(s is None for s in sets):
        return set()
    sets = sorted(sets, key=len)
    out = set(sets[0])
    for s in sets[1:]:
        out = {m for m in out if m in s}
    return out


def _sunion(sets: list) -> set:
    out: set = set()
    for s in sets:
        if s is not None:
            out.update(s)
    return out


def _sdiff(sets: list) -> set:
    if sets[0] is None:
        return set()
    out = set(sets[0])
    for s in sets[1:]:
        if s is not None:
            out = {m for m in out if m not in s}
    return out


def _sorted_members(s: set) -> list:
    # Stores are built in a deterministic order, independent of native set order.
    return sorted(s)


def cmd_sinter(ctx: Ctx, a: list) -> Any:
    from .replies import RSet

    return RSet(_sinter(_sets(ctx, a[1:])))


def cmd_sunion(ctx: Ctx, a: list) -> Any:
    from .replies import RSet

    return RSet(_sunion(_sets(ctx, a[1:])))


def cmd_sdiff(ctx: Ctx, a: list) -> Any:
    from .replies import RSet

    return RSet(_sdiff(_sets(ctx, a[1:])))


def cmd_sintercard(ctx: Ctx, a: list) -> Any:
    n = to_int(a[1])
    if n <= 0:
        raise RError("ERR numkeys should be greater than 0")
    if len(a) < 2 + n:
        raise RError("ERR Number of keys can't be greater than number of args")
    limit = 0
    rest = a[2 + n :]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            raise RError(E_SYNTAX)
        limit = to_int(rest[1])
        if limit < 0:
            raise RError("ERR LIMIT can't be negative")
    c = len(_sinter(_sets(ctx, a[2 : 2 + n])))
    return min(c, limit) if limit else c


def _store_set(ctx: Ctx, dst: bytes, members: set) -> int:
    delete(ctx, dst)
    if members:
        s = get_set(ctx, dst, write=True, create=True)
        for m in _sorted_members(members):
            s.add(m)
    return len(members)


def cmd_sinterstore(ctx: Ctx, a: list) -> Any:
    return _store_set(ctx, a[1], _sinter(_sets(ctx, a[2:], True)))


def cmd_sunionstore(ctx: Ctx, a: list) -> Any:
    return _store_set(ctx, a[1], _sunion(_sets(ctx, a[2:], True)))


def cmd_sdiffstore(ctx: Ctx, a: list) -> Any:
    return _store_set(ctx, a[1], _sdiff(_sets(ctx, a[2:], True)))


def cmd_sscan(ctx: Ctx, a: list) -> Any:
    cursor = _cursor(a[2])
    rx, count, _ = _scan_args(a, 3)
    s = get_set(ctx, a[1])
    items = sorted(s) if s is not None else []
    nxt, chunk = _scan_list(items, cursor, count)
    if rx is not None:
        chunk = [m for m in chunk if rx.match(m)]
    return [b"%d" % nxt, chunk]


# ---------------------------------------------------------------------------- sorted sets
def cmd_zadd(ctx: Ctx, a: list) -> Any:
    flags = set()
    i = 2
    while i < len(a) and a[i].upper() in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
        flags.add(a[i].upper())
        i += 1
    pairs = a[i:]
    if not pairs or len(pairs) % 2:
        raise RError(E_SYNTAX)
    if b"NX" in flags and b"XX" in flags:
        raise RError("ERR XX and NX options at the same time are not compatible")
    if (b"GT" in flags and b"LT" in flags) or (b"NX" in flags and flags & {b"GT", b"LT"}):
        raise RError("ERR GT, LT, and/or NX options at the same time are not compatible")
    incr = b"INCR" in flags
    if incr and len(pairs) != 2:
        raise RError("ERR INCR option supports a single increment-element pair")
    scores = [to_float(pairs[j]) for j in range(0, len(pairs), 2)]
    z = get_zset(ctx, a[1], write=True)
    if z is None:
        if b"XX" in flags:
            return None if incr else 0
        z = get_zset(ctx, a[1], write=True, create=True)
    added = changed = 0
    result = None
    for sc, j in zip(scores, range(1, len(pairs), 2), strict=True):
        m = pairs[j]
        cur = z.scores.get(m)
        if cur is None:
            if b"XX" in flags:
                continue
            new = sc
            if incr and math.isnan(new):
                raise RError("ERR resulting score is not a number (NaN)")
            z.add(m, new)
            added += 1
            result = new
            continue
        if b"NX" in flags:
            continue
        new = cur + sc if incr else sc
        if math.isnan(new):
            raise RError("ERR resulting score is not a number (NaN)")
        if (b"GT" in flags and new <= cur) or (b"LT" in flags and new >= cur):
            continue
        if new != cur:
            z.add(m, new)
            changed += 1
        result = new
    drop_if_empty(ctx, a[1], z)
    if incr:
        return RDouble(result) if result is not None else None
    return added + changed if b"CH" in flags else added


def cmd_zincrby(ctx: Ctx, a: list) -> Any:
    by = to_float(a[2])
    z = get_zset(ctx, a[1], write=True, create=True)
    new = z.scores.get(a[3], 0.0) + by
    if math.isnan(new):
        raise RError("ERR resulting score is not a number (NaN)")
    z.add(a[3], new)
    return RDouble(new)


def cmd_zrem(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1], write=True)
    if z is None:
        return 0
    n = sum(1 for m in a[2:] if z.discard(m))
    drop_if_empty(ctx, a[1], z)
    return n


def cmd_zcard(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    return len(z) if z is not None else 0


def cmd_zscore(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    s = z.scores.get(a[2]) if z is not None else None
    return RDouble(s) if s is not None else None


def cmd_zmscore(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    out = []
    for m in a[2:]:
        s = z.scores.get(m) if z is not None else None
        out.append(RDouble(s) if s is not None else None)
    return out


def _score_bound(b: bytes) -> tuple[float, bool]:
    """(value, exclusive)"""
    if b.startswith(b"("):
        return to_float(b[1:], "ERR min or max is not a float"), True
    return to_float(b, "ERR min or max is not a float"), False


def _lex_bound(b: bytes) -> tuple[Any, bool]:
    if b == b"-":
        return _NEG, False
    if b == b"+":
        return _POS, False
    if b[:1] == b"(":
        return b[1:], True
    if b[:1] == b"[":
        return b[1:], False
    raise RError("ERR min or max not valid string range item")


class _Inf:
    def __init__(self, sign: int) -> None:
        self.sign = sign


_NEG, _POS = _Inf(-1), _Inf(1)


def _lex_ge(m: bytes, lo: Any, excl: bool) -> bool:
    if lo is _NEG:
        return True
    if lo is _POS:
        return False
    return m > lo if excl else m >= lo


def _lex_le(m: bytes, hi: Any, excl: bool) -> bool:
    if hi is _POS:
        return True
    if hi is _NEG:
        return False
    return m < hi if excl else m <= hi


def _in_score(s: float, lo: float, lox: bool, hi: float, hix: bool) -> bool:
    return (s > lo if lox else s >= lo) and (s < hi if hix else s <= hi)


def cmd_zcount(ctx: Ctx, a: list) -> Any:
    lo, lox = _score_bound(a[2])
    hi, hix = _score_bound(a[3])
    z = get_zset(ctx, a[1])
    if z is None:
        return 0
    return sum(1 for s, _ in z.items() if _in_score(s, lo, lox, hi, hix))


def cmd_zlexcount(ctx: Ctx, a: list) -> Any:
    lo, lox = _lex_bound(a[2])
    hi, hix = _lex_bound(a[3])
    z = get_zset(ctx, a[1])
    if z is None:
        return 0
    return sum(1 for _, m in z.items() if _lex_ge(m, lo, lox) and _lex_le(m, hi, hix))


def cmd_zrank(ctx: Ctx, a: list, rev: bool = False) -> Any:
    withscore = False
    if len(a) == 4:
        if a[3].upper() != b"WITHSCORE":
            raise RError(E_SYNTAX)
        withscore = True
    elif len(a) > 4:
        raise RError(E_SYNTAX)
    z = get_zset(ctx, a[1])
    r = z.rank(a[2]) if z is not None else None
    if r is None:
        return None
    if rev:
        r = len(z) - 1 - r
    return [r, RDouble(z.scores[a[2]])] if withscore else r


def cmd_zrevrank(ctx: Ctx, a: list) -> Any:
    return cmd_zrank(ctx, a, rev=True)


def _zrange_select(z: Any, a: list, start_i: int, by: bytes | None, rev: bool,
                   limit: tuple[int, int] | None) -> list:
    """The (score, member) items selected by a ZRANGE-family query."""
    items = z.items() if z is not None else []
    lo_b, hi_b = a[start_i], a[start_i + 1]
    if by is None:
        start, end = to_int(lo_b), to_int(hi_b)
        n = len(items)
        s, e = _range(start, end, n)
        if s > e or s >= n:
            return []
        if rev:
            items = items[::-1]
        return items[s : e + 1]
    if by == b"SCORE":
        if rev:
            lo_b, hi_b = hi_b, lo_b
        lo, lox = _score_bound(lo_b)
        hi, hix = _score_bound(hi_b)
        sel = [it for it in items if _in_score(it[0], lo, lox, hi, hix)]
    else:
        if rev:
            lo_b, hi_b = hi_b, lo_b
        lo, lox = _lex_bound(lo_b)
        hi, hix = _lex_bound(hi_b)
        sel = [it for it in items if _lex_ge(it[1], lo, lox) and _lex_le(it[1], hi, hix)]
    if rev:
        sel = sel[::-1]
    if limit is not None:
        off, cnt = limit
        if off < 0:
            return []
        sel = sel[off:] if cnt < 0 else sel[off : off + cnt]
    return sel


def _zrange_parse(a: list, first: int, allow_withscores: bool = True
                  ) -> tuple[bytes | None, bool, tuple | None, bool]:
    by = None
    rev = False
    limit = None
    withscores = False
    i = first
    while i < len(a):
        opt = a[i].upper()
        if opt == b"BYSCORE":
            by = b"SCORE"
        elif opt == b"BYLEX":
            by = b"LEX"
        elif opt == b"REV":
            rev = True
        elif opt == b"WITHSCORES" and allow_withscores:
            withscores = True
        elif opt == b"LIMIT" and i + 2 < len(a):
            limit = (to_int(a[i + 1]), to_int(a[i + 2]))
            i += 2
        else:
            raise RError(E_SYNTAX)
        i += 1
    if limit is not None and by is None:
        raise RError("ERR syntax error, LIMIT is only supported in combination with either "
                     "BYSCORE or BYLEX")
    if withscores and by == b"LEX":
        raise RError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    return by, rev, limit, withscores


def _flat(sel: list, withscores: bool) -> list:
    if not withscores:
        return [m for _, m in sel]
    return RPairs([(m, RDouble(s)) for s, m in sel])


def cmd_zrange(ctx: Ctx, a: list) -> Any:
    by, rev, limit, ws = _zrange_parse(a, 4)
    return _flat(_zrange_select(get_zset(ctx, a[1]), a, 2, by, rev, limit), ws)


def _legacy_range(ctx: Ctx, a: list, by: bytes | None, rev: bool) -> Any:
    ws = False
    limit = None
    i = 4
    while i < len(a):
        opt = a[i].upper()
        if opt == b"WITHSCORES" and by != b"LEX":
            ws = True
        elif opt == b"LIMIT" and by is not None and i + 2 < len(a):
            limit = (to_int(a[i + 1]), to_int(a[i + 2]))
            i += 2
        else:
            raise RError(E_SYNTAX)
        i += 1
    return _flat(_zrange_select(get_zset(ctx, a[1]), a, 2, by, rev, limit), ws)


def cmd_zrangebyscore(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"SCORE", False)


def cmd_zrevrangebyscore(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"SCORE", True)


def cmd_zrangebylex(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"LEX", False)


def cmd_zrevrangebylex(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, b"LEX", True)


def cmd_zrevrange(ctx: Ctx, a: list) -> Any:
    return _legacy_range(ctx, a, None, True)


def _store_zset(ctx: Ctx, dst: bytes, items: list) -> int:
    delete(ctx, dst)
    if items:
        z = get_zset(ctx, dst, write=True, create=True)
        for s, m in items:
            z.add(m, s)
    return len(items)


def cmd_zrangestore(ctx: Ctx, a: list) -> Any:
    by, rev, limit, _ = _zrange_parse(a, 5, allow_withscores=False)
    sel = _zrange_select(get_zset(ctx, a[2], write=True), a, 3, by, rev, limit)
    return _store_zset(ctx, a[1], sel)


def _zpop(ctx: Ctx, key: bytes, count: int, maxside: bool) -> list:
    z = get_zset(ctx, key, write=True)
    if z is None:
        return []
    items = z.items()
    sel = items[::-1][:count] if maxside else items[:count]
    for _, m in sel:
        z.discard(m)
    drop_if_empty(ctx, key, z)
    return sel


def _zpop_cmd(ctx: Ctx, a: list, maxside: bool) -> Any:
    count = 1
    if len(a) == 3:
        count = to_int(a[2], E_POSITIVE)
        if count < 0:
            raise RError(E_POSITIVE)
    elif len(a) > 3:
        raise RError(E_SYNTAX)
    sel = _zpop(ctx, a[1], count, maxside)
    if len(a) == 2:  # without COUNT: a flat [member, score] in both protocols
        return [sel[0][1], RDouble(sel[0][0])] if sel else []
    return _flat(sel, True)


def cmd_zpopmin(ctx: Ctx, a: list) -> Any:
    return _zpop_cmd(ctx, a, False)


def cmd_zpopmax(ctx: Ctx, a: list) -> Any:
    return _zpop_cmd(ctx, a, True)


def cmd_zmpop(ctx: Ctx, a: list) -> Any:
    keys, where, count = parse_mpop(a, 1, (b"MIN", b"MAX"))
    for k in keys:
        z = get_zset(ctx, k, write=True)
        if z:
            sel = _zpop(ctx, k, count, where == b"MAX")
            return [k, [[m, RDouble(s)] for s, m in sel]]
    return None


def _zrem_range(ctx: Ctx, a: list, by: bytes | None) -> Any:
    z = get_zset(ctx, a[1], write=True)
    sel = _zrange_select(z, a, 2, by, False, None)
    for _, m in sel:
        z.discard(m)
    drop_if_empty(ctx, a[1], z)
    return len(sel)


def cmd_zremrangebyrank(ctx: Ctx, a: list) -> Any:
    return _zrem_range(ctx, a, None)


def cmd_zremrangebyscore(ctx: Ctx, a: list) -> Any:
    return _zrem_range(ctx, a, b"SCORE")


def cmd_zremrangebylex(ctx: Ctx, a: list) -> Any:
    return _zrem_range(ctx, a, b"LEX")


def _zsetop(ctx: Ctx, a: list, first: int, op: bytes, store: bool) -> tuple[list, bool]:
    n = to_int(a[first])
    if n <= 0:
        raise RError(f"ERR at least 1 input key is needed for '{a[0].decode().lower()}' "
                     "command")
    keys = a[first + 1 : first + 1 + n]
    if len(keys) < n:
        raise RError(E_SYNTAX)
    weights = [1.0] * n
    agg = b"SUM"
    ws = False
    i = first + 1 + n
    while i < len(a):
        opt = a[i].upper()
        if opt == b"WEIGHTS" and op != b"DIFF" and i + n < len(a):
            weights = [to_float(w, "ERR weight value is not a float") for w in a[i + 1 :
                                                                                 i + 1 + n]]
            i += n
        elif opt == b"AGGREGATE" and op != b"DIFF" and i + 1 < len(a):
            agg = a[i + 1].upper()
            if agg not in (b"SUM", b"MIN", b"MAX"):
                raise RError(E_SYNTAX)
            i += 1
        elif opt == b"WITHSCORES" and not store:
            ws = True
        else:
            raise RError(E_SYNTAX)
        i += 1
    srcs = []
    for k in keys:
        v = lookup_write(ctx, k) if store else lookup(ctx, k)
        if v is None:
            srcs.append({})
        elif isinstance(v, ZSet):
            srcs.append(dict(v.scores.items()))
        elif isinstance(v, set):
            srcs.append(dict.fromkeys(v, 1.0))
        else:
            raise RError(WRONGTYPE)
    if op == b"DIFF":
        res = {m: s for m, s in srcs[0].items() if not any(m in o for o in srcs[1:])}
    else:
        res: dict = {}
        combine = {b"SUM": lambda x, y: x + y, b"MIN": min, b"MAX": max}[agg]
        if op == b"INTER":
            members = [m for m in srcs[0] if all(m in o for o in srcs[1:])]
        else:
            members = []
            seen: set = set()
            for o in srcs:
                for m in o:
                    if m not in seen:
                        seen.add(m)
                        members.append(m)
        for m in members:
            acc = None
            for o, w in zip(srcs, weights, strict=True):
                if m in o:
                    v = o[m] * w
                    if math.isnan(v):
                        v = 0.0
                    acc = v if acc is None else combine(acc, v)
                    if acc is not None and math.isnan(acc):
                        acc = 0.0
            res[m] = acc
    items = sorted((s, m) for m, s in res.items())
    return items, ws


def _zop_cmd(ctx: Ctx, a: list, op: bytes) -> Any:
    items, ws = _zsetop(ctx, a, 1, op, False)
    return _flat(items, ws)


def cmd_zunion(ctx: Ctx, a: list) -> Any:
    return _zop_cmd(ctx, a, b"UNION")


def cmd_zinter(ctx: Ctx, a: list) -> Any:
    return _zop_cmd(ctx, a, b"INTER")


def cmd_zdiff(ctx: Ctx, a: list) -> Any:
    return _zop_cmd(ctx, a, b"DIFF")


def _zop_store(ctx: Ctx, a: list, op: bytes) -> Any:
    items, _ = _zsetop(ctx, a, 2, op, True)
    return _store_zset(ctx, a[1], items)


def cmd_zunionstore(ctx: Ctx, a: list) -> Any:
    return _zop_store(ctx, a, b"UNION")


def cmd_zinterstore(ctx: Ctx, a: list) -> Any:
    return _zop_store(ctx, a, b"INTER")


def cmd_zdiffstore(ctx: Ctx, a: list) -> Any:
    return _zop_store(ctx, a, b"DIFF")


def cmd_zintercard(ctx: Ctx, a: list) -> Any:
    n = to_int(a[1])
    if n <= 0:
        raise RError("ERR numkeys should be greater than 0")
    keys = a[2 : 2 + n]
    if len(keys) < n:
        raise RError("ERR Number of keys can't be greater than number of args")
    limit = 0
    rest = a[2 + n :]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            raise RError(E_SYNTAX)
        limit = to_int(rest[1])
        if limit < 0:
            raise RError("ERR LIMIT can't be negative")
    items, _ = _zsetop(ctx, [a[0], b"%d" % n, *keys], 1, b"INTER", False)
    return min(len(items), limit) if limit else len(items)


def cmd_zscan(ctx: Ctx, a: list) -> Any:
    cursor = _cursor(a[2])
    rx, count, _ = _scan_args(a, 3)
    z = get_zset(ctx, a[1])
    items = z.items() if z is not None else []
    nxt, chunk = _scan_list(items, cursor, count)
    out: list = []
    for s, m in chunk:
        if rx is None or rx.match(m):
            out += [m, fmt_double(s)]
    return [b"%d" % nxt, out]


def cmd_zrem_members(ctx: Ctx, a: list) -> Any:
    """Internal: ZPOP-like removal of explicit members (random choices resolved)."""
    z = get_zset(ctx, a[1], write=True)
    if z is None:
        return []
    out = []
    for m in a[2:]:
        s = z.scores.get(m)
        if s is not None:
            z.discard(m)
            out.append([m, RDouble(s)])
    drop_if_empty(ctx, a[1], z)
    return out


# ---------------------------------------------------------------------------- table
def _cmd_rand(ctx: Ctx, a: list) -> Any:
    from .chance import rand_op  # chance builds on this module

    return rand_op(ctx, a)


def _cmd_bpop(ctx: Ctx, a: list) -> Any:
    from .chance import bpop_op

    return bpop_op(ctx, a)


class Cmd:
    """A command: handler, arity (Redis convention), flags and key positions."""

    __slots__ = ("name", "fn", "arity", "write", "first", "last", "step", "flags")

    def __init__(self, name: str, fn: Callable, arity: int, write: bool, first: int = 1,
                 last: int = 1, step: int = 1, flags: tuple = ()) -> None:
        self.name = name
        self.fn = fn
        self.arity = arity
        self.write = write
        self.first, self.last, self.step = first, last, step
        self.flags = flags

    def keys(self, argv: list) -> list:
        if self.first == 0:
            return []
        last = self.last if self.last >= 0 else len(argv) + self.last
        return argv[self.first : last + 1 : self.step]


W, R = True, False
_T: list[tuple] = [
    # name, fn, arity, write, first, last, step
    ("get", cmd_get, 2, R), ("set", cmd_set, -3, W), ("setnx", cmd_setnx, 3, W),
    ("setex", cmd_setex, 4, W), ("psetex", cmd_psetex, 4, W),
    ("mget", cmd_mget, -2, R, 1, -1), ("mset", cmd_mset, -3, W, 1, -1, 2),
    ("msetnx", cmd_msetnx, -3, W, 1, -1, 2), ("getset", cmd_getset, 3, W),
    ("getdel", cmd_getdel, 2, W), ("getex", cmd_getex, -2, W), ("append", cmd_append, 3, W),
    ("strlen", cmd_strlen, 2, R), ("getrange", cmd_getrange, 4, R),
    ("substr", cmd_getrange, 4, R), ("setrange", cmd_setrange, 4, W),
    ("incr", cmd_incr, 2, W), ("decr", cmd_decr, 2, W), ("incrby", cmd_incrby, 3, W),
    ("decrby", cmd_decrby, 3, W), ("incrbyfloat", cmd_incrbyfloat, 3, W),
    ("lcs", cmd_lcs, -3, R, 1, 2),
    ("del", cmd_del, -2, W, 1, -1), ("unlink", cmd_del, -2, W, 1, -1),
    ("exists", cmd_exists, -2, R, 1, -1), ("type", cmd_type, 2, R),
    ("rename", cmd_rename, 3, W, 1, 2), ("renamenx", cmd_renamenx, 3, W, 1, 2),
    ("keys", cmd_keys, 2, R, 0, 0), ("scan", cmd_scan, -2, R, 0, 0),
    ("dbsize", cmd_dbsize, 1, R, 0, 0),
    ("expire", cmd_expire, -3, W), ("pexpire", cmd_pexpire, -3, W),
    ("expireat", cmd_expireat, -3, W), ("pexpireat", cmd_pexpireat, -3, W),
    ("ttl", cmd_ttl, 2, R), ("pttl", cmd_pttl, 2, R), ("expiretime", cmd_expiretime, 2, R),
    ("pexpiretime", cmd_pexpiretime, 2, R), ("persist", cmd_persist, 2, W),
    ("copy", cmd_copy, -3, W, 1, 2), ("move", cmd_move, 3, W), ("swapdb", cmd_swapdb, 3, W, 0, 0),
    ("flushdb", cmd_flushdb, -1, W, 0, 0), ("flushall", cmd_flushall, -1, W, 0, 0),
    ("touch", cmd_touch, -2, R, 1, -1), ("object", cmd_object, -2, R, 2, 2),
    ("hset", cmd_hset, -4, W), ("hmset", cmd_hset, -4, W), ("hsetnx", cmd_hsetnx, 4, W),
    ("hget", cmd_hget, 3, R), ("hmget", cmd_hmget, -3, R), ("hdel", cmd_hdel, -3, W),
    ("hexists", cmd_hexists, 3, R), ("hlen", cmd_hlen, 2, R), ("hstrlen", cmd_hstrlen, 3, R),
    ("hkeys", cmd_hkeys, 2, R), ("hvals", cmd_hvals, 2, R), ("hgetall", cmd_hgetall, 2, R),
    ("hincrby", cmd_hincrby, 4, W), ("hincrbyfloat", cmd_hincrbyfloat, 4, W),
    ("hscan", cmd_hscan, -3, R),
    ("lpush", cmd_lpush, -3, W), ("rpush", cmd_rpush, -3, W), ("lpushx", cmd_lpushx, -3, W),
    ("rpushx", cmd_rpushx, -3, W), ("lpop", cmd_lpop, -2, W), ("rpop", cmd_rpop, -2, W),
    ("llen", cmd_llen, 2, R), ("lindex", cmd_lindex, 3, R), ("lset", cmd_lset, 4, W),
    ("lrange", cmd_lrange, 4, R), ("ltrim", cmd_ltrim, 4, W), ("lrem", cmd_lrem, 4, W),
    ("linsert", cmd_linsert, 5, W), ("lpos", cmd_lpos, -3, R),
    ("rpoplpush", cmd_rpoplpush, 3, W, 1, 2), ("lmove", cmd_lmove, 5, W, 1, 2),
    ("lmpop", cmd_lmpop, -4, W, 0, 0),
    ("sadd", cmd_sadd, -3, W), ("srem", cmd_srem, -3, W), ("smembers", cmd_smembers, 2, R),
    ("sismember", cmd_sismember, 3, R), ("smismember", cmd_smismember, -3, R),
    ("scard", cmd_scard, 2, R), ("smove", cmd_smove, 4, W, 1, 2),
    ("sinter", cmd_sinter, -2, R, 1, -1), ("sintercard", cmd_sintercard, -3, R, 0, 0),
    ("sinterstore", cmd_sinterstore, -3, W, 1, -1), ("sunion", cmd_sunion, -2, R, 1, -1),
    ("sunionstore", cmd_sunionstore, -3, W, 1, -1), ("sdiff", cmd_sdiff, -2, R, 1, -1),
    ("sdiffstore", cmd_sdiffstore, -3, W, 1, -1), ("sscan", cmd_sscan, -3, R),
    ("zadd", cmd_zadd, -4, W), ("zincrby", cmd_zincrby, 4, W), ("zrem", cmd_zrem, -3, W),
    ("zcard", cmd_zcard, 2, R), ("zscore", cmd_zscore, 3, R), ("zmscore", cmd_zmscore, -3, R),
    ("zcount", cmd_zcount, 4, R), ("zlexcount", cmd_zlexcount, 4, R),
    ("zrank", cmd_zrank, -3, R), ("zrevrank", cmd_zrevrank, -3, R),
    ("zrange", cmd_zrange, -4, R), ("zrangestore", cmd_zrangestore, -5, W, 1, 2),
    ("zrangebyscore", cmd_zrangebyscore, -4, R),
    ("zrevrangebyscore", cmd_zrevrangebyscore, -4, R),
    ("zrangebylex", cmd_zrangebylex, -4, R), ("zrevrangebylex", cmd_zrevrangebylex, -4, R),
    ("zrevrange", cmd_zrevrange, -4, R), ("zpopmin", cmd_zpopmin, -2, W),
    ("zpopmax", cmd_zpopmax, -2, W), ("zmpop", cmd_zmpop, -4, W, 0, 0),
    ("zremrangebyrank", cmd_zremrangebyrank, 4, W),
    ("zremrangebyscore", cmd_zremrangebyscore, 4, W),
    ("zremrangebylex", cmd_zremrangebylex, 4, W),
    ("zunion", cmd_zunion, -3, R, 0, 0), ("zinter", cmd_zinter, -3, R, 0, 0),
    ("zdiff", cmd_zdiff, -3, R, 0, 0), ("zunionstore", cmd_zunionstore, -4, W, 1, 1),
    ("zinterstore", cmd_zinterstore, -4, W, 1, 1), ("zdiffstore", cmd_zdiffstore, -4, W, 1, 1),
    ("zintercard", cmd_zintercard, -3, R, 0, 0), ("zscan", cmd_zscan, -3, R),
    # internal operations (random choices and expiry resolved by the server)
    ("\x00spop", cmd_spop_members, -3, W), ("\x00zrem", cmd_zrem_members, -2, W),
    ("\x00rand", _cmd_rand, -3, W, 0, 0), ("\x00bpop", _cmd_bpop, -3, W, 0, 0),
    ("\x00expired", cmd_expired, -1, W, 1, -1),
]
COMMANDS: dict[bytes, Cmd] = {}
for _row in _T:
    _c = Cmd(*_row)
    COMMANDS[_row[0].encode()] = _c


def execute_op(state: Any, op: Any) -> Any:
    """``RedisState.apply``: run one logged write (or a whole MULTI/EXEC) on ``state``."""
    dbi, now, argv = op
    name = argv[0].lower()
    if name == b"exec":
        ctx = Ctx(state, dbi, now)  # (its own: SELECT inside a transaction moves it)
        out = []
        for sub in argv[1:]:
            sname = sub[0].lower()
            if sname == b"select":
                try:
                    ctx.select(int(sub[1]))
                    out.append(OK)
                except (ValueError, IndexError):
                    out.append(RError(E_DB))
                continue
            cmd = COMMANDS.get(sname)
            if cmd is None:
                out.append(RError(f"ERR unknown command '{sname.decode('utf-8', 'replace')}'"))
                continue
            try:
                out.append(cmd.fn(ctx, list(sub)))
            except RError as e:
                out.append(e)
        return out
    ctx = _views[2].get(dbi) if state is _views[0] else None
    if ctx is None:
        ctx = Ctx(state, dbi, now)
        _views[2][dbi] = ctx  # (Ctx() made the views this state's)
    else:
        ctx.now = now
    cmd = COMMANDS[name]
    try:
        return cmd.fn(ctx, list(argv))
    except RError as e:
        return e
