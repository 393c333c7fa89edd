"""Key-space commands: DEL, EXISTS, TYPE, RENAME, KEYS, SCAN, expiry, COPY, MOVE,
SWAPDB, FLUSHDB/FLUSHALL, OBJECT, and the internal ``\\x00expired`` operation.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .. import rdb
from ..datatypes import ZSet, type_name
from ..encodings import encoding_of
from ..keyspace import (
    I64_MAX,
    I64_MIN,
    Ctx,
    changes,
    delete,
    forget_views,
    live_keys,
    lookup,
    lookup_write,
    scan_args,
    scan_cursor,
    scan_slice,
    set_value,
    to_int,
)
from ..patterns import compile_glob
from ..registry import command
from ..replies import (
    E_DB,
    E_NOKEY,
    E_SYNTAX,
    OK,
    RError,
    Status,
)
from ..stream import Stream


# ---------------------------------------------------------------------------- touches
# What FLUSHALL, FLUSHDB, SWAPDB, MOVE and COPY ... DB change beyond their key arguments,
# for WATCH and blocked clients (registry ``touches``: called by the server before the
# write runs, only while a client watches a key or is blocked).
def _live(server: Any, db: int, key: bytes) -> bool:
    return lookup(Ctx(server.state, db, server.now()), key) is not None


def _touches_flushall(server: Any, db: int, a: list) -> list:
    # (blocked clients too: a stream reader blocked in a group must learn its key is gone)
    return [(d, k) for (d, k) in server.watchers if _live(server, d, k)] + list(server.blocked)


def _touches_flushdb(server: Any, db: int, a: list) -> list:
    return [(d, k) for (d, k) in server.watchers if d == db and _live(server, d, k)] + \
        [(d, k) for (d, k) in server.blocked if d == db]


def _touches_swapdb(server: Any, db: int, a: list) -> list:
    try:
        pair = {int(a[1]), int(a[2])}
    except ValueError:
        return []
    if not all(0 <= d < len(server.state.dbs) for d in pair):
        return []
    out = [(d, k) for (d, k) in server.watchers
           if d in pair and any(_live(server, x, k) for x in pair)]
    return out + [(d, k) for (d, k) in server.blocked if d in pair]


def _touches_move(server: Any, db: int, a: list) -> list:
    try:
        return [(db, a[1]), (int(a[2]), a[1])]
    except ValueError:
        return [(db, a[1])]


def _touches_copy(server: Any, db: int, a: list) -> list:
    target = db
    for i in range(3, len(a) - 1):
        if a[i].upper() == b"DB":
            try:
                target = int(a[i + 1])
            except ValueError:
                pass
    return [(target, a[2])]


@command("unlink", arity=-2, flags=("write", "fast"), keys=(1, -1, 1))
@command("del", arity=-2, flags=("write",), keys=(1, -1, 1))
def cmd_del(ctx: Ctx, a: list) -> Any:
    n = 0
    for k in a[1:]:
        if lookup_write(ctx, k) is not None:
            delete(ctx, k)
            n += 1
    changes(n)
    return n


@command("exists", arity=-2, flags=("readonly", "fast"), keys=(1, -1, 1))
def cmd_exists(ctx: Ctx, a: list) -> Any:
    return sum(1 for k in a[1:] if lookup(ctx, k) is not None)


@command("type", arity=2, flags=("readonly", "fast"))
def cmd_type(ctx: Ctx, a: list) -> Any:
    v = lookup(ctx, a[1])
    return Status("none") if v is None else Status(type_name(v).decode())


@command("rename", arity=3, flags=("write",), keys=(1, 2, 1))
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


@command("renamenx", arity=3, flags=("write", "fast"), keys=(1, 2, 1))
def cmd_renamenx(ctx: Ctx, a: list) -> Any:
    if a[1] == a[2]:
        if lookup_write(ctx, a[1]) is None:
            raise RError(E_NOKEY)
        return 0
    return cmd_rename(ctx, a, nx=True)


@command("keys", arity=2, flags=("readonly",), keys=(0, 0, 1))
def cmd_keys(ctx: Ctx, a: list) -> Any:
    if a[1] == b"*":
        return live_keys(ctx)
    rx = compile_glob(a[1])
    return [k for k in live_keys(ctx) if rx.match(k)]


@command("scan", arity=-2, flags=("readonly", "touches-arbitrary-keys"), keys=(0, 0, 1))
def cmd_scan(ctx: Ctx, a: list) -> Any:
    cursor = scan_cursor(a[1])
    rx, count, tfilter = scan_args(a, 2)
    keys = live_keys(ctx)
    nxt, chunk = scan_slice(keys, cursor, count)
    if rx is not None:
        chunk = [k for k in chunk if rx.match(k)]
    if tfilter is not None:
        chunk = [k for k in chunk if type_name(ctx.data[k]) == tfilter]
    return [b"%d" % nxt, chunk]


@command("dbsize", arity=1, flags=("readonly", "fast"), keys=(0, 0, 1))
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


@command("ttl", arity=2, flags=("readonly", "fast"))
def cmd_ttl(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], False, False)


@command("pttl", arity=2, flags=("readonly", "fast"))
def cmd_pttl(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], True, False)


@command("expiretime", arity=2, flags=("readonly", "fast"))
def cmd_expiretime(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], False, True)


@command("pexpiretime", arity=2, flags=("readonly", "fast"))
def cmd_pexpiretime(ctx: Ctx, a: list) -> Any:
    return _ttl(ctx, a[1], True, True)


def _expire(ctx: Ctx, a: list, unit: int, absolute: bool, name: str) -> Any:
    key = a[1]
    t = to_int(a[2])
    flags = {x.upper() for x in a[3:]}
    for x in a[3:]:
        if x.upper() not in (b"NX", b"XX", b"GT", b"LT"):
            raise RError(f"ERR Unsupported option {x.decode('utf-8', 'replace')}")
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        raise RError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        raise RError("ERR GT and LT options at the same time are not compatible")
    err = f"ERR invalid expire time in '{name}' command"
    if unit == 1000 and not -(-I64_MIN // 1000) <= t <= I64_MAX // 1000:
        raise RError(err)  # (C's LLONG_MIN / 1000 truncates toward zero)
    base = 0 if absolute else ctx.now
    if t * unit > I64_MAX - base:
        raise RError(err)
    deadline = t * unit + base
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


@command("expire", arity=-3, flags=("write", "fast"))
def cmd_expire(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1000, False, "expire")


@command("pexpire", arity=-3, flags=("write", "fast"))
def cmd_pexpire(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1, False, "pexpire")


@command("expireat", arity=-3, flags=("write", "fast"))
def cmd_expireat(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1000, True, "expireat")


@command("pexpireat", arity=-3, flags=("write", "fast"))
def cmd_pexpireat(ctx: Ctx, a: list) -> Any:
    return _expire(ctx, a, 1, True, "pexpireat")


@command("persist", arity=2, flags=("write", "fast"))
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
    if isinstance(v, Stream):  # (entries, nodes, groups and PELs: a DUMP/RESTORE copy)
        return rdb.load(rdb.dump(v))
    z = ZSet()
    for score, member in v.items():
        z.add(member, score)
    return z


@command("copy", arity=-3, flags=("write", "denyoom"), keys=(1, 2, 1),
         touches=lambda s, db, a: [(db, a[1]), *_touches_copy(s, db, a)])
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


@command("move", arity=3, flags=("write", "fast"), touches=_touches_move)
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


@command("swapdb", arity=3, flags=("write", "fast"), keys=(0, 0, 1),
         touches=_touches_swapdb)
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


@command("flushdb", arity=-1, flags=("write",), keys=(0, 0, 1),
         touches=_touches_flushdb)
def cmd_flushdb(ctx: Ctx, a: list) -> Any:
    if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"ASYNC", b"SYNC")):
        raise RError(E_SYNTAX)
    ctx.data.clear()
    ctx.expires.clear()
    if ctx.raw:
        ctx.raw.clear()
    return OK


@command("flushall", arity=-1, flags=("write",), keys=(0, 0, 1),
         touches=_touches_flushall)
def cmd_flushall(ctx: Ctx, a: list) -> Any:
    if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"ASYNC", b"SYNC")):
        raise RError(E_SYNTAX)
    for db in ctx.state.dbs:
        db.data.clear()
        db.expires.clear()
        if db.raw:
            db.raw.clear()
    return OK


@command("touch", arity=-2, flags=("readonly", "fast"), keys=(1, -1, 1))
def cmd_touch(ctx: Ctx, a: list) -> Any:
    return cmd_exists(ctx, a)


@command("object", arity=-2, flags=(), keys=(2, 2, 1))
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
        if isinstance(v, bytes) and ctx.raw and a[2] in ctx.raw:
            return b"raw"
        return encoding_of(v)
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


@command("\x00error", arity=2, flags=("write", "internal"), keys=(0, 0, 0))
def cmd_error(ctx: Ctx, a: list) -> Any:
    """Internal: the place of a transaction's command the server refused before logging
    (its ``precheck``): answers that error and changes nothing."""
    return RError(a[1].decode("utf-8", "replace"))


@command("\x00expired", arity=-1, flags=("write", "internal"), keys=(1, -1, 1))
def cmd_expired(ctx: Ctx, a: list) -> Any:
    """Internal: delete keys the active expiry cycle found past their deadline."""
    n = 0
    for k in a[1:]:
        e = ctx.expires.get(k)
        if e is not None and e <= ctx.now:
            delete(ctx, k)
            n += 1
    return n
