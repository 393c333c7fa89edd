"""The counters and the message the foreground and the shadow process share.

One typed view owns the layout: :class:`Counters` is a ctypes structure of named 64-bit
fields, placed in shared memory by :func:`shared` before the shadow is forked, so both
processes read and write the same words as ``counters.position``, ``counters.sleeping``...
(attribute access on a ctypes structure: no index to keep in step between two modules).
An :class:`~persimmon.shadow.Applier` driven in-process (tests) uses a private ``Counters()``.

Each field has one writer, except ``stop``/``ready``/``sleeping``, which the foreground also
clears when it starts or stops a shadow.  Nothing here is persistent: the layout can change
freely between versions.

The message is a fixed buffer of ``MSG_SIZE`` bytes holding the shadow's first report (an
error, a divergence); :func:`say` writes it only while it is empty.
"""

from __future__ import annotations

import ctypes
from typing import Any

MSG_SIZE = 4096

_i64 = ctypes.c_int64


class Counters(ctypes.Structure):
    """The shared counters (see the module docstring); every field is a signed 64-bit int."""

    _fields_ = [
        ("stop", _i64),            # foreground: the shadow should exit
        ("position", _i64),        # shadow: log position of its last commit
        ("committed_ops", _i64),   # shadow: operations in committed batches
        ("batches", _i64),         # shadow: batches committed
        ("undo_entries", _i64),    # shadow: undo entries the heap logged (its running count)
        ("errors", _i64),          # shadow: operations (or their end) that raised
        ("diverged", _i64),        # shadow, verify mode: 1 once a divergence was found
        ("diverged_pos", _i64),    # shadow: the log position of that operation
        ("heartbeat", _i64),       # shadow: idle looks at the log
        ("ready", _i64),           # shadow: 1 once the pool is open and it applies the log
        ("apply_ns", _i64),        # shadow: time spent applying operations
        ("applied_ops", _i64),     # shadow: operations applied (committed or not)
        ("max_batch_seen", _i64),  # shadow: the largest batch committed
        ("wanted", _i64),          # foreground (sync): commit as soon as this position is reached
        ("sleeping", _i64),        # shadow: 1 while asleep on the doorbell (a commit rings it)
        ("salvaged", _i64),        # shadow: damaged free space its opens re-carved, in bytes
    ]

    def snapshot(self) -> dict[str, int]:
        """Every field's current value (a copy, for comparisons and reports)."""
        return {name: getattr(self, name) for name, _t in self._fields_}


FIELDS: tuple[str, ...] = tuple(name for name, _t in Counters._fields_)


def shared(ctx: Any) -> tuple[Counters, Any]:
    """Zeroed counters and an empty message buffer in memory a process forked by the
    multiprocessing context ``ctx`` shares with this one."""
    return ctx.RawValue(Counters), ctx.RawArray("c", MSG_SIZE)


class LocalMessage:
    """The message buffer's stand-in when the shadow's applier runs in-process."""

    value = b""


def say(message: Any, msg: bytes | str) -> None:
    """Write ``msg`` into the shared message buffer unless it already holds one (the first
    report is the one that explains the rest)."""
    data = msg.encode("utf-8", "replace") if isinstance(msg, str) else msg
    if not message.value:
        message.value = data[: MSG_SIZE - 1]


def read_message(message: Any) -> str:
    """The message buffer as text."""
    return message.value.decode("utf-8", "replace")
