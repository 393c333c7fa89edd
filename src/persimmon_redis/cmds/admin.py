"""Server commands: INFO, CONFIG, COMMAND, CLIENT, TIME, SAVE, BGSAVE, LASTSAVE, SHUTDOWN,
DEBUG (the introspection itself is in ``info.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..info import NO_REPLY, client_cmd, command_cmd, config_cmd, render_info
from ..keyspace import DIRTY
from ..registry import command
from ..replies import OK, RError, Status

if TYPE_CHECKING:
    from ..server import Client, Server


@command("info", arity=-1, flags=("loading", "stale"), keys=(0, 0, 0), server=True)
def _info(s: Server, c: Client, a: list) -> None:
    c.reply(render_info(s, [x.lower() for x in a[1:]]))


@command("config", arity=-2, flags=(), keys=(0, 0, 0), server=True)
def _config(s: Server, c: Client, a: list) -> None:
    c.reply(config_cmd(s, a))


@command("command", arity=-1, flags=("loading", "stale"), keys=(0, 0, 0), server=True)
def _command(s: Server, c: Client, a: list) -> None:
    c.reply(command_cmd(s, a))


@command("client", arity=-2, flags=(), keys=(0, 0, 0), server=True)
def _client(s: Server, c: Client, a: list) -> None:
    res = client_cmd(s, c, a)
    if res is not NO_REPLY:
        c.reply(res)


@command("time", arity=1, flags=("loading", "stale", "fast"), keys=(0, 0, 0), server=True)
def _time(s: Server, c: Client, a: list) -> None:
    t = time.time()
    c.reply([b"%d" % int(t), b"%d" % int((t % 1) * 1_000_000)])


@command("save", arity=-1,
         flags=("no-async-loading", "admin", "noscript", "no-multi"), keys=(0, 0, 0), server=True)
def _save(s: Server, c: Client, a: list) -> None:
    s.p.checkpoint(wait=True)
    s.last_save = int(time.time())
    DIRTY[0] = 0
    c.reply(OK)


@command("bgsave", arity=-1,
         flags=("no-async-loading", "admin", "noscript"), keys=(0, 0, 0), server=True)
def _bgsave(s: Server, c: Client, a: list) -> None:
    s.p.checkpoint(wait=False)
    s.last_save = int(time.time())
    DIRTY[0] = 0
    c.reply(Status("Background saving started"))


@command("lastsave", arity=1, flags=("loading", "stale", "fast"), keys=(0, 0, 0), server=True)
def _lastsave(s: Server, c: Client, a: list) -> None:
    c.reply(s.last_save)


@command("shutdown", arity=-1,
         flags=("admin", "noscript", "loading", "stale", "no-multi", "allow-busy"),
         keys=(0, 0, 0), server=True)
def _shutdown(s: Server, c: Client, a: list) -> None:
    s.shutdown_event.set()


@command("debug", arity=-2,
         flags=("admin", "noscript", "loading", "stale", "protected"), keys=(0, 0, 0), server=True)
def _debug(s: Server, c: Client, a: list) -> None:
    sub = a[1].upper()
    if sub == b"SLEEP" and len(a) == 3:
        time.sleep(float(a[2]))
        c.reply(OK)
    elif sub == b"JMAP":
        c.reply(OK)
    else:
        c.reply(RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'"))
