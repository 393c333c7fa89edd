"""Reading whole, plain requests at once: the fast path of ``Client.data_received``.

:func:`parse_commands` takes a chunk read from a connection and returns its commands when
the chunk is made only of whole, plain RESP commands (arrays of 1 to 1,048,576 bulk
strings, every count and length of at most 8 digits with no leading zero, every length at
most ``max_bulk``), and None for anything else: a command cut at the end of the chunk, an
inline command, an empty chunk or array, a negative array, a long length, a malformed
byte.  The server reads a declined chunk the general way (hiredis, and the checks around
it that give Redis's protocol errors), so where this answers it answers as hiredis would.

:data:`FAST` is the compiled twin (``_resp.c``), or None when it was not built or
``PERSIMMON_PURE_PYTHON`` is set; the server takes the fast path only with it (this
Python version is slower than hiredis: it is the reference the compiled one is tested
against, tests/test_resp_fastpath.py).
"""

from __future__ import annotations

import os
from typing import Any

MAX_ARGS = 1024 * 1024
MAX_DIGITS = 8


def _number(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after its CRLF) of the decimal number at ``pos``; (-1, pos) when
    it is not 1 to MAX_DIGITS digits without a leading zero followed by CRLF."""
    end = pos
    n = len(data)
    while end < n and 0x30 <= data[end] <= 0x39:
        end += 1
    digits = end - pos
    if digits == 0 or digits > MAX_DIGITS or (digits > 1 and data[pos] == 0x30):
        return -1, pos
    if data[end : end + 2] != b"\r\n":
        return -1, pos
    return int(data[pos:end]), end + 2


def parse_commands(data: bytes, max_bulk: int) -> list[list[bytes]] | None:
    """The commands of ``data`` if it is only whole plain commands, else None."""
    commands: list[list[bytes]] = []
    pos = 0
    n = len(data)
    if n == 0:
        return None
    while pos < n:
        if data[pos] != 0x2A:  # '*'
            return None
        count, pos = _number(data, pos + 1)
        if count < 1 or count > MAX_ARGS or count > (n - pos) // 6:
            return None
        argv = []
        for _ in range(count):
            if data[pos : pos + 1] != b"$":
                return None
            size, pos = _number(data, pos + 1)
            if size < 0 or size > max_bulk or size > n - pos - 2:
                return None
            if data[pos + size : pos + size + 2] != b"\r\n":
                return None
            argv.append(data[pos : pos + size])
            pos += size + 2
        commands.append(argv)
    return commands


def get_reply(data: bytes, max_bulk: int, table: dict, resp3: bool) -> bytes | None:
    """The reply to ``data`` when it is exactly one plain GET (any case) of one key, read as
    :func:`parse_commands` reads it, and ``table`` holds no value for the key (the nil of
    RESP2 or RESP3) or a plain bytes value (the bulk string); None for anything else (the
    server then dispatches the chunk the usual way).  The caller has checked that nothing
    else could change the answer: no key of that database has a TTL, the client is plain."""
    if type(table) is not dict:
        return None
    commands = parse_commands(data, max_bulk)
    if commands is None or len(commands) != 1:
        return None
    argv = commands[0]
    if len(argv) != 2 or argv[0].lower() != b"get":
        return None
    value = table.get(argv[1])
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if type(value) is not bytes:
        return None
    return b"$%d\r\n%b\r\n" % (len(value), value)


def set_args(data: bytes, max_bulk: int) -> tuple[bytes, bytes, bytes] | None:
    """``(name, key, value)`` when ``data`` is exactly one plain SET (any case, no options)
    of one key and one value, read as :func:`parse_commands` reads it; None for anything
    else (the server then dispatches the chunk the usual way)."""
    commands = parse_commands(data, max_bulk)
    if commands is None or len(commands) != 1:
        return None
    argv = commands[0]
    if len(argv) != 3 or argv[0].lower() != b"set":
        return None
    return argv[0], argv[1], argv[2]


def wire_size(command: list[bytes] | None) -> int:
    """How many bytes hiredis consumed for a command it returned, written the shortest
    way (None is ``*-1``).  The server counts with it what the hiredis reader holds: the
    fast path is taken only when the reader holds nothing, not even an array cut between
    two of its elements (which hiredis does not show)."""
    if command is None:
        return 5
    total = 3 + len(str(len(command)))
    for arg in command:
        if type(arg) is not bytes:
            raise TypeError("wire_size: a list of bytes or None")
        total += 5 + len(str(len(arg))) + len(arg)
    return total


def _load_compiled() -> Any:
    if os.environ.get("PERSIMMON_PURE_PYTHON", "0") not in ("", "0"):
        return None
    try:
        from . import _resp
    except ImportError:
        return None
    return _resp


FAST: Any = _load_compiled()
