"""String commands: GET/SET and their variants, counters, ranges, LCS.
"""

from __future__ import annotations

from typing import Any

from ..keyspace import (
    I64_MAX,
    I64_MIN,
    Ctx,
    add_long_double,
    delete,
    get_str,
    index_range,
    lookup,
    lookup_write,
    parse_long_double,
    set_value,
    to_int,
)
from ..registry import command
from ..replies import (
    E_FLOAT,
    E_OVERFLOW,
    E_SYNTAX,
    OK,
    WRONGTYPE,
    RError,
)


@command("get", arity=2, flags=("readonly", "fast"))
def cmd_get(ctx: Ctx, a: list) -> Any:
    return get_str(ctx, a[1])


@command("set", arity=-3, flags=("write", "denyoom"))
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


@command("setnx", arity=3, flags=("write", "denyoom", "fast"))
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


@command("setex", arity=4, flags=("write", "denyoom"))
def cmd_setex(ctx: Ctx, a: list) -> Any:
    return _setex(ctx, a, 1000, "setex")


@command("psetex", arity=4, flags=("write", "denyoom"))
def cmd_psetex(ctx: Ctx, a: list) -> Any:
    return _setex(ctx, a, 1, "psetex")


@command("mget", arity=-2, flags=("readonly", "fast"), keys=(1, -1, 1))
def cmd_mget(ctx: Ctx, a: list) -> Any:
    out = []
    for k in a[1:]:
        v = lookup(ctx, k)
        out.append(v if isinstance(v, bytes) else None)
    return out


@command("mset", arity=-3, flags=("write", "denyoom"), keys=(1, -1, 2))
def cmd_mset(ctx: Ctx, a: list) -> Any:
    if len(a) % 2 == 0:
        raise RError("ERR wrong number of arguments for 'mset' command")
    for i in range(1, len(a), 2):
        set_value(ctx, a[i], a[i + 1])
    return OK


@command("msetnx", arity=-3, flags=("write", "denyoom"), keys=(1, -1, 2))
def cmd_msetnx(ctx: Ctx, a: list) -> Any:
    if len(a) % 2 == 0:
        raise RError("ERR wrong number of arguments for 'msetnx' command")
    if any(lookup_write(ctx, a[i]) is not None for i in range(1, len(a), 2)):
        return 0
    for i in range(1, len(a), 2):
        set_value(ctx, a[i], a[i + 1])
    return 1


@command("getset", arity=3, flags=("write", "denyoom", "fast"))
def cmd_getset(ctx: Ctx, a: list) -> Any:
    old = get_str(ctx, a[1], write=True)
    set_value(ctx, a[1], a[2])
    return old


@command("getdel", arity=2, flags=("write", "fast"))
def cmd_getdel(ctx: Ctx, a: list) -> Any:
    old = get_str(ctx, a[1], write=True)
    if old is not None:
        delete(ctx, a[1])
    return old


@command("getex", arity=-2, flags=("write", "fast"))
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


@command("append", arity=3, flags=("write", "denyoom", "fast"))
def cmd_append(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1], write=True)
    nv = (v or b"") + a[2]
    set_value(ctx, a[1], nv, keep_ttl=True)
    return len(nv)


@command("strlen", arity=2, flags=("readonly", "fast"))
def cmd_strlen(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1])
    return len(v) if v is not None else 0


@command("substr", arity=4, flags=("readonly",))
@command("getrange", arity=4, flags=("readonly",))
def cmd_getrange(ctx: Ctx, a: list) -> Any:
    start, end = to_int(a[2]), to_int(a[3])
    v = get_str(ctx, a[1]) or b""
    if start < 0 and end < 0 and start > end:
        return b""
    s, e = index_range(start, end, len(v))
    return v[s : e + 1] if s <= e else b""


@command("setrange", arity=4, flags=("write", "denyoom"))
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


@command("incr", arity=2, flags=("write", "denyoom", "fast"))
def cmd_incr(ctx: Ctx, a: list) -> Any:
    return _incr(ctx, a[1], 1)


@command("decr", arity=2, flags=("write", "denyoom", "fast"))
def cmd_decr(ctx: Ctx, a: list) -> Any:
    return _incr(ctx, a[1], -1)


@command("incrby", arity=3, flags=("write", "denyoom", "fast"))
def cmd_incrby(ctx: Ctx, a: list) -> Any:
    return _incr(ctx, a[1], to_int(a[2]))


@command("decrby", arity=3, flags=("write", "denyoom", "fast"))
def cmd_decrby(ctx: Ctx, a: list) -> Any:
    by = to_int(a[2])
    if by == I64_MIN:
        raise RError("ERR decrement would overflow")
    return _incr(ctx, a[1], -by)


@command("incrbyfloat", arity=3, flags=("write", "denyoom", "fast"))
def cmd_incrbyfloat(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1], write=True)
    s = add_long_double(v, parse_long_double(a[2], E_FLOAT), E_FLOAT)
    set_value(ctx, a[1], s, keep_ttl=True)
    return s


@command("lcs", arity=-3, flags=("readonly",), keys=(1, 2, 1))
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
