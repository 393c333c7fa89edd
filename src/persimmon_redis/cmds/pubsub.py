"""Pub/sub commands: (P)SUBSCRIBE, (P)UNSUBSCRIBE, PUBLISH, PUBSUB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..patterns import glob_match
from ..registry import command
from ..replies import Push, RError

if TYPE_CHECKING:
    from ..server import Client, Server


@command("subscribe", arity=-2,
         flags=("pubsub", "noscript", "loading", "stale"), keys=(0, 0, 0), server=True)
def _subscribe(s: Server, c: Client, a: list, pattern: bool = False) -> None:
    kind = b"psubscribe" if pattern else b"subscribe"
    target = s.patterns if pattern else s.channels
    mine = c.patterns if pattern else c.channels
    for ch in a[1:]:
        target.setdefault(ch, set()).add(c)
        mine.add(ch)
        c.reply(Push([kind, ch, len(c.channels) + len(c.patterns)]))


@command("psubscribe", arity=-2,
         flags=("pubsub", "noscript", "loading", "stale"), keys=(0, 0, 0), server=True)
def _psubscribe(s: Server, c: Client, a: list) -> None:
    _subscribe(s, c, a, pattern=True)


@command("unsubscribe", arity=-1,
         flags=("pubsub", "noscript", "loading", "stale"), keys=(0, 0, 0), server=True)
def _unsubscribe(s: Server, c: Client, a: list, pattern: bool = False) -> None:
    kind = b"punsubscribe" if pattern else b"unsubscribe"
    target = s.patterns if pattern else s.channels
    mine = c.patterns if pattern else c.channels
    names = a[1:] or sorted(mine)
    if not names:
        c.reply(Push([kind, None, len(c.channels) + len(c.patterns)]))
        return
    for ch in names:
        subs = target.get(ch)
        if subs is not None:
            subs.discard(c)
            if not subs:
                del target[ch]
        mine.discard(ch)
        c.reply(Push([kind, ch, len(c.channels) + len(c.patterns)]))


@command("punsubscribe", arity=-1,
         flags=("pubsub", "noscript", "loading", "stale"), keys=(0, 0, 0), server=True)
def _punsubscribe(s: Server, c: Client, a: list) -> None:
    _unsubscribe(s, c, a, pattern=True)


@command("publish", arity=3,
         flags=("pubsub", "loading", "stale", "fast", "may-replicate"),
         keys=(0, 0, 0), server=True)
def _publish(s: Server, c: Client, a: list) -> None:
    c.reply(s.publish(a[1], a[2]))


@command("pubsub", arity=-2, flags=(), keys=(0, 0, 0), server=True)
def _pubsub(s: Server, c: Client, a: list) -> None:
    sub = a[1].upper()
    if sub == b"CHANNELS":
        pat = a[2] if len(a) > 2 else None
        c.reply([ch for ch in s.channels if pat is None or glob_match(pat, ch)])
    elif sub == b"NUMSUB":
        out: list = []
        for ch in a[2:]:
            out += [ch, len(s.channels.get(ch, ()))]
        c.reply(out)
    elif sub == b"NUMPAT":
        c.reply(len(s.patterns))
    else:
        c.reply(RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. "
                       "Try PUBSUB HELP."))
