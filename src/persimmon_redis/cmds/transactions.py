"""MULTI, EXEC, DISCARD, WATCH, UNWATCH: transactions, run as one operation of the state
machine (see docs/redis.md, "Operations and determinism").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import chance, notify
from ..busy import SCRIPT_CALLS, multi_form
from ..keyspace import Ctx, lookup
from ..registry import COMMANDS, Cmd, command
from ..replies import NULL_ARRAY, OK, RError, encode
from .resolved import server_rng

if TYPE_CHECKING:
    from ..server import Client, Server


# The commands a client in MULTI runs at once instead of queueing (as Redis's processCommand).
NOT_QUEUED = frozenset({b"exec", b"discard", b"multi", b"watch", b"reset", b"quit"})


def answered_outside(name: bytes, cmd: Cmd) -> bool:
    """Whether a queued command is answered by the server around the transaction's one
    operation (a server command that neither reads nor writes the dataset), rather than
    inside it (data commands, SELECT, and the random and blocking commands in their
    deterministic forms)."""
    return cmd.server and name != b"select" and not cmd.has("random") \
        and not cmd.has("blocking") and name not in SCRIPT_CALLS


@command("multi", arity=1,
         flags=("noscript", "loading", "stale", "fast", "allow-busy"), keys=(0, 0, 0), server=True)
def _multi(s: Server, c: Client, a: list) -> None:
    if c.multi is not None:
        c.reply(RError("ERR MULTI calls can not be nested"))
        return
    c.multi = []
    c.multi_error = False
    c.reply(OK)


@command("discard", arity=1,
         flags=("noscript", "loading", "stale", "fast", "allow-busy"), keys=(0, 0, 0), server=True)
def _discard(s: Server, c: Client, a: list) -> None:
    if c.multi is None:
        c.reply(RError("ERR DISCARD without MULTI"))
        return
    c.multi = None
    s.unwatch_all(c)
    c.reply(OK)


@command("exec", arity=1,
         flags=("noscript", "loading", "stale", "skip-slowlog"), keys=(0, 0, 0), server=True)
def _exec(s: Server, c: Client, a: list) -> None:
    if c.multi is None:
        c.reply(RError("ERR EXEC without MULTI"))
        return
    queued, c.multi = c.multi, None
    if c.multi_error:
        c.multi_error = False
        s.unwatch_all(c)
        c.reply(RError("EXECABORT Transaction discarded because of previous errors."))
        return
    if c.dirty or (c.watched and _watched_key_expired(s, c)):
        s.unwatch_all(c)
        c.reply(NULL_ARRAY)
        return
    s.unwatch_all(c)
    # Reads and writes of the transaction run as one operation (atomic and durable as one).
    # Commands that do not touch the dataset (PING, TIME, PUBLISH, AUTH, SUBSCRIBE, ...) are
    # answered by the server around it, in their place in the reply; random commands and
    # blocking pops run inside it in their deterministic forms (chance.py).  SAVE and
    # SHUTDOWN are refused at MULTI time, as by Redis.  A transaction without a write needs
    # no operation and runs command by command.
    names = [q[0].lower() for q in queued]
    cmds = [COMMANDS[n] for n in names]  # (all known: unknown ones abort at queue time)
    for cmd in cmds:
        cmd.calls += 1
    has_write = any(n == b"select" or cmd.write or n in SCRIPT_CALLS
                    for n, cmd in zip(names, cmds, strict=True))
    if not has_write:
        out = []
        c.in_exec = True
        try:
            for q, cmd in zip(queued, cmds, strict=True):
                mark = len(c.out)
                if cmd.server:
                    cmd.fn(s, c, q)
                else:
                    s.run(c, cmd, q)
                out.append(_decode_last(c, mark))
        finally:
            c.in_exec = False
        c.out.append(b"*%d\r\n" % len(out) + b"".join(out))
        return
    inside = []
    outside = [answered_outside(n, cmd) for n, cmd in zip(names, cmds, strict=True)]
    for q, cmd, out_ in zip(queued, cmds, outside, strict=True):
        if cmd.has("random"):
            inside.append((b"\x00rand", b"%d" % server_rng.getrandbits(63), *q))
        elif cmd.has("blocking"):
            inside.append((b"\x00bpop", *q))
        elif q[0].lower() in SCRIPT_CALLS:
            inside.append(multi_form(s, c, q))
        elif not out_:
            err = cmd.precheck(s, c.db, q) if cmd.precheck is not None else None
            # (a failed check answers in its place; nothing of it is executed)
            inside.append(tuple(q) if err is None else (b"\x00error", err.msg.encode()))
    pre: list = []
    if s.watchers or s.blocked:  # the keys FLUSHALL, SWAPDB, ... touch, seen before
        db = c.db
        for q, name, cmd in zip(queued, names, cmds, strict=True):
            if name == b"select":
                try:
                    db = int(q[1])
                except ValueError:
                    pass
            elif cmd.touches is not None and 0 <= db < len(s.state.dbs):
                pre += cmd.touches(s, db, q)
    existed = None
    shapes: dict = {}
    if s.notify_on:
        existed = {}
        db = c.db
        for q in inside:
            q = _notified_form(q)
            if q[0].lower() == b"select":
                db = int(q[1]) if q[1].isdigit() else db
            elif q[0].lower() in COMMANDS:
                keys = COMMANDS[q[0].lower()].keys(list(q))
                existed.update(((db, k), v) for k, v in s.existing(db, keys).items())
                for k, v in (s.stream_shapes(db, list(q), keys) or {}).items():
                    shapes.setdefault((db, k), v)
    res = s.p.execute_rw((c.db, s.now(), (b"exec", *inside)))
    if existed is not None:
        db = c.db
        for q, r in zip(inside, res, strict=False):
            q = _notified_form(q)
            name = q[0].lower()
            if name == b"select":
                db = int(q[1]) if q[1].isdigit() else db
            elif name in COMMANDS and COMMANDS[name].write and name[:1] != b"\x00":
                before = after = None
                if name in notify.STREAM_WRITES:
                    # the shapes between two commands of the operation are estimated from
                    # the shape before, the reply and the transaction's result
                    ctx = Ctx(s.state, db, s.now())
                    before = {k: shapes.get((db, k)) for k in cmd_keys(q)}
                    after = {k: notify.advance(v, name, list(q), r,
                                               notify.stream_shape(lookup(ctx, k)))
                             for k, v in before.items()}
                    shapes.update(((db, k), v) for k, v in after.items())
                s.notify_write(db, list(q), r, {k: v for (d, k), v in existed.items()
                                                if d == db}, before, after)
    if pre:  # (blocked clients are served after the transaction's events)
        s.touched_pairs(pre)
    db = c.db
    for q, name, cmd in zip(queued, names, cmds, strict=True):
        if name == b"select":
            try:
                db = int(q[1])
            except ValueError:
                pass
            continue
        if cmd.has("blocking"):
            try:
                keys = chance.bpop_keys(q)[0]
            except RError:
                keys = []
            s.touched(db, keys + ([q[2]] if name in (b"brpoplpush", b"blmove") else []))
        elif cmd.write:
            s.touched(db, cmd.keys(q))
    if 0 <= db < len(s.state.dbs):
        c.db = db
    if len(inside) == len(queued):
        c.reply(res)
        return
    parts = []
    results = iter(res)
    c.in_exec = True
    try:
        for q, cmd, out_ in zip(queued, cmds, outside, strict=True):
            if out_:
                mark = len(c.out)
                cmd.fn(s, c, q)
                parts.append(_decode_last(c, mark))
            else:
                parts.append(encode(next(results), c.resp3))
    finally:
        c.in_exec = False
    c.out.append(b"*%d\r\n" % len(parts) + b"".join(parts))


def _decode_last(c: Client, mark: int) -> bytes:
    data = b"".join(c.out[mark:])
    del c.out[mark:]
    return data


@command("watch", arity=-2,
         flags=("noscript", "loading", "stale", "fast", "allow-busy"),
         keys=(1, -1, 1), server=True)
def _watch(s: Server, c: Client, a: list) -> None:
    if c.multi is not None:
        c.reply(RError("ERR WATCH inside MULTI is not allowed"))
        return
    now = s.now()
    db = s.state.dbs[c.db]
    for k in a[1:]:
        key = (c.db, k)
        s.watchers.setdefault(key, set()).add(c)
        c.watched.add(key)
        if _stale(db, k, now):
            c.watched_stale.add(key)
    c.reply(OK)


def _stale(db: Any, k: bytes, now: int) -> bool:
    """A key still in the dictionary past its deadline (not yet deleted)."""
    e = db.expires.get(k)
    return e is not None and e <= now and k in db.data


def _watched_key_expired(s: Server, c: Client) -> bool:
    """Redis 7.0: a watched key that was live at WATCH time and has expired since makes
    EXEC fail even if nothing deleted it yet."""
    now = s.now()
    dbs = s.state.dbs
    return any(key not in c.watched_stale and _stale(dbs[key[0]], key[1], now)
               for key in c.watched)


@command("unwatch", arity=1,
         flags=("noscript", "loading", "stale", "fast", "allow-busy"), keys=(0, 0, 0), server=True)
def _unwatch(s: Server, c: Client, a: list) -> None:
    s.unwatch_all(c)
    c.reply(OK)


def cmd_keys(q: Any) -> list:
    return COMMANDS[q[0].lower()].keys(list(q))


def _notified_form(q: Any) -> Any:
    """The command whose keyspace events a queued operation publishes (a stream read that
    would block runs as ``\x00bpop`` inside the transaction)."""
    if q[0] == b"\x00bpop" and q[1].lower() == b"xreadgroup":
        return q[1:]
    return q
