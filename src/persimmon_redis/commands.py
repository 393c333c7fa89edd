"""``execute_op``: the body of ``RedisState.apply`` (one logged write, or a whole MULTI/EXEC).

The handlers live in ``cmds/`` (one module per data type) and ``chance.py`` (the internal
operations of random and blocking commands); importing this module imports them all, so
``registry.COMMANDS`` is complete.  The names below are re-exported for older imports.
"""

from __future__ import annotations

from typing import Any

from . import chance, cmds  # noqa: F401  (they fill the command table)
from .keyspace import DIRTY, Ctx, _views, reused_ctx
from .registry import COMMANDS, Cmd
from .replies import E_DB, OK, RError

__all__ = ["COMMANDS", "Cmd", "Ctx", "execute_op"]


def execute_op(state: Any, op: Any) -> Any:
    """``RedisState.apply``: run one logged write (or a whole MULTI/EXEC) on ``state``."""
    dbi, now, argv = op
    name = argv[0].lower()
    if name == b"exec":
        ctx = Ctx(state, dbi, now)  # (its own: SELECT inside a transaction moves it)
        out = []
        for sub in argv[1:]:
            sname = sub[0].lower()
            if sname == b"select":
                try:
                    ctx.select(int(sub[1]))
                    out.append(OK)
                except (ValueError, IndexError):
                    out.append(RError(E_DB))
                continue
            cmd = COMMANDS.get(sname)
            if cmd is None or cmd.server:
                out.append(RError(f"ERR unknown command '{sname.decode('utf-8', 'replace')}'"))
                continue
            DIRTY[1] = -1
            try:
                res = cmd.fn(ctx, list(sub))
            except RError as e:
                out.append(e)
                continue
            out.append(res)
            if not isinstance(res, RError):
                n = DIRTY[1]
                DIRTY[0] += 1 if n < 0 else n
        return out
    ctx = reused_ctx(state, dbi, now)
    cmd = COMMANDS[name]
    if not _views[3]:  # (the shadow's copy: its count of changes is never read)
        try:
            return cmd.fn(ctx, list(argv))
        except RError as e:
            return e
    DIRTY[1] = -1
    try:
        res = cmd.fn(ctx, list(argv))
    except RError as e:
        return e
    if not isinstance(res, RError):
        n = DIRTY[1]
        DIRTY[0] += 1 if n < 0 else n
    return res
