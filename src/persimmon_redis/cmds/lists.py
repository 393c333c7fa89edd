"""List commands (values are ``deque``); the blocking forms are in ``chance.py``.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from ..keyspace import (
    Ctx,
    delete,
    drop_if_empty,
    get_list,
    index_range,
    parse_mpop,
    to_int,
)
from ..registry import command
from ..replies import (
    E_NOKEY,
    E_POSITIVE,
    E_RANGE,
    E_SYNTAX,
    NULL_ARRAY,
    OK,
    RError,
)


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


@command("lpush", arity=-3, flags=("write", "denyoom", "fast"))
def cmd_lpush(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, True, False)


@command("rpush", arity=-3, flags=("write", "denyoom", "fast"))
def cmd_rpush(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, False, False)


@command("lpushx", arity=-3, flags=("write", "denyoom", "fast"))
def cmd_lpushx(ctx: Ctx, a: list) -> Any:
    return _push(ctx, a, True, True)


@command("rpushx", arity=-3, flags=("write", "denyoom", "fast"))
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
        return None if count is None else NULL_ARRAY  # (RESP2: *-1 with a count)
    if count is None:
        v = lst.popleft() if left else lst.pop()
        drop_if_empty(ctx, a[1], lst)
        return v
    out = []
    for _ in range(min(count, len(lst))):
        out.append(lst.popleft() if left else lst.pop())
    drop_if_empty(ctx, a[1], lst)
    return out


@command("lpop", arity=-2, flags=("write", "fast"))
def cmd_lpop(ctx: Ctx, a: list) -> Any:
    return _pop(ctx, a, True)


@command("rpop", arity=-2, flags=("write", "fast"))
def cmd_rpop(ctx: Ctx, a: list) -> Any:
    return _pop(ctx, a, False)


@command("llen", arity=2, flags=("readonly", "fast"))
def cmd_llen(ctx: Ctx, a: list) -> Any:
    lst = get_list(ctx, a[1])
    return len(lst) if lst is not None else 0


@command("lindex", arity=3, flags=("readonly",))
def cmd_lindex(ctx: Ctx, a: list) -> Any:
    i = to_int(a[2])
    lst = get_list(ctx, a[1])
    if lst is None:
        return None
    n = len(lst)
    if i < 0:
        i += n
    return lst[i] if 0 <= i < n else None


@command("lset", arity=4, flags=("write", "denyoom"))
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


@command("lrange", arity=4, flags=("readonly",))
def cmd_lrange(ctx: Ctx, a: list) -> Any:
    start, end = to_int(a[2]), to_int(a[3])
    lst = get_list(ctx, a[1])
    if lst is None:
        return []
    s, e = index_range(start, end, len(lst))
    if s > e:
        return []
    return list(islice(lst, s, e + 1))


@command("ltrim", arity=4, flags=("write",))
def cmd_ltrim(ctx: Ctx, a: list) -> Any:
    start, end = to_int(a[2]), to_int(a[3])
    lst = get_list(ctx, a[1], write=True)
    if lst is None:
        return OK
    n = len(lst)
    s, e = index_range(start, end, n)
    if s > e or s >= n:
        delete(ctx, a[1])
        return OK
    for _ in range(n - 1 - e):
        lst.pop()
    for _ in range(s):
        lst.popleft()
    return OK


@command("lrem", arity=4, flags=("write",))
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


@command("linsert", arity=5, flags=("write", "denyoom"))
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


@command("lpos", arity=-3, flags=("readonly",))
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


@command("rpoplpush", arity=3, flags=("write", "denyoom"), keys=(1, 2, 1))
def cmd_rpoplpush(ctx: Ctx, a: list) -> Any:
    get_list(ctx, a[2])  # type check of the destination first
    return _move(ctx, a[1], a[2], b"RIGHT", b"LEFT")


@command("lmove", arity=5, flags=("write", "denyoom"), keys=(1, 2, 1))
def cmd_lmove(ctx: Ctx, a: list) -> Any:
    wf, wt = a[3].upper(), a[4].upper()
    if wf not in (b"LEFT", b"RIGHT") or wt not in (b"LEFT", b"RIGHT"):
        raise RError(E_SYNTAX)
    get_list(ctx, a[2])
    return _move(ctx, a[1], a[2], wf, wt)


@command("lmpop", arity=-4, flags=("write",), keys=(0, 0, 1))
def cmd_lmpop(ctx: Ctx, a: list) -> Any:
    keys, where, count = parse_mpop(a, 1, (b"LEFT", b"RIGHT"))
    for k in keys:
        lst = get_list(ctx, k, write=True)
        if lst:
            out = [lst.popleft() if where == b"LEFT" else lst.pop()
                   for _ in range(min(count, len(lst)))]
            drop_if_empty(ctx, k, lst)
            return [k, out]
    return NULL_ARRAY
