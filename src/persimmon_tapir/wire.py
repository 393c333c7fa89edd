"""Messages on the wire: tuples of bytes, str, int, None and nested tuples, packed with msgpack.

A datagram that does not decode to a tuple whose first element is a known message name is
rejected with :class:`MessageError` (the receiver counts and drops it); nothing in a datagram
is ever evaluated or unpickled.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["MessageError", "encode", "decode", "MAX_DEPTH"]

MAX_DEPTH = 64


class MessageError(ValueError):
    """A datagram that is not a well-formed protocol message."""


def encode(msg: tuple) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def decode(data: bytes, names: frozenset[str]) -> tuple:
    """The message in ``data``; raises :class:`MessageError` for anything malformed."""
    try:
        msg: Any = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several types for malformed input
        raise MessageError(f"undecodable datagram ({type(e).__name__}: {e})") from None
    if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], str):
        raise MessageError("datagram is not a tagged tuple")
    if msg[0] not in names:
        raise MessageError(f"unknown message type {msg[0][:20]!r}")
    return msg
