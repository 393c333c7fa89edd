"""Hash commands (values are ``dict``).
"""

from __future__ import annotations

from typing import Any

from ..encodings import encoding_of
from ..keyspace import (
    FLOAT_RE,
    I64_MAX,
    I64_MIN,
    Ctx,
    add_long_double,
    drop_if_empty,
    get_hash,
    parse_long_double,
    scan_args,
    scan_cursor,
    scan_slice,
    to_int,
)
from ..registry import command
from ..replies import (
    E_FLOAT,
    E_HASH_FLOAT,
    E_HASH_INT,
    E_OVERFLOW,
    OK,
    RError,
    RMap,
)


@command("hmset", arity=-4, flags=("write", "denyoom", "fast"))
@command("hset", arity=-4, flags=("write", "denyoom", "fast"))
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


@command("hsetnx", arity=4, flags=("write", "denyoom", "fast"))
def cmd_hsetnx(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1], write=True, create=True)
    if a[2] in h:
        return 0
    h[a[2]] = a[3]
    return 1


@command("hget", arity=3, flags=("readonly", "fast"))
def cmd_hget(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return h.get(a[2]) if h is not None else None


@command("hmget", arity=-3, flags=("readonly", "fast"))
def cmd_hmget(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return [h.get(f) if h is not None else None for f in a[2:]]


@command("hdel", arity=-3, flags=("write", "fast"))
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


@command("hexists", arity=3, flags=("readonly", "fast"))
def cmd_hexists(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return 1 if h is not None and a[2] in h else 0


@command("hlen", arity=2, flags=("readonly", "fast"))
def cmd_hlen(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return len(h) if h is not None else 0


@command("hstrlen", arity=3, flags=("readonly", "fast"))
def cmd_hstrlen(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    v = h.get(a[2]) if h is not None else None
    return len(v) if v is not None else 0


@command("hkeys", arity=2, flags=("readonly",))
def cmd_hkeys(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return list(h.keys()) if h is not None else []


@command("hvals", arity=2, flags=("readonly",))
def cmd_hvals(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return list(h.values()) if h is not None else []


@command("hgetall", arity=2, flags=("readonly",))
def cmd_hgetall(ctx: Ctx, a: list) -> Any:
    h = get_hash(ctx, a[1])
    return RMap(list(h.items())) if h is not None else RMap()


@command("hincrby", arity=4, flags=("write", "denyoom", "fast"))
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


@command("hincrbyfloat", arity=4, flags=("write", "denyoom", "fast"))
def cmd_hincrbyfloat(ctx: Ctx, a: list) -> Any:
    # a bad increment is reported before the key is looked at
    if FLOAT_RE.match(a[3]) and b"inf" in a[3].lower():
        raise RError("ERR value is NaN or Infinity")
    by = parse_long_double(a[3], E_FLOAT)
    h = get_hash(ctx, a[1], write=True, create=True)
    s = add_long_double(h.get(a[2]), by, E_HASH_FLOAT)
    h[a[2]] = s
    return s


@command("hscan", arity=-3, flags=("readonly",))
def cmd_hscan(ctx: Ctx, a: list) -> Any:
    cursor = scan_cursor(a[2])
    rx, count, _ = scan_args(a, 3)
    h = get_hash(ctx, a[1])
    items = list(h.items()) if h is not None else []
    if h is not None and encoding_of(h) == b"listpack":
        nxt, chunk = 0, items  # (Redis: a small encoding is returned in one call)
    else:
        nxt, chunk = scan_slice(items, cursor, count, key=lambda it: it[0])
    out = []
    for f, v in chunk:
        if rx is None or rx.match(f):
            out += [f, v]
    return [b"%d" % nxt, out]
