"""Connection commands: PING, ECHO, QUIT, SELECT, AUTH, HELLO, RESET.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..info import VERSION
from ..keyspace import to_int
from ..registry import command
from ..replies import E_DB, E_SYNTAX, E_WRONGPASS, OK, PONG, RError, RMap, Status, arity_error

if TYPE_CHECKING:
    from ..server import Client, Server


@command("ping", arity=-1, flags=("fast",), keys=(0, 0, 0), server=True)
def _ping(s: Server, c: Client, a: list) -> None:
    if len(a) > 2:
        c.reply(arity_error("ping"))
    elif (c.channels or c.patterns) and not c.resp3:
        c.reply([b"pong", a[1] if len(a) == 2 else b""])
    else:
        c.reply(a[1] if len(a) == 2 else PONG)


@command("echo", arity=2, flags=("loading", "stale", "fast"), keys=(0, 0, 0), server=True)
def _echo(s: Server, c: Client, a: list) -> None:
    c.reply(a[1])


@command("quit", arity=-1,
         flags=("allow-busy", "noscript", "loading", "stale", "fast", "no-auth"),
         keys=(0, 0, 0), server=True)
def _quit(s: Server, c: Client, a: list) -> None:
    c.reply(OK)
    c.close_after_reply()


@command("select", arity=2, flags=("loading", "stale", "fast"), keys=(0, 0, 0), server=True)
def _select(s: Server, c: Client, a: list) -> None:
    try:
        i = to_int(a[1])
    except RError as e:
        c.reply(e)
        return
    if not 0 <= i < len(s.state.dbs):
        c.reply(RError(E_DB))
        return
    c.db = i
    c.reply(OK)


@command("auth", arity=-2,
         flags=("noscript", "loading", "stale", "fast", "no-auth", "allow-busy"),
         keys=(0, 0, 0), server=True)
def _auth(s: Server, c: Client, a: list) -> None:
    if len(a) > 3:
        c.reply(RError(E_SYNTAX))
        return
    pw = s.cfg.requirepass
    if pw is None:
        c.reply(RError("ERR AUTH <password> called without any password configured for the "
                       "default user. Are you sure your configuration is correct?"))
        return
    user = a[1] if len(a) == 3 else b"default"
    if user == b"default" and a[-1] == pw.encode():
        c.authed = True
        c.reply(OK)
    else:
        c.reply(RError(E_WRONGPASS))


@command("hello", arity=-1,
         flags=("noscript", "loading", "stale", "fast", "no-auth", "allow-busy"),
         keys=(0, 0, 0), server=True)
def _hello(s: Server, c: Client, a: list) -> None:
    proto = None
    i = 1
    if len(a) > 1:
        try:
            proto = to_int(a[1])
        except RError:
            c.reply(RError("ERR Protocol version is not an integer or out of range"))
            return
        if proto not in (2, 3):
            c.reply(RError("NOPROTO unsupported protocol version"))
            return
        i = 2
    while i < len(a):
        opt = a[i].upper()
        if opt == b"AUTH" and i + 2 < len(a):
            if s.cfg.requirepass is None or a[i + 2] != s.cfg.requirepass.encode():
                c.reply(RError(E_WRONGPASS))
                return
            c.authed = True
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(a):
            c.name = a[i + 1]
            i += 2
        else:
            c.reply(RError(f"ERR Syntax error in HELLO option '{a[i].decode('utf-8', 'replace')}'"))
            return
    if not c.authed:
        c.reply(RError("NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time"))
        return
    if proto is not None:
        c.resp3 = proto == 3
    c.reply(RMap([(b"server", b"redis"), (b"version", VERSION.encode()),
                  (b"proto", 3 if c.resp3 else 2), (b"id", c.id), (b"mode", b"standalone"),
                  (b"role", b"master"), (b"modules", [])]))


@command("reset", arity=1,
         flags=("noscript", "loading", "stale", "fast", "no-auth", "allow-busy"),
         keys=(0, 0, 0), server=True)
def _reset(s: Server, c: Client, a: list) -> None:
    c.multi = None
    c.multi_error = False
    s.unwatch_all(c)
    s.unsubscribe_all(c)
    c.db = 0
    c.resp3 = False
    c.name = b""
    c.authed = s.cfg.requirepass is None
    c.reply(Status("RESET"))
