"""Redis glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, PUBSUB CHANNELS, CONFIG GET)."""

from __future__ import annotations

import re
from typing import Any


def glob_match(pattern: bytes, s: bytes) -> bool:
    """Redis glob (``* ? [abc] [^a] [a-z] \\x``)."""
    return compile_glob(pattern).match(s) is not None


_glob_cache: dict[bytes, Any] = {}


def compile_glob(pattern: bytes) -> Any:
    r = _glob_cache.get(pattern)
    if r is None:
        out = b""
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i : i + 1]
            if c == b"*":
                out += b".*"
            elif c == b"?":
                out += b"."
            elif c == b"\\" and i + 1 < n:
                i += 1
                out += re.escape(pattern[i : i + 1])
            elif c == b"[":
                j = pattern.find(b"]", i + 1)
                if j < 0:
                    out += re.escape(c)
                else:
                    body = pattern[i + 1 : j]
                    neg = body.startswith(b"^")
                    if neg:
                        body = body[1:]
                    body = body.replace(b"\\", b"\\\\")
                    out += b"[" + (b"^" if neg else b"") + body + b"]"
                    i = j
            else:
                out += re.escape(c)
            i += 1
        try:
            r = re.compile(out + b"\\Z", re.S)
        except re.error:
            r = re.compile(re.escape(pattern) + b"\\Z")
        if len(_glob_cache) < 1024:
            _glob_cache[pattern] = r
    return r
