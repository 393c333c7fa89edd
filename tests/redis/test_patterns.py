"""Redis glob patterns: the semantics of Redis's stringmatchlen, in time that stays
polynomial however the pattern is built (a KEYS pattern once took the server down)."""

from __future__ import annotations

import random
import time

import pytest

from persimmon_redis.patterns import STAR_NESTING_LIMIT, compile_glob, glob_match


def _reference(p: bytes, s: bytes, nocase: bool = False) -> bool:
    """A direct, recursive transcription of stringmatchlen's control flow (slow; small
    inputs only), to check the fast matcher against."""
    skip = [False]

    def low(c: int) -> int:
        return c + 32 if 65 <= c <= 90 and nocase else c

    def at(buf: bytes, k: int) -> int:
        return buf[k] if k < len(buf) else 0

    def rec(pi: int, pl: int, si: int, sl: int, nesting: int) -> bool:
        if nesting > STAR_NESTING_LIMIT:
            return False
        while pl and sl:
            c = at(p, pi)
            if c == ord("*"):
                while pl and at(p, pi + 1) == ord("*"):
                    pi += 1
                    pl -= 1
                if pl == 1:
                    return True
                while sl:
                    if rec(pi + 1, pl - 1, si, sl, nesting + 1):
                        return True
                    if skip[0]:
                        return False
                    si += 1
                    sl -= 1
                skip[0] = True
                return False
            elif c == ord("?"):
                si += 1
                sl -= 1
            elif c == ord("["):
                pi += 1
                pl -= 1
                neg = at(p, pi) == ord("^")
                if neg:
                    pi += 1
                    pl -= 1
                match = False
                while True:
                    if at(p, pi) == ord("\\") and pl >= 2:
                        pi += 1
                        pl -= 1
                        if at(p, pi) == s[si]:
                            match = True
                    elif at(p, pi) == ord("]"):
                        break
                    elif pl == 0:
                        pi -= 1
                        pl += 1
                        break
                    elif pl >= 3 and at(p, pi + 1) == ord("-"):
                        a, b = at(p, pi), at(p, pi + 2)
                        if a > b:
                            a, b = b, a
                        if low(a) <= low(s[si]) <= low(b):
                            match = True
                        pi += 2
                        pl -= 2
                    elif low(at(p, pi)) == low(s[si]):
                        match = True
                    pi += 1
                    pl -= 1
                if neg:
                    match = not match
                if not match:
                    return False
                si += 1
                sl -= 1
            else:
                if c == ord("\\") and pl >= 2:
                    pi += 1
                    pl -= 1
                if low(at(p, pi)) != low(s[si]):
                    return False
                si += 1
                sl -= 1
            pi += 1
            pl -= 1
            if sl == 0:
                while at(p, pi) == ord("*"):
                    pi += 1
                    pl -= 1
                break
        return pl == 0 and sl == 0

    return rec(0, len(p), 0, len(s), 0)


@pytest.mark.parametrize("pattern,s,expect", [
    (b"*", b"anything", True), (b"*", b"", False), (b"", b"", True), (b"h?llo", b"hallo", True),
    (b"h*llo", b"heeeello", True), (b"h[ae]llo", b"hillo", False), (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False), (b"h[a-b]llo", b"hbllo", True), (b"h[b-a]llo", b"hallo", True),
    (b"h\\*llo", b"h*llo", True), (b"h\\*llo", b"hallo", False), (b"[\\]]", b"]", True),
    (b"a[bc", b"ab", True), (b"a[bc", b"ac", True), (b"a\\", b"a\\", True), (b"[a-]", b"]", True),
])
def test_redis_semantics(pattern, s, expect):
    assert glob_match(pattern, s) is expect
    assert _reference(pattern, s) is expect


def test_agrees_with_stringmatchlen_on_random_patterns():
    rng = random.Random(21)
    alphabet = b"ab*?[]^-\\"
    for _ in range(20000):
        p = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 7)))
        s = bytes(rng.choice(b"ab-]^\\*") for _ in range(rng.randint(0, 6)))
        nocase = rng.random() < 0.2
        if nocase:
            s = s.replace(b"a", b"A")
        assert glob_match(p, s, nocase) == _reference(p, s, nocase), (p, s, nocase)


def test_nesting_limit_as_redis():
    deep = b"a*" * (STAR_NESTING_LIMIT + 1) + b"b"
    assert not glob_match(deep, b"a" * (STAR_NESTING_LIMIT + 1) + b"b")
    ok = b"a*" * STAR_NESTING_LIMIT + b"b"
    assert glob_match(ok, b"a" * STAR_NESTING_LIMIT + b"b")
    assert glob_match(b"a*" * (STAR_NESTING_LIMIT + 1), b"a" * (STAR_NESTING_LIMIT + 1))


def test_pathological_patterns_take_milliseconds():
    t = time.perf_counter()
    p = b"a*" * 20 + b"b"
    assert not glob_match(p, b"a" * 40)
    assert not compile_glob(b"*a" * 500 + b"*b").match(b"a" * 5000)
    assert not compile_glob(b"*?" * 300 + b"[b]").match(b"a" * 3000)
    assert time.perf_counter() - t < 2.0
