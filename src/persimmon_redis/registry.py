"""The command table: every command's handler, arity, flags and key positions, in one place.

A handler registers itself where it is defined::

    @command("setbit", arity=4, flags=("write", "denyoom"))
    def cmd_setbit(ctx: Ctx, argv: list) -> Any: ...

and the server (dispatch, arity check, MULTI/EXEC rules, WATCH and blocked-key wake-ups),
COMMAND, COMMAND INFO/COUNT/LIST/GETKEYS and INFO commandstats all read :data:`COMMANDS`.

Two kinds of handler:

* data commands (the default): ``fn(ctx, argv) -> reply``.  With the ``write`` flag the
  command is an operation of the state machine: the server logs ``(db, now_ms, argv)`` and
  ``RedisState.apply`` runs the handler (on the DRAM copy and, in the shadow, on the PM
  copy), so it must be deterministic.  Without it the handler is a read on the DRAM copy.
* server commands (``server=True``): ``fn(server, client, argv) -> None``; the handler
  replies itself (``client.reply(...)``).  Connection, transaction, pub/sub, introspection,
  and the commands whose chance or blocking the server resolves before logging.

This module imports nothing from the package but ``replies``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# Flags with a meaning to the server (others are only reported by COMMAND INFO):
#   write     a logged operation (data commands) / changes the dataset (server commands)
#   readonly  reads the dataset, never changes it
#   blocking  may park the client (resolved by the server; \x00bpop inside MULTI)
#   random    the reply depends on chance (resolved by the server; \x00rand inside MULTI)
#   no-multi  refused while a transaction is queued
#   internal  an operation the server builds itself (``\x00...``), never a client command
#   pubsub    allowed to a RESP2 client in subscribed mode when also in PUBSUB_CONTEXT
KNOWN_FLAGS = frozenset({
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking",
    "loading", "stale", "skip-monitor", "skip-slowlog", "asking", "fast", "no-auth",
    "may-replicate", "no-mandatory-keys", "no-async-loading", "no-multi",
    "allow-busy", "random", "internal", "protected", "touches-arbitrary-keys",
    "sentinel", "only-sentinel", "allow-stale",
})


class Cmd:
    """One command of the table."""

    __slots__ = ("name", "fn", "arity", "flags", "first", "last", "step", "getkeys",
                 "write", "server", "touches", "precheck", "calls", "usec", "failed",
                 "rejected")

    def __init__(self, name: str, fn: Callable, arity: int, flags: Iterable[str] = (),
                 keys: tuple[int, int, int] = (1, 1, 1),
                 getkeys: Callable[[list], list] | None = None, server: bool = False,
                 touches: Callable[[Any, int, list], list] | None = None,
                 precheck: Callable[[Any, int, list], Any] | None = None) -> None:
        self.name = name
        self.fn = fn
        self.arity = arity
        self.flags = tuple(flags)
        unknown = set(self.flags) - KNOWN_FLAGS
        if unknown:
            raise ValueError(f"command {name!r}: unknown flags {sorted(unknown)}")
        self.first, self.last, self.step = keys
        self.getkeys = getkeys
        self.write = "write" in self.flags
        self.server = server
        self.touches = touches
        self.precheck = precheck
        # INFO commandstats
        self.calls = 0
        self.usec = 0
        self.failed = 0
        self.rejected = 0

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def keys(self, argv: list) -> list:
        """The key arguments of ``argv`` (Redis's first/last/step, or ``getkeys``)."""
        if self.getkeys is not None:
            return self.getkeys(argv)
        if self.first == 0:
            return []
        last = self.last if self.last >= 0 else len(argv) + self.last
        return list(argv[self.first : last + 1 : self.step])

    def arity_ok(self, n: int) -> bool:
        a = self.arity
        return n == a if a >= 0 else n >= -a

    def __repr__(self) -> str:
        return f"Cmd({self.name!r}, arity={self.arity}, flags={self.flags})"


COMMANDS: dict[bytes, Cmd] = {}


def command(name: str, arity: int, flags: Iterable[str] = (),
            keys: tuple[int, int, int] = (1, 1, 1),
            getkeys: Callable[[list], list] | None = None, aliases: Iterable[str] = (),
            server: bool = False,
            touches: Callable[[Any, int, list], list] | None = None,
            precheck: Callable[[Any, int, list], Any] | None = None
            ) -> Callable[[Callable], Callable]:
    """Register the decorated handler as command ``name`` (and ``aliases``, same entry
    data).  Names are lower-case; a name registered twice is an error (two modules would
    otherwise silently fight over it).  Returns the handler unchanged, so decorators stack
    when an alias needs other flags or arity.

    ``touches(server, db, argv) -> [(db, key), ...]``: for a write that changes keys other
    than its key arguments (FLUSHALL, SWAPDB, MOVE, ...), the keys WATCH and blocked clients
    must hear about; called before the write runs (only while some client watches a key or
    is blocked).

    ``precheck(server, db, argv) -> RError | None``: a check that depends on the server's
    configuration (the shadow has none, so the logged operation must not depend on it), run
    by the server before the write is logged: an error is the reply and nothing is logged.
    Commands with one leave the server's fast path."""

    def register(fn: Callable) -> Callable:
        for n in (name, *aliases):
            if n != n.lower():
                raise ValueError(f"command names are lower-case: {n!r}")
            b = n.encode()
            if b in COMMANDS:
                raise ValueError(f"command {n!r} registered twice")
            COMMANDS[b] = Cmd(n, fn, arity, flags, keys, getkeys, server, touches, precheck)
        return fn

    return register


def lookup(name: bytes) -> Cmd | None:
    """The entry of a lower-cased command name (None if unknown or internal)."""
    if name[:1] == b"\x00":
        return None
    return COMMANDS.get(name)


def client_commands() -> list[bytes]:
    """The names a client may call (the internal ``\\x00`` operations left out), sorted."""
    return sorted(n for n, c in COMMANDS.items() if "internal" not in c.flags)
