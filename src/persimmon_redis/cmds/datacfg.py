"""``\x00datacfg name value``: CONFIG SET of a setting the state machine keeps (see
``datasettings.py``), logged so the shadow applies it in its place."""

from __future__ import annotations

from typing import Any

from ..datasettings import SETTINGS
from ..keyspace import Ctx, changes
from ..registry import command
from ..replies import OK


@command("\x00datacfg", arity=3, flags=("write", "internal"), keys=(0, 0, 0))
def cmd_datacfg(ctx: Ctx, a: list) -> Any:
    attr, _ = SETTINGS[a[1]]
    setattr(ctx.state, attr, int(a[2]))
    changes(0)  # (a setting, not data: Redis's CONFIG SET changes nothing)
    return OK
