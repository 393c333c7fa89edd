"""The decorator form of the API: ``@persimmon.rw`` / ``@persimmon.ro`` methods.

A decorated method is unchanged when called on the object itself (so one operation may call
another); the handle returned by :func:`persimmon.open` turns a call of a ``rw`` method into
a logged operation ``(CALL, name, args, kwargs)`` and a call of a ``ro`` method into a plain
call on the DRAM copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
CALL = "__persimmon_call__"


def rw(fn: F) -> F:
    """Mark a method as a read-write operation (logged, made durable, replayed)."""
    fn._persimmon_kind = "rw"  # type: ignore[attr-defined]
    return fn


def ro(fn: F) -> F:
    """Mark a method as a read-only operation (runs on the DRAM copy, never logged)."""
    fn._persimmon_kind = "ro"  # type: ignore[attr-defined]
    return fn


def apply_op(state: Any, op: Any) -> Any:
    """Execute ``op`` on ``state`` (a DRAM object or a PM proxy): the one dispatch rule.

    Method-call operations made by the decorator form call the method; anything else goes to
    ``state.apply(op)``.
    """
    if type(op) is tuple and len(op) == 4 and op[0] == CALL:
        return getattr(state, op[1])(*op[2], **op[3])
    return state.apply(op)
