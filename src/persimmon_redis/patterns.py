"""Redis glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, PUBSUB CHANNELS, CONFIG GET).

The semantics are those of Redis's ``stringmatchlen`` (util.c): ``*`` any run of bytes,
``?`` one byte, ``[abc]`` ``[^abc]`` ``[a-z]`` (a reversed range ``[z-a]`` works too, ``\\``
escapes inside a class), ``\\x`` the byte ``x``; an unterminated ``[`` takes the rest of the
pattern as its class; an empty string matches only the empty pattern; and, like Redis, a
pattern that would nest more than 1000 ``*`` deep never matches.

The pattern is parsed once (the parse does not depend on the string) into a list of byte
sets, and matched by the classic one-backtrack-point algorithm: on a mismatch only the last
``*`` is moved forward, so time is O(len(pattern) x len(string)) at worst, never exponential
(``a*a*a*...*b`` against a long run of ``a`` takes microseconds, where a backtracking regex
took the server down).  Patterns with at most one ``*`` are translated into an equivalent
compiled regex (one ``.*`` cannot backtrack more than that either), which is faster in bulk.
"""

from __future__ import annotations

import re
from typing import Any

STAR_NESTING_LIMIT = 1000  # Redis: stringmatchlen_impl gives up past this recursion depth

_STAR = None  # token: any run of bytes
_ALL = frozenset(range(256))


def _lower(c: int) -> int:
    return c + 32 if 65 <= c <= 90 else c


def _parse(pattern: bytes, nocase: bool) -> list:
    """Tokens: ``None`` for ``*`` (runs collapsed), else the frozenset of bytes that match
    one position.  Follows stringmatchlen's walk over the pattern (reads past the end see a
    NUL, as in C)."""
    n = len(pattern)
    toks: list = []
    i = 0

    def at(k: int) -> int:
        return pattern[k] if k < n else 0

    def lit(c: int) -> frozenset:
        if nocase and (65 <= c <= 90 or 97 <= c <= 122):
            lo = _lower(c)
            return frozenset((lo, lo - 32))
        return frozenset((c,))

    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*'
            while i + 1 < n and pattern[i + 1] == 0x2A:
                i += 1
            if not toks or toks[-1] is not _STAR:
                toks.append(_STAR)
        elif c == 0x3F:  # '?'
            toks.append(_ALL)
        elif c == 0x5B:  # '['
            i += 1
            neg = at(i) == 0x5E  # '^'
            if neg:
                i += 1
            members: set = set()
            while True:
                left = n - i
                if at(i) == 0x5C and left >= 2:  # '\' escapes (case-sensitive, as in C)
                    i += 1
                    members.add(pattern[i])
                elif at(i) == 0x5D:  # ']'
                    break
                elif left <= 0:  # unterminated: the class ends with the pattern
                    i -= 1
                    break
                elif left >= 3 and pattern[i + 1] == 0x2D:  # 'a-z'
                    start, end = pattern[i], pattern[i + 2]
                    if start > end:
                        start, end = end, start
                    if nocase:
                        start, end = _lower(start), _lower(end)
                        members.update(b for b in range(256) if start <= _lower(b) <= end)
                    else:
                        members.update(range(start, end + 1))
                    i += 2
                else:
                    members |= lit(pattern[i])
                i += 1
            toks.append(frozenset(_ALL - members) if neg else frozenset(members))
        else:
            if c == 0x5C and n - i >= 2:  # '\x' is the byte x
                i += 1
                c = pattern[i]
            toks.append(lit(c))
        i += 1
    return toks


def _too_deep(toks: list) -> bool:
    """Whether matching must reach a ``*`` nested deeper than Redis allows (its 1001st star,
    when that star is not the pattern's last token): then nothing non-empty matches."""
    stars = [k for k, t in enumerate(toks) if t is _STAR]
    return len(stars) > STAR_NESTING_LIMIT and stars[STAR_NESTING_LIMIT] != len(toks) - 1


def _match_tokens(toks: list, s: bytes) -> bool:
    m, n = len(toks), len(s)
    i = j = 0
    star_i = star_j = -1
    while j < n:
        if i < m:
            t = toks[i]
            if t is _STAR:
                star_i, star_j = i, j
                i += 1
                continue
            if s[j] in t:
                i += 1
                j += 1
                continue
        if star_i < 0:
            return False
        star_j += 1
        i, j = star_i + 1, star_j
    while i < m and toks[i] is _STAR:
        i += 1
    return i == m


def _byteset_re(t: frozenset) -> bytes:
    if not t:
        return b"(?!)"  # an empty class matches nothing
    if len(t) == 256:
        return b"."
    if len(t) == 1:
        return re.escape(bytes(t))
    return b"[" + b"".join(b"\\x%02x" % c for c in sorted(t)) + b"]"


class Glob:
    """A compiled pattern: ``match(s) -> bool``."""

    __slots__ = ("pattern", "empty", "never", "toks", "rx")

    def __init__(self, pattern: bytes, nocase: bool = False) -> None:
        self.pattern = pattern
        self.empty = len(pattern) == 0
        toks = _parse(pattern, nocase)
        self.never = _too_deep(toks)
        self.toks = toks
        self.rx: Any = None
        if sum(1 for t in toks if t is _STAR) <= 1:
            body = b"".join(b".*" if t is _STAR else _byteset_re(t) for t in toks)
            self.rx = re.compile(body + b"\\Z", re.S)

    def match(self, s: bytes) -> bool:
        if not s:  # Redis: the empty string matches only the empty pattern
            return self.empty
        if self.never:
            return False
        if self.rx is not None:
            return self.rx.match(s) is not None
        return _match_tokens(self.toks, s)


_cache: dict[tuple[bytes, bool], Glob] = {}


def compile_glob(pattern: bytes, nocase: bool = False) -> Glob:
    """The compiled form of ``pattern`` (a few recent patterns are cached)."""
    key = (pattern, nocase)
    g = _cache.get(key)
    if g is None:
        g = Glob(pattern, nocase)
        if len(_cache) >= 1024:
            _cache.clear()
        _cache[key] = g
    return g


def glob_match(pattern: bytes, s: bytes, nocase: bool = False) -> bool:
    """Whether ``s`` matches the Redis glob ``pattern``."""
    return compile_glob(pattern, nocase).match(s)
