"""Stream commands (XADD ... XINFO) with Redis 7.0's replies and errors.

Write handlers run inside ``apply``: ``*`` ids and every delivery, claim and idle time come
from ``ctx.now`` (the operation's clock), so the PM copy reaches the same ids and times.
Blocking XREAD/XREADGROUP are parked by the server (``stream_block.py``); what runs here never
blocks (a BLOCK option is parsed and otherwise ignored).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .. import datasettings as datacfg
from ..keyspace import Ctx, lookup, lookup_write, to_int
from ..registry import command
from ..replies import E_SYNTAX, NULL_ARRAY, OK, WRONGTYPE, RError, RMap, RPairMap
from ..stream import INVALID, M64, MAX_ID, Group, Nack, Stream, fmt_id

if TYPE_CHECKING:
    from ..server import Client, Server

E_ID = "ERR Invalid stream ID specified as stream command argument"
_DIGITS = re.compile(rb"[0-9]+\Z")


def node_max(ctx: Ctx) -> int:
    """stream-node-max-entries as the state machine knows it (a logged setting)."""
    return datacfg.get(ctx.state, b"stream-node-max-entries")


def _ull(b: bytes) -> int | None:
    if not _DIGITS.match(b):
        return None
    v = int(b)
    return v if v <= M64 else None


def parse_id(b: bytes, missing_seq: int = 0, strict: bool = False,
             seq_star: bool = False) -> tuple[int, bool]:
    """``(id, seq_given)`` of a client's stream id (``-``, ``+``, ``ms``, ``ms-seq`` and,
    with ``seq_star``, ``ms-*``); RError otherwise."""
    if len(b) > 127:
        raise RError(E_ID)
    if b == b"-" or b == b"+":
        if strict:
            raise RError(E_ID)
        return (0 if b == b"-" else MAX_ID), True
    ms_s, dash, seq_s = b.partition(b"-")
    ms = _ull(ms_s)
    if ms is None:
        raise RError(E_ID)
    if not dash:
        return (ms << 64) | missing_seq, True
    if seq_star and seq_s == b"*":
        return ms << 64, False
    seq = _ull(seq_s)
    if seq is None:
        raise RError(E_ID)
    return (ms << 64) | seq, True


def parse_interval(b: bytes, missing_seq: int) -> tuple[int, bool]:
    if len(b) > 1 and b[:1] == b"(":
        return parse_id(b[1:], missing_seq, strict=True)[0], True
    return parse_id(b, missing_seq)[0], False


def get_stream(ctx: Ctx, key: bytes, write: bool = False) -> Any:
    v = lookup_write(ctx, key) if write else lookup(ctx, key)
    if v is not None and not isinstance(v, Stream):
        raise RError(WRONGTYPE)
    return v


def _entry(i: int, fields: Any) -> list:
    return [fmt_id(i), list(fields)]


def _nogroup(key: bytes, group: bytes, tail: str = "") -> RError:
    return RError(f"NOGROUP No such key '{key.decode('utf-8', 'replace')}' or consumer "
                  f"group '{group.decode('utf-8', 'replace')}'{tail}")


# ---------------------------------------------------------------------------- XADD / XTRIM
class TrimArgs:
    __slots__ = ("maxlen", "minid", "approx", "limit", "limit_given", "nomkstream", "id",
                 "seq_given", "idpos")

    def __init__(self) -> None:
        self.maxlen: int | None = None
        self.minid: int | None = None
        self.approx = False
        self.limit = 0
        self.limit_given = False
        self.nomkstream = False
        self.id: int | None = None
        self.seq_given = True
        self.idpos = 0


def parse_trim(a: list, xadd: bool) -> TrimArgs:
    t = TrimArgs()
    strategy = False
    limit_given = False
    i = 2
    n = len(a)
    while i < n:
        more = n - 1 - i
        opt = a[i].lower()
        if xadd and a[i] == b"*":
            break
        if opt in (b"maxlen", b"minid") and more:
            if strategy:
                raise RError("ERR syntax error, MAXLEN and MINID options at the same time "
                             "are not compatible")
            t.approx = False
            nxt = a[i + 1]
            if more >= 2 and nxt == b"~":
                t.approx = True
                i += 1
            elif more >= 2 and nxt == b"=":
                i += 1
            if opt == b"maxlen":
                v = to_int(a[i + 1])
                if v < 0:
                    raise RError("ERR The MAXLEN argument must be >= 0.")
                t.maxlen = v
            else:
                t.minid = parse_id(a[i + 1], 0, strict=True)[0]
            strategy = True
            i += 2
            continue
        if opt == b"limit" and more:
            v = to_int(a[i + 1])
            if v < 0:
                raise RError("ERR The LIMIT argument must be >= 0.")
            t.limit = v
            limit_given = True
            i += 2
            continue
        if xadd and opt == b"nomkstream":
            t.nomkstream = True
            i += 1
            continue
        if xadd:
            t.id, t.seq_given = parse_id(a[i], 0, strict=True, seq_star=True)
            break
        raise RError(E_SYNTAX)
    t.idpos = i
    if t.limit and not strategy:
        raise RError("ERR syntax error, LIMIT cannot be used without specifying a trimming "
                     "strategy")
    if not xadd and not strategy:
        raise RError("ERR syntax error, XTRIM must be called with a trimming strategy")
    if limit_given and not t.approx:
        raise RError("ERR syntax error, LIMIT cannot be used without the special ~ option")
    t.limit_given = limit_given
    if not t.approx:
        t.limit = 0
    return t


def _limit_default(ctx: Ctx, t: TrimArgs) -> None:
    """An approximate trim without LIMIT removes at most 100 nodes' worth (Redis)."""
    if t.approx and not t.limit_given:
        lim = 100 * node_max(ctx)
        t.limit = 10000 if lim <= 0 else min(lim, 1_000_000)


@command("xadd", arity=-5, flags=("write", "denyoom", "fast"))
def cmd_xadd(ctx: Ctx, a: list) -> Any:
    t = parse_trim(a, True)
    _limit_default(ctx, t)
    fpos = t.idpos + 1
    nf = len(a) - fpos
    if nf < 2 or nf % 2:
        raise RError("ERR wrong number of arguments for 'xadd' command")
    if t.id is not None and t.seq_given and t.id == 0:
        raise RError("ERR The ID specified in XADD must be greater than 0-0")
    s = get_stream(ctx, a[1], write=True)
    if s is None:
        if t.nomkstream:
            return None
        ctx.data[a[1]] = Stream()
        s = ctx.data[a[1]]
    if s.last_id == MAX_ID:
        raise RError("ERR The stream has exhausted the last possible ID, unable to add more "
                     "items")
    last = s.last_id
    if t.id is None:
        i = s.next_id(ctx.now)
    elif t.seq_given:
        i = t.id
    elif last >> 64 == t.id >> 64:
        if last & M64 == M64:
            i = None
        else:
            i = last + 1
    else:
        i = t.id
    if i is None or i <= last:
        raise RError("ERR The ID specified in XADD is equal or smaller than the target "
                     "stream top item")
    s.append(i, tuple(a[fpos:]), node_max(ctx))
    if t.maxlen is not None or t.minid is not None:
        s.trim(t.maxlen, t.minid, t.approx, t.limit)
    return fmt_id(i)


@command("xtrim", arity=-4, flags=("write",))
def cmd_xtrim(ctx: Ctx, a: list) -> Any:
    t = parse_trim(a, False)
    _limit_default(ctx, t)
    s = get_stream(ctx, a[1], write=True)
    if s is None:
        return 0
    return s.trim(t.maxlen, t.minid, t.approx, t.limit)


@command("xdel", arity=-3, flags=("write", "fast"))
def cmd_xdel(ctx: Ctx, a: list) -> Any:
    s = get_stream(ctx, a[1], write=True)
    if s is None:
        return 0
    ids = [parse_id(x, 0, strict=True)[0] for x in a[2:]]
    return s.xdel(ids)


@command("xlen", arity=2, flags=("readonly", "fast"))
def cmd_xlen(ctx: Ctx, a: list) -> Any:
    s = get_stream(ctx, a[1])
    return 0 if s is None else len(s)


# ---------------------------------------------------------------------------- XRANGE
def _xrange(ctx: Ctx, a: list, rev: bool) -> Any:
    start_arg, end_arg = (a[3], a[2]) if rev else (a[2], a[3])
    lo, lox = parse_interval(start_arg, 0)
    if lox:
        if lo == MAX_ID:
            raise RError("ERR invalid start ID for the interval")
        lo += 1
    hi, hix = parse_interval(end_arg, M64)
    if hix:
        if hi == 0:
            raise RError("ERR invalid end ID for the interval")
        hi -= 1
    count = -1
    j = 4
    while j < len(a):
        if a[j].lower() == b"count" and j + 1 < len(a):
            count = max(to_int(a[j + 1]), 0)
            j += 2
        else:
            raise RError(E_SYNTAX)
    s = get_stream(ctx, a[1])
    if s is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return [_entry(i, f) for i, f in s.range(lo, hi, max(count, 0), rev)]


@command("xrange", arity=-4, flags=("readonly",))
def cmd_xrange(ctx: Ctx, a: list) -> Any:
    return _xrange(ctx, a, False)


@command("xrevrange", arity=-4, flags=("readonly",))
def cmd_xrevrange(ctx: Ctx, a: list) -> Any:
    return _xrange(ctx, a, True)


# ---------------------------------------------------------------------------- XREAD
class ReadArgs:
    __slots__ = ("block", "count", "keys", "ids", "group", "consumer", "noack")

    def __init__(self) -> None:
        self.block: int | None = None
        self.count = 0
        self.keys: list = []
        self.ids: list = []  # raw id arguments
        self.group: bytes | None = None
        self.consumer: bytes | None = None
        self.noack = False


def parse_read(a: list) -> ReadArgs:
    """Parse XREAD / XREADGROUP (syntax only; ids are resolved against the data later)."""
    group_cmd = a[0].lower() == b"xreadgroup"
    r = ReadArgs()
    streams = 0
    i = 1
    n = len(a)
    while i < n:
        more = n - i - 1
        o = a[i].lower()
        if o == b"block" and more:
            r.block = block_timeout(a[i + 1])
            i += 2
        elif o == b"count" and more:
            r.count = max(to_int(a[i + 1]), 0)
            i += 2
        elif o == b"streams" and more:
            streams = i + 1
            rest = n - streams
            if rest % 2:
                raise RError("ERR Unbalanced XREAD list of streams: for each stream key an "
                             "ID or '$' must be specified.")
            half = rest // 2
            r.keys = list(a[streams:streams + half])
            r.ids = list(a[streams + half:])
            break
        elif o == b"group" and more >= 2:
            if not group_cmd:
                raise RError("ERR The GROUP option is only supported by XREADGROUP. You "
                             "called XREAD instead.")
            r.group, r.consumer = a[i + 1], a[i + 2]
            i += 3
        elif o == b"noack":
            if not group_cmd:
                raise RError("ERR The NOACK option is only supported by XREADGROUP. You "
                             "called XREAD instead.")
            r.noack = True
            i += 1
        else:
            raise RError(E_SYNTAX)
    if not streams:
        raise RError(E_SYNTAX)
    if group_cmd and r.group is None:
        raise RError("ERR Missing GROUP option for XREADGROUP")
    return r


def block_timeout(b: bytes) -> int:
    """BLOCK's milliseconds (Redis's errors)."""
    try:
        v = to_int(b, "ERR timeout is not an integer or out of range")
    except RError:
        raise
    if v < 0:
        raise RError("ERR timeout is negative")
    return v


GT_NEW = -2  # the ">" id


def resolve_ids(ctx: Ctx, r: ReadArgs) -> list:
    """Per key: ``(stream or None, group or None, id)``; ``$`` becomes the stream's last id
    and ``>`` GT_NEW.  Raises Redis's errors."""
    out = []
    for k, raw in zip(r.keys, r.ids, strict=True):
        s = get_stream(ctx, k)
        g = None
        if r.group is not None:
            g = s.groups.get(r.group) if s is not None else None
            if g is None:
                raise _nogroup(k, r.group, " in XREADGROUP with GROUP option")
        if raw == b"$":
            if r.group is not None:
                raise RError("ERR The $ ID is meaningless in the context of XREADGROUP: you "
                             "want to read the history of this consumer by specifying a "
                             "proper ID, or use the > ID to get new messages. The $ ID would "
                             "just return an empty result set.")
            out.append((s, g, s.last_id if s is not None else 0))
        elif raw == b">":
            if r.group is None:
                raise RError("ERR The > ID can be specified only when calling XREADGROUP "
                             "using the GROUP <group> <consumer> option.")
            out.append((s, g, GT_NEW))
        else:
            out.append((s, g, parse_id(raw, 0, strict=True)[0]))
    return out


def serve_read(ctx: Ctx, r: ReadArgs, resolved: list, count: int) -> list:
    """The ``[(key, entries)]`` XREAD/XREADGROUP serves now (updating groups and PELs)."""
    out = []
    now = ctx.now
    for k, (s, g, gt) in zip(r.keys, resolved, strict=True):
        if s is None:
            continue
        if g is None:
            if len(s) and s.last_valid_id() > gt:
                items = s.range(gt + 1, MAX_ID, count) if gt < MAX_ID else []
                out.append((k, [_entry(i, f) for i, f in items]))
            continue
        if gt != GT_NEW:  # the consumer's own history
            c = g.consumer(r.consumer, now)
            ents = []
            for i in g.pel_ids(c.pel):
                if i <= gt:
                    continue
                if count and len(ents) >= count:
                    break
                f = s.entries.get(i)
                if f is None:
                    ents.append([fmt_id(i), None])
                else:
                    nack = g.pel[i]
                    nack.time = now
                    nack.count += 1
                    ents.append(_entry(i, f))
            out.append((k, ents))
            continue
        if not len(s) or s.last_valid_id() <= g.last_id:
            continue
        c = g.consumer(r.consumer, now)
        items = s.range(g.last_id + 1, MAX_ID, count)
        ents = []
        for i, f in items:
            s.deliver(g, i)
            ents.append(_entry(i, f))
            if not r.noack:
                nack = g.pel.get(i)
                if nack is None:
                    g.pel[i] = Nack(c.name, now, 1)
                    c.pel[i] = True
                else:
                    g.assign(i, nack, c)
                    nack.time = now
                    nack.count = 1
        out.append((k, ents))
    return out


def xread_keys(a: list) -> list:
    """The keys of an XREAD / XREADGROUP (those after STREAMS)."""
    for i in range(1, len(a)):
        if a[i].lower() == b"streams":
            rest = a[i + 1:]
            return list(rest[:len(rest) // 2])
    return []


def cmd_xread(ctx: Ctx, a: list) -> Any:
    """XREAD / XREADGROUP served now, without blocking (as inside MULTI)."""
    r = parse_read(a)
    out = serve_read(ctx, r, resolve_ids(ctx, r), r.count)
    return RPairMap(out) if out else NULL_ARRAY


@command("\x00xreadgroup", arity=-7, flags=("write", "internal"), getkeys=xread_keys)
def cmd_xreadgroup_op(ctx: Ctx, a: list) -> Any:
    """The logged form of XREADGROUP (``\x00xreadgroup`` + its arguments, BLOCK dropped)."""
    return cmd_xread(ctx, [b"xreadgroup", *a[1:]])


@command("\x00xread", arity=-4, flags=("write", "internal"), getkeys=xread_keys)
def exec_form(ctx: Ctx, a: list) -> Any:
    """XREAD / XREADGROUP (``a[0]``) inside a transaction's operation, where they never
    block (run by ``chance.bpop_op``)."""
    return cmd_xread(ctx, list(a))


@command("xread", arity=-4, flags=("readonly", "blocking"), getkeys=xread_keys, server=True)
@command("xreadgroup", arity=-7, flags=("write", "blocking"), getkeys=xread_keys,
         server=True)
def xread_server(s: Server, c: Client, a: list) -> None:
    """XREAD / XREADGROUP: served at once when a stream has something for them; with BLOCK,
    parked until one has (then XREADGROUP is logged as ``\x00xreadgroup``, which updates the
    group and its pending entries on both copies)."""
    group = a[0].lower() == b"xreadgroup"
    try:
        r = parse_read(a)
        resolved = resolve_ids(Ctx(s.state, c.db, s.now()), r)
    except RError as e:
        c.reply(e)
        return
    # the arguments the state machine runs: no BLOCK, "$" resolved to the id it meant now
    fixed = [a[0].lower()]
    i = 1
    while i < len(a) and a[i].lower() != b"streams":
        if a[i].lower() == b"block":
            i += 2
            continue
        fixed.append(a[i])
        i += 1
    fixed.append(b"streams")
    fixed += r.keys
    fixed += [fmt_id(gt) if raw == b"$" else raw
              for raw, (_, _, gt) in zip(r.ids, resolved, strict=True)]

    def serve(ctx: Ctx) -> Any:
        if group:
            op = (b"\x00xreadgroup", *fixed[1:])
            shapes = s.stream_shapes(c.db, list(op), r.keys) if s.notify_on else None
            out = s.write(c.db, op)
            s.touched(c.db, r.keys)
            if shapes is not None:
                s.notify_write(c.db, list(op), out, {}, shapes)
            return out
        try:
            return cmd_xread(ctx, fixed)
        except RError as e:
            return e

    def attempt() -> Any:
        ctx = Ctx(s.state, c.db, s.now())
        if group:
            for k in r.keys:
                v = lookup(ctx, k)
                if not isinstance(v, Stream):
                    return RError("UNBLOCKED the stream key no longer exists")
                if r.group not in v.groups:
                    return RError("NOGROUP the consumer group this client was blocked on no "
                                  "longer exists")
        try:
            now_resolved = resolve_ids(ctx, parse_read(fixed))
        except RError:
            return None  # (XREAD: a key of another type now; wait for a stream)
        if not read_ready(ctx, r, now_resolved):
            return None
        return serve(ctx)

    ctx = Ctx(s.state, c.db, s.now())
    if r.block is None or c.multi is not None or c.in_exec:
        if not read_ready(ctx, r, resolved):
            c.reply(NULL_ARRAY)
            return
        c.reply(serve(ctx))
        return
    if read_ready(ctx, r, resolved):
        c.reply(serve(ctx))
        return
    s.block(c, r.keys, r.block / 1000, attempt)


def read_ready(ctx: Ctx, r: ReadArgs, resolved: list) -> bool:
    """Whether a (blocked) read could serve something now."""
    for s, g, gt in resolved:
        if s is None:
            continue
        if g is not None and gt != GT_NEW:
            return True  # a consumer's history is always served at once
        if not len(s):
            continue
        if g is None:
            if s.last_valid_id() > gt:
                return True
        elif s.last_valid_id() > g.last_id:
            return True
    return False


# ---------------------------------------------------------------------------- groups
def check_subcommand(a: list, table: dict, cmd: str) -> None:
    """Redis 7's errors for an unknown subcommand or a subcommand's wrong arity."""
    sub = a[1].lower()
    arity = table.get(sub)
    if arity is None:
        raise RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')[:128]}'. "
                     f"Try {cmd} HELP.")
    if (arity >= 0 and len(a) != arity) or len(a) < -arity:
        raise RError(f"ERR wrong number of arguments for '{cmd.lower()}|"
                     f"{sub.decode('utf-8', 'replace')}' command")


_XGROUP = {b"create": -5, b"setid": -5, b"destroy": 4, b"createconsumer": 5,
           b"delconsumer": 5, b"help": 2}
_XINFO = {b"consumers": 4, b"groups": 3, b"stream": -3, b"help": 2}


@command("xgroup", arity=-2, flags=("write",), keys=(2, 2, 1))
def cmd_xgroup(ctx: Ctx, a: list) -> Any:
    check_subcommand(a, _XGROUP, "XGROUP")
    sub = a[1].lower()
    n = len(a)
    if sub == b"help":
        return [b"XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"CREATE <key> <groupname> <id|$> [option]",
                b"    Create a new consumer group. Options are:",
                b"    * MKSTREAM",
                b"      Create the empty stream if it does not exist.",
                b"    * ENTRIESREAD entries_read",
                b"      Set the group's entries_read counter (internal use).",
                b"CREATECONSUMER <key> <groupname> <consumer>",
                b"    Create a new consumer in the specified group.",
                b"DELCONSUMER <key> <groupname> <consumer>",
                b"    Remove the specified consumer.",
                b"DESTROY <key> <groupname>",
                b"    Remove the specified group.",
                b"SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                b"    Set the current group ID and entries_read counter.",
                b"HELP",
                b"    Print this help."]
    subname = a[1].decode("utf-8", "replace")
    bad = RError(f"ERR unknown subcommand or wrong number of arguments for '{subname}'. "
                 "Try XGROUP HELP.")
    if sub not in (b"create", b"setid", b"destroy", b"createconsumer", b"delconsumer") \
            or n < 4:
        raise bad
    mkstream = False
    entries_read = INVALID
    i = 5
    while i < n:
        o = a[i].lower()
        if sub == b"create" and o == b"mkstream":
            mkstream = True
            i += 1
        elif sub in (b"create", b"setid") and o == b"entriesread" and i + 1 < n:
            entries_read = to_int(a[i + 1])
            if entries_read < 0 and entries_read != INVALID:
                raise RError("ERR value for ENTRIESREAD must be positive or -1")
            i += 2
        else:
            raise bad
    key, name = a[2], a[3]
    s = get_stream(ctx, key, write=True)
    g = None
    if not mkstream:
        if s is None:
            raise RError("ERR The XGROUP subcommand requires the key to exist. Note that for "
                         "CREATE you may want to use the MKSTREAM option to create an empty "
                         "stream automatically.")
        g = s.groups.get(name)
        if g is None and sub in (b"setid", b"createconsumer", b"delconsumer"):
            raise RError(f"NOGROUP No such consumer group '{name.decode('utf-8', 'replace')}'"
                         f" for key name '{key.decode('utf-8', 'replace')}'")
    if sub == b"create" and 5 <= n <= 8:
        if a[4] == b"$":
            gid = s.last_id if s is not None else 0
        else:
            gid = parse_id(a[4], 0, strict=True)[0]
        if s is None:
            ctx.data[key] = Stream()
            s = ctx.data[key]
        if name in s.groups:
            raise RError("BUSYGROUP Consumer Group name already exists")
        s.groups[name] = Group(gid, entries_read)
        return OK
    if sub == b"setid" and n in (5, 7):
        gid = s.last_id if a[4] == b"$" else parse_id(a[4], 0)[0]
        g.last_id = gid
        g.entries_read = entries_read
        return OK
    if sub == b"destroy" and n == 4:
        if g is None:
            return 0
        del s.groups[name]
        return 1
    if sub == b"createconsumer" and n == 5:
        if a[4] in g.consumers:
            return 0
        g.consumer(a[4], ctx.now)
        return 1
    if sub == b"delconsumer" and n == 5:
        c = g.consumers.get(a[4])
        if c is None:
            return 0
        pending = len(c.pel)
        for i in list(c.pel.keys()):
            g.pel.pop(i, None)
        del g.consumers[a[4]]
        return pending
    raise bad


@command("xsetid", arity=-3, flags=("write", "denyoom", "fast"))
def cmd_xsetid(ctx: Ctx, a: list) -> Any:
    i_new = parse_id(a[2], 0, strict=True)[0]
    added = -1
    maxdel = 0
    i = 3
    while i < len(a):
        o = a[i].lower()
        more = len(a) - 1 - i
        if o == b"entriesadded" and more:
            added = to_int(a[i + 1])
            if added < 0:
                raise RError("ERR entries_added must be positive")
            i += 2
        elif o == b"maxdeletedid" and more:
            maxdel = parse_id(a[i + 1], 0, strict=True)[0]
            if i_new < maxdel:
                raise RError("ERR The ID specified in XSETID is smaller than the provided "
                             "max_deleted_entry_id")
            i += 2
        else:
            raise RError(E_SYNTAX)
    s = get_stream(ctx, a[1], write=True)
    if s is None:
        raise RError("ERR no such key")
    if len(s):
        if i_new < s.last_valid_id():
            raise RError("ERR The ID specified in XSETID is smaller than the target stream "
                         "top item")
        if added != -1 and len(s) > added:
            raise RError("ERR The entries_added specified in XSETID is smaller than the "
                         "target stream length")
    s.last_id = i_new
    if added != -1:
        s.entries_added = added
    if maxdel:
        s.max_deleted = maxdel
    return OK


@command("xack", arity=-4, flags=("write", "fast"))
def cmd_xack(ctx: Ctx, a: list) -> Any:
    s = get_stream(ctx, a[1], write=True)
    g = s.groups.get(a[2]) if s is not None else None
    if g is None:
        return 0
    ids = [parse_id(x, 0, strict=True)[0] for x in a[3:]]
    n = 0
    for i in ids:
        if i in g.pel:
            g.drop_nack(i)
            n += 1
    return n


@command("xpending", arity=-3, flags=("readonly",))
def cmd_xpending(ctx: Ctx, a: list) -> Any:
    n = len(a)
    if n != 3 and not 6 <= n <= 9:
        raise RError(E_SYNTAX)
    minidle = 0
    consumer = None
    if n >= 6:
        start = 3
        if a[3].lower() == b"idle":
            minidle = to_int(a[4])
            if n < 8:
                raise RError(E_SYNTAX)
            start = 5
        count = max(to_int(a[start + 2]), 0)
        lo, lox = parse_interval(a[start], 0)
        if lox:
            if lo == MAX_ID:
                raise RError("ERR invalid start ID for the interval")
            lo += 1
        hi, hix = parse_interval(a[start + 1], M64)
        if hix:
            if hi == 0:
                raise RError("ERR invalid end ID for the interval")
            hi -= 1
        if start + 3 < n:
            consumer = a[start + 3]
            if start + 4 < n:
                raise RError(E_SYNTAX)
    s = get_stream(ctx, a[1])
    g = s.groups.get(a[2]) if s is not None else None
    if g is None:
        raise _nogroup(a[1], a[2])
    if n == 3:
        if not g.pel:
            return [0, None, None, None]
        ids = g.pel_ids()
        per = []
        for name in sorted(g.consumers):
            c = g.consumers[name]
            if c.pel:
                per.append([name, b"%d" % len(c.pel)])
        return [len(ids), fmt_id(ids[0]), fmt_id(ids[-1]), per]
    if consumer is not None:
        c = g.consumers.get(consumer)
        if c is None:
            return []
        ids = g.pel_ids(c.pel)
    else:
        ids = g.pel_ids()
    out = []
    now = ctx.now
    for i in ids:
        if not count:
            break
        if i < lo:
            continue
        if i > hi:
            break
        nack = g.pel[i]
        if minidle and now - nack.time < minidle:
            continue
        count -= 1
        out.append([fmt_id(i), nack.consumer, max(now - nack.time, 0), nack.count])
    return out


@command("xclaim", arity=-6, flags=("write", "fast"))
def cmd_xclaim(ctx: Ctx, a: list) -> Any:
    s = get_stream(ctx, a[1], write=True)
    g = s.groups.get(a[2]) if s is not None else None
    if g is None:
        raise _nogroup(a[1], a[2])
    minidle = max(to_int(a[4], "ERR Invalid min-idle-time argument for XCLAIM"), 0)
    ids = []
    j = 5
    while j < len(a):
        try:
            ids.append(parse_id(a[j], 0, strict=True)[0])
        except RError:
            break
        j += 1
    now = ctx.now
    force = justid = False
    retry = -1
    dtime = -1
    lastid = 0
    while j < len(a):
        more = len(a) - 1 - j
        o = a[j].lower()
        if o == b"force":
            force = True
        elif o == b"justid":
            justid = True
        elif o == b"idle" and more:
            j += 1
            dtime = now - to_int(a[j], "ERR Invalid IDLE option argument for XCLAIM")
        elif o == b"time" and more:
            j += 1
            dtime = to_int(a[j], "ERR Invalid TIME option argument for XCLAIM")
        elif o == b"retrycount" and more:
            j += 1
            retry = to_int(a[j], "ERR Invalid RETRYCOUNT option argument for XCLAIM")
        elif o == b"lastid" and more:
            j += 1
            lastid = parse_id(a[j], 0, strict=True)[0]
        else:
            raise RError(f"ERR Unrecognized XCLAIM option '{a[j].decode('utf-8', 'replace')}'")
        j += 1
    if lastid > g.last_id:
        g.last_id = lastid
    if dtime == -1 or dtime < 0 or dtime > now:
        dtime = now
    c = None
    out = []
    for i in ids:
        nack = g.pel.get(i)
        if i not in s.entries:
            if nack is not None:
                g.drop_nack(i)
            continue
        if force and nack is None:
            nack = Nack(None, now, 0)
            g.pel[i] = nack
            nack = g.pel[i]
        if nack is None:
            continue
        if nack.consumer is not None and minidle and now - nack.time < minidle:
            continue
        if c is None:
            c = g.consumer(a[3], now)
        g.assign(i, nack, c)
        nack.time = dtime
        if retry >= 0:
            nack.count = retry
        elif not justid:
            nack.count += 1
        out.append(fmt_id(i) if justid else _entry(i, s.entries[i]))
    return out


@command("xautoclaim", arity=-6, flags=("write", "fast"))
def cmd_xautoclaim(ctx: Ctx, a: list) -> Any:
    minidle = max(to_int(a[4], "ERR Invalid min-idle-time argument for XAUTOCLAIM"), 0)
    start, sx = parse_interval(a[5], 0)
    if sx:
        if start == MAX_ID:
            raise RError("ERR invalid start ID for the interval")
        start += 1
    count = 100
    justid = False
    j = 6
    while j < len(a):
        more = len(a) - 1 - j
        o = a[j].lower()
        if o == b"count" and more:
            try:
                count = to_int(a[j + 1])
            except RError:
                raise RError("ERR COUNT must be > 0") from None
            if not 1 <= count <= (1 << 63) // 10:
                raise RError("ERR COUNT must be > 0")
            j += 1
        elif o == b"justid":
            justid = True
        else:
            raise RError(E_SYNTAX)
        j += 1
    s = get_stream(ctx, a[1], write=True)
    g = s.groups.get(a[2]) if s is not None else None
    if g is None:
        raise _nogroup(a[1], a[2])
    now = ctx.now
    attempts = count * 10
    ids = [i for i in g.pel_ids() if i >= start]
    out = []
    deleted = []
    c = None
    k = 0
    while attempts and count and k < len(ids):
        attempts -= 1
        i = ids[k]
        k += 1
        nack = g.pel[i]
        if i not in s.entries:
            g.drop_nack(i)
            deleted.append(fmt_id(i))
            count -= 1
            continue
        if minidle and now - nack.time < minidle:
            continue
        if c is None:
            c = g.consumer(a[3], now)
        g.assign(i, nack, c)
        nack.time = now
        if not justid:
            nack.count += 1
        out.append(fmt_id(i) if justid else _entry(i, s.entries[i]))
        count -= 1
    nxt = fmt_id(ids[k]) if k < len(ids) else b"0-0"
    return [nxt, out, deleted]


# ---------------------------------------------------------------------------- XINFO
@command("xinfo", arity=-2, flags=("readonly",), keys=(2, 2, 1))
def cmd_xinfo(ctx: Ctx, a: list) -> Any:
    check_subcommand(a, _XINFO, "XINFO")
    sub = a[1].lower()
    subname = a[1].decode("utf-8", "replace")
    bad = RError(f"ERR unknown subcommand or wrong number of arguments for '{subname}'. "
                 "Try XINFO HELP.")
    if sub == b"help":
        return [b"XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"CONSUMERS <key> <groupname>", b"    Show consumers of <groupname>.",
                b"GROUPS <key>", b"    Show the stream consumer groups.",
                b"STREAM <key> [FULL [COUNT <count>]",
                b"    Show information about the stream.", b"HELP",
                b"    Print this help."]
    if len(a) < 3:
        raise bad
    s = get_stream(ctx, a[2])
    if s is None:
        raise RError("ERR no such key")
    now = ctx.now
    if sub == b"consumers" and len(a) == 4:
        g = s.groups.get(a[3])
        if g is None:
            raise RError(f"NOGROUP No such consumer group '{a[3].decode('utf-8', 'replace')}' "
                         f"for key name '{a[2].decode('utf-8', 'replace')}'")
        return [RMap([(b"name", c.name), (b"pending", len(c.pel)),
                      (b"idle", max(now - c.seen, 0))])
                for c in (g.consumers[n] for n in sorted(g.consumers))]
    if sub == b"groups" and len(a) == 3:
        return [RMap([(b"name", n), (b"consumers", len(g.consumers)),
                      (b"pending", len(g.pel)), (b"last-delivered-id", fmt_id(g.last_id)),
                      (b"entries-read", None if g.entries_read == INVALID else g.entries_read),
                      (b"lag", s.lag(g))])
                for n, g in ((n, s.groups[n]) for n in sorted(s.groups))]
    if sub != b"stream":
        raise bad
    opts = a[3:]
    full = bool(opts)
    count = 10
    if opts:
        if len(opts) not in (1, 3) or opts[0].lower() != b"full":
            raise bad
        if len(opts) == 3:
            if opts[1].lower() != b"count":
                raise bad
            count = to_int(opts[2])
            if count < 0:
                count = 10
    head = [(b"length", len(s)), (b"radix-tree-keys", len(s.nodes)),
            (b"radix-tree-nodes", _rax_nodes(s)),
            (b"last-generated-id", fmt_id(s.last_id)),
            (b"max-deleted-entry-id", fmt_id(s.max_deleted)),
            (b"entries-added", s.entries_added),
            (b"recorded-first-entry-id", fmt_id(s.first_id))]
    if not full:
        first = s.range(0, MAX_ID, 1)
        last = s.range(0, MAX_ID, 1, rev=True)
        return RMap(head + [(b"groups", len(s.groups)),
                            (b"first-entry", _entry(*first[0]) if first else None),
                            (b"last-entry", _entry(*last[0]) if last else None)])
    groups = []
    for name in sorted(s.groups):
        g = s.groups[name]
        pel = []
        for i in g.pel_ids():
            if count and len(pel) >= count:
                break
            nk = g.pel[i]
            pel.append([fmt_id(i), nk.consumer, nk.time, nk.count])
        consumers = []
        for cn in sorted(g.consumers):
            c = g.consumers[cn]
            cp = []
            for i in g.pel_ids(c.pel):
                if count and len(cp) >= count:
                    break
                nk = g.pel[i]
                cp.append([fmt_id(i), nk.time, nk.count])
            consumers.append(RMap([(b"name", c.name), (b"seen-time", c.seen),
                                   (b"pel-count", len(c.pel)), (b"pending", cp)]))
        groups.append(RMap([
            (b"name", name), (b"last-delivered-id", fmt_id(g.last_id)),
            (b"entries-read", None if g.entries_read == INVALID else g.entries_read),
            (b"lag", s.lag(g)), (b"pel-count", len(g.pel)), (b"pending", pel),
            (b"consumers", consumers)]))
    ents = [_entry(i, f) for i, f in s.range(0, MAX_ID, count)]
    return RMap(head + [(b"entries", ents), (b"groups", groups)])


def _rax_nodes(s: Any) -> int:
    # Not Redis's radix-tree node count (which depends on the shape of its keys); a
    # plausible figure: one node per key plus the root.
    return len(s.nodes) + 1 if s.nodes else 1

