"""Set commands (values are ``set``); stores insert members in sorted order, so both
copies build the same set.  SPOP's choice is the server's: ``\\x00spop`` removes it.
"""

from __future__ import annotations

from typing import Any

from ..encodings import encoding_of
from ..keyspace import (
    Ctx,
    changes,
    delete,
    drop_if_empty,
    get_set,
    lookup,
    scan_args,
    scan_cursor,
    scan_slice,
    to_int,
)
from ..registry import command
from ..replies import (
    E_SYNTAX,
    RError,
    RSet,
)


@command("sadd", arity=-3, flags=("write", "denyoom", "fast"))
def cmd_sadd(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1], write=True, create=True)
    n = 0
    for m in a[2:]:
        if m not in s:
            s.add(m)
            n += 1
    changes(n)
    return n


@command("srem", arity=-3, flags=("write", "fast"))
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
    changes(n)
    return n


@command("smembers", arity=2, flags=("readonly",))
def cmd_smembers(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return RSet(s) if s is not None else RSet()


@command("sismember", arity=3, flags=("readonly", "fast"))
def cmd_sismember(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return 1 if s is not None and a[2] in s else 0


@command("smismember", arity=-3, flags=("readonly", "fast"))
def cmd_smismember(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return [1 if s is not None and m in s else 0 for m in a[2:]]


@command("scard", arity=2, flags=("readonly", "fast"))
def cmd_scard(ctx: Ctx, a: list) -> Any:
    s = get_set(ctx, a[1])
    return len(s) if s is not None else 0


@command("\x00spop", arity=-3, flags=("write", "internal"))
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


def _touches_smove(server: Any, db: int, a: list) -> list:
    """SMOVE changes the source only if it holds the member, and the destination only if
    it does not hold it yet (WATCH sees exactly that, as in Redis)."""
    ctx = Ctx(server.state, db, server.now())
    src, dst = lookup(ctx, a[1]), lookup(ctx, a[2])
    if not isinstance(src, set) or a[3] not in src:
        return []
    return [(db, a[1])] + ([] if isinstance(dst, set) and a[3] in dst else [(db, a[2])])


@command("smove", arity=4, flags=("write", "fast"), keys=(1, 2, 1), touches=_touches_smove)
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


@command("sinter", arity=-2, flags=("readonly",), keys=(1, -1, 1))
def cmd_sinter(ctx: Ctx, a: list) -> Any:
    return RSet(_sinter(_sets(ctx, a[1:])))


@command("sunion", arity=-2, flags=("readonly",), keys=(1, -1, 1))
def cmd_sunion(ctx: Ctx, a: list) -> Any:
    return RSet(_sunion(_sets(ctx, a[1:])))


@command("sdiff", arity=-2, flags=("readonly",), keys=(1, -1, 1))
def cmd_sdiff(ctx: Ctx, a: list) -> Any:
    return RSet(_sdiff(_sets(ctx, a[1:])))


@command("sintercard", arity=-3, flags=("readonly",), keys=(0, 0, 1))
def cmd_sintercard(ctx: Ctx, a: list) -> Any:
    n = to_int(a[1], "ERR numkeys should be greater than 0")
    if n <= 0:
        raise RError("ERR numkeys should be greater than 0")
    if len(a) < 2 + n:
        raise RError("ERR Number of keys can't be greater than number of args")
    limit = 0
    rest = a[2 + n :]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            raise RError(E_SYNTAX)
        limit = to_int(rest[1], "ERR LIMIT can't be negative")
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


@command("sinterstore", arity=-3, flags=("write", "denyoom"), keys=(1, -1, 1))
def cmd_sinterstore(ctx: Ctx, a: list) -> Any:
    return _store_set(ctx, a[1], _sinter(_sets(ctx, a[2:], True)))


@command("sunionstore", arity=-3, flags=("write", "denyoom"), keys=(1, -1, 1))
def cmd_sunionstore(ctx: Ctx, a: list) -> Any:
    return _store_set(ctx, a[1], _sunion(_sets(ctx, a[2:], True)))


@command("sdiffstore", arity=-3, flags=("write", "denyoom"), keys=(1, -1, 1))
def cmd_sdiffstore(ctx: Ctx, a: list) -> Any:
    return _store_set(ctx, a[1], _sdiff(_sets(ctx, a[2:], True)))


@command("sscan", arity=-3, flags=("readonly",))
def cmd_sscan(ctx: Ctx, a: list) -> Any:
    cursor = scan_cursor(a[2])
    rx, count, _ = scan_args(a, 3)
    s = get_set(ctx, a[1])
    items = list(s) if s is not None else []
    if s is not None and encoding_of(s) == b"intset":
        nxt, chunk = 0, sorted(items, key=int)  # (Redis: an intset in one call, in order)
    else:
        nxt, chunk = scan_slice(items, cursor, count)
    if rx is not None:
        chunk = [m for m in chunk if rx.match(m)]
    return [b"%d" % nxt, chunk]
