"""Keyspace notifications (``notify-keyspace-events``): which events a write produced.

Redis publishes them from inside each command.  Here they are derived by the server after a
write ran (never inside the state machine, so the logged operation and the shadow are
untouched), from the command, its arguments, its reply, and which of its keys existed
before and after.  The server does this only while notifications are enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .stream import Stream

Event = tuple[str, str, bytes]  # (class, event name, key)

_STRING_EVENTS = {
    b"set": "set", b"setex": "set", b"psetex": "set", b"setnx": "set", b"getset": "set",
    b"append": "append", b"setrange": "setrange", b"incr": "incrby", b"decr": "decrby",
    b"incrby": "incrby", b"decrby": "decrby", b"incrbyfloat": "incrbyfloat",
}
_LIST_PUSH = {b"lpush": "lpush", b"rpush": "rpush", b"lpushx": "lpush", b"rpushx": "rpush",
              b"linsert": "linsert"}
_STORES = {b"sinterstore": ("s", "sinterstore"), b"sunionstore": ("s", "sunionstore"),
           b"sdiffstore": ("s", "sdiffstore"), b"zunionstore": ("z", "zunionstore"),
           b"zinterstore": ("z", "zinterstore"), b"zdiffstore": ("z", "zdiffstore"),
           b"zrangestore": ("z", "zrangestore")}


def _changed(res: Any) -> bool:
    return isinstance(res, int) and not isinstance(res, bool) and res > 0


def events(name: bytes, a: list, res: Any, before: Callable[[bytes], bool],
           after: Callable[[bytes], bool]) -> list[Event]:
    """The events of write ``a`` (lower-cased ``name``) that replied ``res``;
    ``before(key)`` / ``after(key)``: whether the key existed before / exists now."""
    from .replies import RError

    if isinstance(res, RError):
        return []
    out: list[Event] = []
    if name in _STRING_EVENTS:
        if name == b"set" and res is None and not any(x.upper() == b"GET" for x in a[3:]):
            return []  # NX/XX not met
        if name == b"setnx" and res != 1:
            return []
        out.append(("$", _STRING_EVENTS[name], a[1]))
        if name in (b"setex", b"psetex") or (name == b"set" and any(
                x.upper() in (b"EX", b"PX", b"EXAT", b"PXAT") for x in a[3:])):
            out.append(("g", "expire", a[1]))
    elif name in (b"mset", b"msetnx"):
        if name == b"mset" or res == 1:
            out += [("$", "set", k) for k in a[1::2]]
    elif name == b"getdel":
        if res is not None:
            out.append(("g", "del", a[1]))
    elif name == b"getex":
        opts = {x.upper() for x in a[2:3]}
        if res is not None and opts:
            out.append(("g", "persist" if b"PERSIST" in opts else "expire", a[1]))
    elif name in (b"del", b"unlink"):
        out += [("g", "del", k) for k in dict.fromkeys(a[1:]) if before(k)]
    elif name in (b"expire", b"pexpire", b"expireat", b"pexpireat"):
        if res == 1:
            out.append(("g", "expire" if after(a[1]) else "del", a[1]))
    elif name == b"persist":
        if res == 1:
            out.append(("g", "persist", a[1]))
    elif name in (b"rename", b"renamenx"):
        if res == 1 or (name == b"rename" and not isinstance(res, int)):
            out += [("g", "rename_from", a[1]), ("g", "rename_to", a[2])]
    elif name == b"copy":
        if res == 1:
            out.append(("g", "copy_to", a[2]))
    elif name in _LIST_PUSH:
        if _changed(res):
            out.append(("l", _LIST_PUSH[name], a[1]))
    elif name in (b"lpop", b"rpop"):
        if res is not None and res != []:
            out.append(("l", name.decode(), a[1]))
    elif name in (b"lset", b"ltrim"):
        out.append(("l", name.decode(), a[1]))
    elif name == b"lrem":
        if _changed(res):
            out.append(("l", "lrem", a[1]))
    elif name in (b"rpoplpush", b"lmove"):
        if res is not None:
            src_left = name == b"lmove" and a[3].upper() == b"LEFT"
            dst_left = name == b"rpoplpush" or a[4].upper() == b"LEFT"
            out += [("l", "lpop" if src_left else "rpop", a[1]),
                    ("l", "lpush" if dst_left else "rpush", a[2])]
    elif name in (b"lmpop", b"zmpop"):
        if isinstance(res, list) and res:
            where = next((x.upper() for x in a if x.upper() in (
                b"LEFT", b"RIGHT", b"MIN", b"MAX")), b"LEFT")
            ev = {b"LEFT": ("l", "lpop"), b"RIGHT": ("l", "rpop"),
                  b"MIN": ("z", "zpopmin"), b"MAX": ("z", "zpopmax")}[where]
            out.append((ev[0], ev[1], res[0]))
    elif name in (b"sadd", b"srem"):
        if _changed(res):
            out.append(("s", name.decode(), a[1]))
    elif name == b"smove":
        if res == 1:
            out += [("s", "srem", a[1]), ("s", "sadd", a[2])]
    elif name in _STORES:
        cls, ev = _STORES[name]
        out.append((cls, ev, a[1]) if after(a[1]) else ("g", "del", a[1]))
    elif name == b"zadd":
        incr = any(x.upper() == b"INCR" for x in a[2:])
        if (incr and res is not None) or _changed(res) or _zadd_updates(a):
            out.append(("z", "zincr" if incr else "zadd", a[1]))
    elif name == b"zincrby":
        out.append(("z", "zincr", a[1]))
    elif name in (b"zrem", b"zremrangebyscore", b"zremrangebyrank", b"zremrangebylex"):
        if _changed(res):
            out.append(("z", name.decode(), a[1]))
    elif name in (b"zpopmin", b"zpopmax"):
        if res:
            out.append(("z", name.decode(), a[1]))
    elif name in (b"hset", b"hmset", b"hsetnx"):
        if name != b"hsetnx" or res == 1:
            out.append(("h", "hset", a[1]))
    elif name == b"hdel":
        if _changed(res):
            out.append(("h", "hdel", a[1]))
    elif name in (b"hincrby", b"hincrbyfloat"):
        out.append(("h", name.decode(), a[1]))
    elif name == b"\x00spop":
        if res:
            out.append(("s", "spop", a[1]))
    # a container emptied by the command is deleted
    for cls, ev, k in list(out):
        if cls in "lszh" and ev not in ("sadd", "lpush", "rpush", "zadd", "hset") \
                and before(k) and not after(k) and not (cls, "del") == ("g", ev):
            out.append(("g", "del", k))
    return out


def _zadd_updates(a: list) -> bool:
    # ZADD without CH replies only the number added; a score update is still a change
    return len(a) >= 4


def new_keys(keys: list, before: Callable[[bytes], bool],
             after: Callable[[bytes], bool]) -> list[Event]:
    return [("n", "new", k) for k in dict.fromkeys(keys) if not before(k) and after(k)]


# ---------------------------------------------------------------------------- streams
# Stream commands' events (class ``t``) need more than key existence: whether the stream
# grew and shrank (XADD's trim) and which consumers a group gained or lost.  The server
# takes a *shape* of each stream key before such a write and compares it with the shape
# after (``stream_events``).
STREAM_WRITES = frozenset((b"xadd", b"xtrim", b"xdel", b"xgroup", b"xsetid", b"xreadgroup",
                           b"\x00xreadgroup", b"xclaim", b"xautoclaim"))

Shape = tuple[int, dict] | None  # (length, {group: frozenset(consumer names)}), None: no stream


def stream_shape(v: Any) -> Shape:
    if not isinstance(v, Stream):
        return None
    return len(v), {g: frozenset(grp.consumers) for g, grp in v.groups.items()}


def stream_events(name: bytes, a: list, res: Any, before: dict[bytes, Shape],
                  after: dict[bytes, Shape]) -> list[Event]:
    """The ``t`` events of stream write ``a`` (lower-cased ``name``) that replied ``res``,
    as Redis 7.0's t_stream.c publishes them; ``before`` / ``after``: the shapes of its
    keys."""
    from .replies import RError

    if isinstance(res, RError):
        return []
    out: list[Event] = []
    if name == b"xadd":
        if res is not None:  # (None: NOMKSTREAM and no stream)
            out.append(("t", "xadd", a[1]))
            old, new = before.get(a[1]), after.get(a[1])
            if _xadd_trims(a) and new is not None and new[0] < (old[0] if old else 0) + 1:
                out.append(("t", "xtrim", a[1]))
    elif name in (b"xtrim", b"xdel"):
        if _changed(res):
            out.append(("t", name.decode(), a[1]))
    elif name == b"xsetid":
        out.append(("t", "xsetid", a[1]))
    elif name == b"xgroup":
        sub = a[1].lower()
        if sub in (b"create", b"setid"):
            out.append(("t", "xgroup-" + sub.decode(), a[2]))
        elif sub in (b"destroy", b"createconsumer"):
            if res == 1:
                out.append(("t", "xgroup-" + sub.decode(), a[2]))
        elif sub == b"delconsumer":
            old = before.get(a[2])
            if old is not None and a[4] in old[1].get(a[3], ()):
                out.append(("t", "xgroup-delconsumer", a[2]))
    else:  # XREADGROUP, XCLAIM, XAUTOCLAIM: a consumer they name is created on first use
        for k, new in after.items():
            old = before.get(k)
            if new is None:
                continue
            for g, consumers in new[1].items():
                known = old[1].get(g, frozenset()) if old is not None else frozenset()
                out += [("t", "xgroup-createconsumer", k)] * len(consumers - known)
    return out


def _xadd_trims(a: list) -> bool:
    """Whether an XADD has a MAXLEN or MINID option (before its id)."""
    i = 2
    while i < len(a):
        opt = a[i].upper()
        if opt in (b"MAXLEN", b"MINID"):
            return True
        if opt == b"NOMKSTREAM":
            i += 1
        elif opt == b"LIMIT":
            i += 2
        else:
            return False  # the id
    return False


def advance(shape: Shape, name: bytes, a: list, res: Any, final: Shape) -> Shape:
    """Inside a transaction (one operation): the shape a stream write left, estimated from
    the ``shape`` before it, its reply and the ``final`` shape the transaction left."""
    from .replies import RError

    if final is None or isinstance(res, RError):
        return shape if final is not None else None
    length, groups = shape if shape is not None else (0, {})
    groups = dict(groups)
    if name == b"xadd" and res is not None:
        length = min(length + 1, final[0])  # (less: its trim removed entries)
    elif name in (b"xtrim", b"xdel") and _changed(res):
        length -= res
    elif name == b"xgroup":
        sub = a[1].lower()
        if sub == b"create":
            groups[a[3]] = frozenset()
        elif sub == b"destroy":
            groups.pop(a[3], None)
        elif sub in (b"createconsumer", b"delconsumer") and a[3] in groups:
            op = frozenset.union if sub == b"createconsumer" else frozenset.difference
            groups[a[3]] = op(groups[a[3]], {a[4]})
    elif name not in (b"xsetid",):
        groups.update((g, groups.get(g, frozenset()) | c) for g, c in final[1].items())
    return length, groups
