"""Canonical digests of values and states, equal for a native graph and its PM copy.

Used by divergence detection: the foreground and the shadow each digest an operation's
result and (in verify mode) the whole state, and compare.  The encoding walks the graph in a
canonical way: dict and list order matter, set order does not (members are sorted by their
own digests), proxies count as the built-in they stand for, user objects as their class name
plus attributes, and shared references and cycles as back-references.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from xxhash import xxh3_64

from .proxies import PDeque, PDict, PList, PObject, Proxy, PSet, attributes_of, offset_of


def digest(value: Any) -> int:
    """64-bit canonical digest of ``value`` (natives and proxies alike)."""
    h = xxh3_64()
    _feed(value, h, {})
    return h.intdigest()


def _leaf(value: Any) -> bytes:
    t = type(value)
    if t is bytes:
        return b"b%d:" % len(value) + value
    if t is str:
        e = value.encode("utf-8", "surrogatepass")
        return b"s%d:" % len(e) + e
    if t is bool:
        return b"T" if value else b"F"
    if t is int:
        return b"i%d;" % value
    if t is float:
        return b"f" + value.hex().encode() + b";"
    if value is None:
        return b"N"
    return b"r" + repr(value).encode("utf-8", "backslashreplace") + b";"


def _feed(value: Any, h: Any, seen: dict[int, int]) -> None:
    t = type(value)
    if t in _LEAF_TYPES:
        h.update(_leaf(value))
        return
    key = id(value) if not isinstance(value, Proxy) else ("p", offset_of(value))  # type: ignore[assignment]
    if key in seen:
        h.update(b"@%d;" % seen[key])
        return
    if t is tuple or t is frozenset:
        if t is tuple:
            h.update(b"(%d" % len(value))
            for v in value:
                _feed(v, h, seen)
        else:
            _feed_unordered(value, h, seen, b"{")
        h.update(b")")
        return
    seen[key] = len(seen)
    if t is dict or t is PDict:
        h.update(b"d%d" % len(value))
        for k, v in value.items():
            _feed(k, h, seen)
            _feed(v, h, seen)
    elif t is list or t is PList:
        h.update(b"l%d" % len(value))
        for v in value:
            _feed(v, h, seen)
    elif t is deque or t is PDeque:
        h.update(b"q%d,%r" % (len(value), value.maxlen))
        for v in value:
            _feed(v, h, seen)
    elif t is set or t is PSet:
        _feed_unordered(value, h, seen, b"S")
    elif isinstance(value, PObject) or hasattr(value, "__dict__"):
        cls = value.__class__
        h.update(f"o{cls.__module__}:{cls.__qualname__};".encode())
        attrs = attributes_of(value) if isinstance(value, PObject) else vars(value)
        # Fed as a dict, numbered as one, but keyed by its object: a temporary dict keyed
        # by id() would be freed after this, and the next object's temporary could get
        # the same id and be fed as a back-reference to it (allocator-dependent, so the
        # foreground and the shadow could disagree on one state).
        seen[("attrs", key)] = len(seen)
        h.update(b"d%d" % len(attrs))
        for k, v in attrs.items():
            _feed(k, h, seen)
            _feed(v, h, seen)
    elif isinstance(value, BaseException):
        h.update(f"x{type(value).__qualname__}:{value.args!r};".encode())
    else:
        h.update(_leaf(value))


def _feed_unordered(value: Any, h: Any, seen: dict[int, int], tag: bytes) -> None:
    parts = []
    for v in value:
        sub = xxh3_64()
        _feed(v, sub, dict(seen))
        parts.append(sub.digest())
    parts.sort()
    h.update(tag + b"%d" % len(parts) + b"".join(parts))


_LEAF_TYPES = frozenset({bytes, str, bool, int, float, type(None), complex})
