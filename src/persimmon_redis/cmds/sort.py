"""SORT and SORT_RO with BY (``*`` patterns, ``->`` hash fields, a pattern without ``*``
meaning no sorting), GET (``#`` for the element itself), LIMIT, ASC/DESC, ALPHA and STORE.

SORT is a logged operation (it may STORE).  So that both copies store the same list, the
elements of a set are taken in sorted order and sorting is stable: elements Redis would
compare as equal keep that order (Redis's own order for them is its hash table's).
"""

from __future__ import annotations

import math
import re
from collections import deque
from functools import cmp_to_key
from typing import Any

from ..datatypes import ZSet
from ..keyspace import Ctx, delete, lookup, set_value, to_int
from ..registry import command
from ..replies import E_SYNTAX, WRONGTYPE, RError

_STRTOD = re.compile(rb"[ \t\n\v\f\r]*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity"
                     rb"|0[xX][0-9a-fA-F]+(\.[0-9a-fA-F]*)?([pP][+-]?\d+)?)\Z", re.I)


def _strtod(b: bytes) -> float | None:
    """C strtod of the whole string (None where Redis reports a conversion error)."""
    if b == b"":
        return 0.0
    if not _STRTOD.match(b):
        return None
    s = b.strip().decode()
    try:
        v = float.fromhex(s) if "x" in s.lower() else float(s)
    except ValueError:
        return None
    if math.isnan(v) or (math.isinf(v) and "inf" not in s.lower()):
        return None  # (ERANGE)
    return v


def sort_keys(a: list) -> list:
    """The sorted key and the last STORE key (Redis's sortGetKeys: the arguments of LIMIT,
    GET and BY are skipped)."""
    store = None
    i = 2
    while i < len(a):
        o = a[i].lower()
        if o == b"limit":
            i += 2
        elif o in (b"get", b"by"):
            i += 1
        elif o == b"store" and i + 1 < len(a):
            store = a[i + 1]
        i += 1
    return [a[1]] if store is None else [a[1], store]


def by_pattern(ctx: Ctx, pattern: bytes, subst: bytes) -> bytes | None:
    """Redis's lookupKeyByPattern: ``#`` is the element; ``pre*post`` names a string key,
    ``pre*post->field`` a hash field."""
    if pattern == b"#":
        return subst
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2:]
        post = pattern[star + 1:arrow]
    else:
        post = pattern[star + 1:]
    v = lookup(ctx, pattern[:star] + subst + post)
    if v is None:
        return None
    if field is not None:
        if not isinstance(v, dict):
            return None
        return v.get(field)
    return v if isinstance(v, bytes) else None


def _sort(ctx: Ctx, a: list, readonly: bool) -> Any:
    desc = alpha = dontsort = False
    start_arg, count_arg = 0, -1
    storekey = sortby = None
    gets: list = []
    j = 2
    n = len(a)
    while j < n:
        left = n - j - 1
        o = a[j].lower()
        if o == b"asc":
            desc = False
        elif o == b"desc":
            desc = True
        elif o == b"alpha":
            alpha = True
        elif o == b"limit" and left >= 2:
            start_arg = to_int(a[j + 1])
            count_arg = to_int(a[j + 2])
            j += 2
        elif o == b"store" and left >= 1 and not readonly:
            storekey = a[j + 1]
            j += 1
        elif o == b"by" and left >= 1:
            sortby = a[j + 1]
            dontsort = b"*" not in sortby
            j += 1
        elif o == b"get" and left >= 1:
            gets.append(a[j + 1])
            j += 1
        else:
            raise RError(E_SYNTAX)
        j += 1
    v = lookup(ctx, a[1])
    if v is not None and not isinstance(v, set | deque | ZSet):
        raise RError(WRONGTYPE)
    if dontsort and isinstance(v, set) and storekey is not None:
        dontsort, alpha, sortby = False, True, None
    if v is None:
        elems: list = []
    elif isinstance(v, deque):
        elems = list(v)
    elif isinstance(v, set):
        elems = sorted(v)
    else:
        elems = [m for _, m in v.items()]
    total = len(elems)
    start = min(max(start_arg, 0), total)
    cnt = min(max(count_arg, -1), total)
    end = total - 1 if cnt < 0 else start + cnt - 1
    if start >= total:
        start, end = total - 1, total - 2
    end = min(end, total - 1)
    if dontsort:
        if desc and not isinstance(v, set):
            elems.reverse()
        chosen = elems[start:end + 1] if end >= start else []
    else:
        keyed = []
        conv_error = False
        for e in elems:
            byval = by_pattern(ctx, sortby, e) if sortby is not None else e
            if alpha:
                keyed.append((e, byval if sortby is not None else None))
                continue
            score = 0.0
            if byval is not None:
                score = _strtod(byval)
                if score is None:
                    conv_error = True
                    score = 0.0
            keyed.append((e, score))
        if conv_error:
            raise RError("ERR One or more scores can't be converted into double")
        keyed.sort(key=cmp_to_key(_comparer(alpha, sortby is not None)), reverse=desc)
        chosen = [e for e, _ in keyed[start:end + 1]] if end >= start else []
    if storekey is None:
        if not gets:
            return chosen
        return [by_pattern(ctx, g, e) for e in chosen for g in gets]
    out = deque()
    for e in chosen:
        if not gets:
            out.append(e)
        else:
            for g in gets:
                val = by_pattern(ctx, g, e)
                out.append(val if val is not None else b"")
    if out:
        set_value(ctx, storekey, out)
    else:
        delete(ctx, storekey)
    return len(out)


def _comparer(alpha: bool, bypattern: bool) -> Any:
    def cmp(x: tuple, y: tuple) -> int:
        if not alpha:
            if x[1] != y[1]:
                return 1 if x[1] > y[1] else -1
            return (x[0] > y[0]) - (x[0] < y[0])
        if bypattern:
            a, b = x[1], y[1]
            if a is None or b is None:
                return 0 if a is b else (-1 if a is None else 1)
            return (a > b) - (a < b)
        return (x[0] > y[0]) - (x[0] < y[0])

    return cmp


@command("sort", arity=-2, flags=("write", "denyoom"), getkeys=sort_keys)
def cmd_sort(ctx: Ctx, a: list) -> Any:
    return _sort(ctx, a, False)


@command("sort_ro", arity=-2, flags=("readonly",))
def cmd_sort_ro(ctx: Ctx, a: list) -> Any:
    return _sort(ctx, a, True)
