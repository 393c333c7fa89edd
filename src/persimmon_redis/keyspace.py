"""Key access for command handlers: ``Ctx`` (the database and the clock of one operation),
lookups that honour expiry, typed access, and the argument parsers every data-type module
shares.

Write handlers run inside ``RedisState.apply`` (so, with persistence, also in the shadow on
the PM copy); read handlers run on the DRAM copy only.  Handlers must stay deterministic: no
clock but ``ctx.now``, no randomness (the server resolves random choices into explicit
arguments first; see ``chance.py``).
"""

from __future__ import annotations

import math
import re
from collections import deque
from fractions import Fraction
from typing import Any

from . import longdouble
from .datatypes import ZSet
from .patterns import compile_glob
from .replies import (
    E_FLOAT,
    E_INT,
    E_NAN,
    E_SYNTAX,
    WRONGTYPE,
    RError,
)

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
INT_RE = re.compile(rb"-?(0|[1-9][0-9]*)\Z")
FLOAT_RE = re.compile(rb"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity)\Z", re.I)


# (state, {db index: (db, data, expires)}) of the last state seen.  Which objects those are
# changes only when SWAPDB swaps two databases (a Db's data and expires are never
# reassigned), so they are resolved once per state, not once per operation: on the PM copy
# each of those reads is an attribute lookup through a proxy (about 9 us per operation).
# Keyed by identity, holding the state, so a new state (recovery, a test) never hits.
# The third item keeps one Ctx per database for execute_op, reused from one logged write to
# the next (only its clock changes), so a write allocates no Ctx.  The fourth says whether
# execute_op counts the state's changes (DIRTY below): only for a plain object, the copy
# the server answers from, not for a copy behind a transparent proxy (a Persimmon
# shadow's PM copy, whose ``__class__`` names the class its ``type()`` only stands for),
# which nobody reads the count of.
_views: list = [None, {}, {}, True]


def forget_views() -> None:
    """Drop the resolved databases (after SWAPDB)."""
    _views[0] = None
    _views[1] = {}
    _views[2] = {}


# Redis's server.dirty, INFO's rdb_changes_since_last_save: changes made to the dataset
# since the server started or the last SAVE/BGSAVE.  ``DIRTY[0]`` is the count;
# ``execute_op`` adds 1 for every write command that succeeds, unless its handler reported
# how many changes it made with :func:`changes` (``DIRTY[1]``, -1 when it did not), as
# Redis's SETBIT, BITFIELD, DEL, SADD, SREM, HSET, HDEL do.  (Kept per process, for the
# server's own copy only: a Persimmon shadow replaying the log does not count, see _views.)
DIRTY = [0, -1]


def changes(n: int) -> None:
    """This write made ``n`` changes (0: nothing changed)."""
    DIRTY[1] = n


class Ctx:
    """What a handler sees: the state, the database index and the clock of the operation."""

    __slots__ = ("state", "dbi", "db", "now", "data", "expires", "raw")

    def __init__(self, state: Any, dbi: int, now: int) -> None:
        self.state = state
        self.now = now
        self.select(dbi)

    def select(self, dbi: int) -> None:
        self.dbi = dbi
        state = self.state
        if state is _views[0]:
            v = _views[1].get(dbi)
        else:
            forget_views()
            _views[0] = state
            _views[3] = type(state) is state.__class__
            v = None
        if v is None:
            db = state.dbs[dbi]
            v = _views[1][dbi] = (db, db.data, db.expires, db.raw)
        self.db, self.data, self.expires, self.raw = v


def reused_ctx(state: Any, dbi: int, now: int) -> Ctx:
    """A Ctx on ``state``'s database ``dbi`` at ``now``, the same object from one call to
    the next (``_views``' third item): for a handler that runs to its end before the next
    one begins and never selects another database (a logged write, or a plain read)."""
    ctx = _views[2].get(dbi) if state is _views[0] else None
    if ctx is None:
        ctx = Ctx(state, dbi, now)
        _views[2][dbi] = ctx  # (Ctx() made the views this state's)
    else:
        ctx.now = now
    return ctx


# ---------------------------------------------------------------------------- parsing
def to_int(b: bytes, err: str = E_INT) -> int:
    if not INT_RE.match(b):
        raise RError(err)
    v = int(b)
    if not I64_MIN <= v <= I64_MAX:
        raise RError(err)
    return v


def to_float(b: bytes, err: str = E_FLOAT) -> float:
    if not FLOAT_RE.match(b):
        raise RError(err)
    v = float(b)
    if math.isnan(v):
        raise RError(err)
    return v


# ---------------------------------------------------------------------------- key access
def lookup(ctx: Ctx, key: bytes) -> Any:
    """The live value of ``key`` or None; a key past its deadline counts as absent."""
    v = ctx.data.get(key)
    if v is None:
        return None
    expires = ctx.expires
    if expires:  # most datasets have no TTLs: skip the second lookup
        exp = expires.get(key)
        if exp is not None and exp <= ctx.now:
            return None
    return v


def lookup_write(ctx: Ctx, key: bytes) -> Any:
    """Like :func:`lookup`, and deletes an expired key (inside a write operation)."""
    v = ctx.data.get(key)
    if v is None:
        return None
    expires = ctx.expires
    if expires:
        exp = expires.get(key)
        if exp is not None and exp <= ctx.now:
            del ctx.data[key]
            del expires[key]
            return None
    return v


def delete(ctx: Ctx, key: bytes) -> bool:
    data = ctx.data
    if key in data:
        del data[key]
        ctx.expires.pop(key, None)
        raw = ctx.raw
        if raw and key in raw:
            raw.discard(key)
        return True
    return False


def _typed(ctx: Ctx, key: bytes, kind: type | tuple, write: bool) -> Any:
    v = lookup_write(ctx, key) if write else lookup(ctx, key)
    if v is not None and not isinstance(v, kind):
        raise RError(WRONGTYPE)
    return v


def get_str(ctx: Ctx, key: bytes, write: bool = False) -> bytes | None:
    return _typed(ctx, key, bytes, write)


def _container(ctx: Ctx, key: bytes, kind: type, write: bool, create: bool) -> Any:
    """The value at ``key`` if it is a ``kind`` (None if absent; a new empty one if
    ``create``); WRONGTYPE if it holds something else."""
    v = _typed(ctx, key, kind, write)
    if v is None and create:
        ctx.data[key] = kind()
        v = ctx.data[key]
    return v


def get_hash(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, dict, write, create)


def get_list(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, deque, write, create)


def get_set(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, set, write, create)


def get_zset(ctx: Ctx, key: bytes, write: bool = False, create: bool = False) -> Any:
    return _container(ctx, key, ZSet, write, create)


def drop_if_empty(ctx: Ctx, key: bytes, v: Any) -> None:
    if v is not None and len(v) == 0:
        delete(ctx, key)


def set_value(ctx: Ctx, key: bytes, value: Any, keep_ttl: bool = False,
              raw: bool = False) -> None:
    """Store ``value`` at ``key``; ``raw``: a string changed in place (APPEND, SETRANGE,
    SETBIT, BITFIELD), which OBJECT ENCODING then reports ``raw`` as Redis does."""
    ctx.data[key] = value
    marks = ctx.raw
    if raw:
        mark_raw(ctx, key)
    elif marks and key in marks:
        marks.discard(key)
    if not keep_ttl:
        expires = ctx.expires
        if expires and key in expires:
            del expires[key]


def mark_raw(ctx: Ctx, key: bytes) -> None:
    """The string at ``key`` is now ``raw``-encoded (Redis's dbUnshareStringValue)."""
    marks = ctx.raw
    if marks is None:  # (a pool made before Db.raw existed)
        ctx.db.raw = set()
        forget_views()
        ctx.select(ctx.dbi)
        marks = ctx.raw
    marks.add(key)


# ---------------------------------------------------------------------------- shared parsers
def index_range(start: int, end: int, n: int) -> tuple[int, int]:
    if start < 0:
        start = max(0, n + start)
    if end < 0:
        end = n + end
    end = min(end, n - 1)
    return start, end


def parse_long_double(text: bytes, err: str) -> Fraction:
    if not FLOAT_RE.match(text):
        raise RError(err)
    x = longdouble.parse(text)
    if x is None:
        if b"inf" in text.lower():  # strtold accepts infinity: the sum is what fails
            raise RError(E_NAN)
        raise RError(err)
    return x


def add_long_double(cur: bytes | None, by: Fraction, cur_err: str) -> bytes:
    """``cur + by`` as Redis computes and stores it (long double; see longdouble.py)."""
    c = parse_long_double(cur, cur_err) if cur is not None else Fraction(0)
    n = longdouble.add(c, by)
    if longdouble.too_big(n):
        raise RError(E_NAN)
    return longdouble.human(n)


def live_keys(ctx: Ctx) -> list:
    now = ctx.now
    exp = ctx.expires
    return [k for k in ctx.data if (e := exp.get(k)) is None or e > now]


def scan_args(a: list, start: int) -> tuple[Any, int, bytes | None]:
    pattern = None
    count = 10
    tfilter = None
    i = start
    while i < len(a):
        opt = a[i].upper()
        if opt == b"MATCH" and i + 1 < len(a):
            pattern = a[i + 1]
        elif opt == b"COUNT" and i + 1 < len(a):
            count = to_int(a[i + 1])
            if count < 1:
                raise RError(E_SYNTAX)
        elif opt == b"TYPE" and i + 1 < len(a) and start == 2:
            tfilter = a[i + 1].lower()
        else:
            raise RError(E_SYNTAX)
        i += 2
    return (compile_glob(pattern) if pattern is not None else None), count, tfilter


def scan_cursor(b: bytes) -> int:
    """A SCAN cursor: an unsigned 64-bit number (Redis's strtoull)."""
    if not b.isdigit() or int(b) >= 1 << 64:
        raise RError("ERR invalid cursor")
    return int(b)


_M64 = (1 << 64) - 1


def _rev64(v: int) -> int:
    return int(f"{v:064b}"[::-1], 2)


def scan_slice(items: list, cursor: int, count: int, key: Any = None) -> tuple[int, list]:
    """One SCAN step over ``items`` as Redis's dictScan walks a hash table: elements fall
    into 2^k buckets by their hash (2^k >= len), and the cursor visits buckets in
    reverse-binary order.  So an element present during the whole scan is returned at
    least once however the collection grows or shrinks between calls (the table size is
    recomputed each call, which to the cursor looks like Redis's rehashing).  ``key(item)``
    is what is hashed (default: the item).  Returns (next cursor, items)."""
    n = len(items)
    size = 4
    while size < n:
        size <<= 1
    mask = size - 1
    buckets: dict[int, list] = {}
    for it in items:
        buckets.setdefault(hash(it if key is None else key(it)) & mask, []).append(it)
    out: list = []
    v = cursor
    steps = count * 10  # (Redis: at most 10 x COUNT buckets per call)
    while True:
        out += buckets.get(v & mask, ())
        v |= ~mask & _M64
        v = _rev64((_rev64(v) + 1) & _M64)
        steps -= 1
        if v == 0 or steps <= 0 or len(out) >= count:
            return v, out


def parse_mpop(a: list, first: int, kinds: tuple) -> tuple[list, bytes, int]:
    """numkeys key... (LEFT|RIGHT|MIN|MAX) [COUNT n] -> (keys, where, count)."""
    try:
        numkeys = to_int(a[first])
    except RError:
        raise RError("ERR numkeys should be greater than 0") from None
    if numkeys <= 0:
        raise RError("ERR numkeys should be greater than 0")
    if len(a) < first + 2 + numkeys:
        raise RError(E_SYNTAX)
    keys = a[first + 1 : first + 1 + numkeys]
    where = a[first + 1 + numkeys].upper()
    if where not in kinds:
        raise RError(E_SYNTAX)
    rest = a[first + 2 + numkeys :]
    count = 1
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"COUNT":
            raise RError(E_SYNTAX)
        count = to_int(rest[1], "ERR count should be greater than 0")
        if count <= 0:
            raise RError("ERR count should be greater than 0")
    return keys, where, count
