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
    RMap,
)


def _deadline(ctx: Ctx, opt: bytes, arg: bytes, name: str) -> int:
    """The absolute deadline (ms) of EX/PX/EXAT/PXAT ``arg``, with Redis's checks (positive,
    no overflow in the unit conversion or when the clock is added)."""
    t = to_int(arg)
    seconds = opt in (b"EX", b"EXAT")
    if t <= 0 or (seconds and t > I64_MAX // 1000):
        raise RError(f"ERR invalid expire time in '{name}' command")
    ms = t * 1000 if seconds else t
    if opt in (b"EX", b"PX"):
        ms += ctx.now
    if ms > I64_MAX:
        raise RError(f"ERR invalid expire time in '{name}' command")
    return ms


@command("get", arity=2, flags=("readonly", "fast"))
def cmd_get(ctx: Ctx, a: list) -> Any:
    v = ctx.data.get(a[1])
    if v is None or (type(v) is bytes and not ctx.expires):
        return v  # (the common case, without get_str's calls: no key, or a string and no TTLs)
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
            deadline = _deadline(ctx, opt, a[i + 1], "set")
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
            deadline = _deadline(ctx, opt, a[3], "getex")
        else:
            raise RError(E_SYNTAX)
    v = get_str(ctx, key, write=True)
    if v is not None:
        if persist:
            ctx.expires.pop(key, None)
        elif deadline is not None:
            ctx.expires[key] = deadline
    return v


E_TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"


def _check_setrange(server: Any, db: int, a: list) -> RError | None:
    """proto-max-bulk-len bounds the string SETRANGE would make (checked by the server
    before logging: the limit is configuration)."""
    try:
        off = to_int(a[2])
    except RError:
        return None  # (the handler answers that)
    if off < 0 or not a[3]:
        return None
    if off + len(a[3]) > server.cfg.proto_max_bulk_len:
        v = lookup(Ctx(server.state, db, server.now()), a[1])
        if v is None or isinstance(v, bytes):
            return RError(E_TOO_BIG)
    return None


def _check_append(server: Any, db: int, a: list) -> RError | None:
    v = lookup(Ctx(server.state, db, server.now()), a[1])
    cur = len(v) if isinstance(v, bytes) else 0
    return RError(E_TOO_BIG) if cur + len(a[2]) > server.cfg.proto_max_bulk_len else None


@command("append", arity=3, flags=("write", "denyoom", "fast"), precheck=_check_append)
def cmd_append(ctx: Ctx, a: list) -> Any:
    v = get_str(ctx, a[1], write=True)
    nv = (v or b"") + a[2]
    # (Redis: a new key takes the argument's encoding, an existing string becomes raw)
    set_value(ctx, a[1], nv, keep_ttl=True, raw=v is not None)
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


@command("setrange", arity=4, flags=("write", "denyoom"), precheck=_check_setrange)
def cmd_setrange(ctx: Ctx, a: list) -> Any:
    off = to_int(a[2])
    if off < 0:
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
    set_value(ctx, a[1], nv, keep_ttl=True, raw=True)
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
    """LCS with LEN, IDX, MINMATCHLEN and WITHMATCHLEN; the table walk breaks ties as
    Redis's does, so the string and the ranges are Redis's."""
    x, y = lookup(ctx, a[1]), lookup(ctx, a[2])
    if (x is not None and not isinstance(x, bytes)) or (y is not None
                                                        and not isinstance(y, bytes)):
        raise RError("ERR The specified keys must contain string values")
    x, y = x or b"", y or b""
    getlen = getidx = withmatchlen = False
    minmatchlen = 0
    j = 3
    while j < len(a):
        o = a[j].upper()
        if o == b"IDX":
            getidx = True
        elif o == b"LEN":
            getlen = True
        elif o == b"WITHMATCHLEN":
            withmatchlen = True
        elif o == b"MINMATCHLEN" and j + 1 < len(a):
            minmatchlen = max(to_int(a[j + 1]), 0)
            j += 1
        else:
            raise RError(E_SYNTAX)
        j += 1
    if getlen and getidx:
        raise RError("ERR If you want both the length and indexes, please just use IDX.")
    m, n = len(x), len(y)
    prev = [0] * (n + 1)
    rows = [prev]
    for i in range(1, m + 1):
        cur = [0] * (n + 1)
        xi = x[i - 1]
        for jj in range(1, n + 1):
            if xi == y[jj - 1]:
                cur[jj] = prev[jj - 1] + 1
            else:
                up, left = prev[jj], cur[jj - 1]
                cur[jj] = up if up > left else left
        rows.append(cur)
        prev = cur
    total = rows[m][n]
    if getlen:
        return total
    out = bytearray(total)
    idx = total
    matches = []
    a_start, a_end, b_start, b_end = m, 0, 0, 0  # (a_start == m: no range open)
    i, jj = m, n
    while i > 0 and jj > 0:
        emit = False
        if x[i - 1] == y[jj - 1]:
            out[idx - 1] = x[i - 1]
            if a_start == m:
                a_start = a_end = i - 1
                b_start = b_end = jj - 1
            elif a_start == i and b_start == jj:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            idx -= 1
            i -= 1
            jj -= 1
        else:
            if rows[i - 1][jj] > rows[i][jj - 1]:
                i -= 1
            else:
                jj -= 1
            if a_start != m:
                emit = True
        if emit:
            mlen = a_end - a_start + 1
            if minmatchlen == 0 or mlen >= minmatchlen:
                item: list = [[a_start, a_end], [b_start, b_end]]
                if withmatchlen:
                    item.append(mlen)
                matches.append(item)
            a_start = m
    if getidx:
        return RMap([(b"matches", matches), (b"len", total)])
    return bytes(out)
