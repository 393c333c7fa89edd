"""Commands whose chance or blocking the server resolves before anything is logged:
SPOP, SRANDMEMBER, ZRANDMEMBER, HRANDFIELD, RANDOMKEY and the blocking pops (the state-
machine side of both is in ``chance.py``).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from .. import chance
from ..keyspace import Ctx
from ..registry import command
from ..replies import NULL_ARRAY, RError

if TYPE_CHECKING:
    from ..server import Client, Server


# The server's own random choices (outside a transaction; seeds of \x00rand inside one).
server_rng = random.Random()


def _plain_form(a: list, key: bytes) -> list:
    """The non-blocking command a served blocking pop amounts to (for notifications)."""
    name = a[0].lower()
    if name in (b"blpop", b"brpop", b"bzpopmin", b"bzpopmax"):
        return [name[1:], key]
    if name == b"brpoplpush":
        return [b"rpoplpush", key, a[2]]
    if name == b"blmove":
        return [b"lmove", key, a[2], a[3], a[4]]
    return [name[1:], b"1", key, *a[3 + int(a[2]):]]


def _bpop_keys(argv: list) -> list:
    try:
        return chance.bpop_keys(argv)[0]
    except RError:
        return []


@command("spop", arity=-2, flags=("write", "fast", "random"), keys=(1, 1, 1), server=True)
@command("srandmember", arity=-2, flags=("readonly", "random"), keys=(1, 1, 1), server=True)
@command("zrandmember", arity=-2, flags=("readonly", "random"), keys=(1, 1, 1), server=True)
@command("hrandfield", arity=-2, flags=("readonly", "random"), keys=(1, 1, 1), server=True)
@command("randomkey", arity=1,
         flags=("readonly", "touches-arbitrary-keys", "random"), keys=(0, 0, 0), server=True)
def _random(s: Server, c: Client, a: list) -> None:
    """SPOP, SRANDMEMBER, ZRANDMEMBER, HRANDFIELD, RANDOMKEY: chosen here, at random, from
    the DRAM copy; SPOP's members are then removed by a logged ``\x00spop`` operation."""
    try:
        reply, write = chance.resolve(Ctx(s.state, c.db, s.now()), a, server_rng, canonical=False)
    except RError as e:
        c.reply(e)
        return
    if write is not None:
        existed = s.existing(c.db, [a[1]]) if s.notify_on else None
        reply = s.write(c.db, write)
        s.touched(c.db, [a[1]])
        if existed is not None:
            s.notify_write(c.db, list(write), reply, existed)
    c.reply(reply)


@command("blpop", arity=-3,
         flags=("write", "noscript", "blocking"), keys=(1, -2, 1), server=True)
@command("brpop", arity=-3,
         flags=("write", "noscript", "blocking"), keys=(1, -2, 1), server=True)
@command("brpoplpush", arity=4,
         flags=("write", "denyoom", "noscript", "blocking"), keys=(1, 2, 1), server=True)
@command("blmove", arity=6,
         flags=("write", "denyoom", "noscript", "blocking"), keys=(1, 2, 1), server=True)
@command("blmpop", arity=-5, flags=("write", "blocking"), getkeys=_bpop_keys,
         server=True)
@command("bzpopmin", arity=-3,
         flags=("write", "noscript", "fast", "blocking"), keys=(1, -2, 1), server=True)
@command("bzpopmax", arity=-3,
         flags=("write", "noscript", "fast", "blocking"), keys=(1, -2, 1), server=True)
@command("bzmpop", arity=-5, flags=("write", "blocking"), getkeys=_bpop_keys,
         server=True)
def _blocking_pop(s: Server, c: Client, a: list) -> None:
    """BLPOP / BRPOP / BLMOVE / BRPOPLPUSH / BLMPOP / BZPOPMIN / BZPOPMAX / BZMPOP."""
    try:
        keys, t = chance.bpop_keys(a)
        timeout = chance.timeout_arg(t)
    except RError as e:
        c.reply(e)
        return

    def attempt(first: bool = True) -> Any:
        ready = chance.bpop_ready(Ctx(s.state, c.db, s.now()), a)
        if isinstance(ready, RError):  # a key of another type: an error at first, later
            return ready if first else None  # the client stays blocked (Redis 7.0)
        if ready is None:
            return None
        name = a[0].lower()
        dst = [a[2]] if name in (b"brpoplpush", b"blmove") else []
        existed = s.existing(c.db, [ready, *dst]) if s.notify_on else None
        out = s.write(c.db, (b"\x00bpop", *a))
        if existed is not None:
            s.notify_write(c.db, _plain_form(a, ready), out[1:] if name in (
                b"blpop", b"brpop") else out, existed)
        s.touched(c.db, [ready] + ([a[2]] if name in (b"brpoplpush", b"blmove") else []))
        return out

    if c.multi is None and not c.in_exec:
        res = attempt()
        if res is not None:
            c.reply(res)
            return
        s.block(c, keys, timeout, lambda: attempt(False))
    else:
        res = attempt()
        c.reply(res if res is not None else NULL_ARRAY)
