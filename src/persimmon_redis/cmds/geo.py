"""Geo commands on sorted sets whose scores are Redis's 52-bit geohashes (``geohash.py``):
GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH, GEOSEARCHSTORE, GEORADIUS(_RO),
GEORADIUSBYMEMBER(_RO).

A search visits the geohash cells Redis visits (the centre cell and its neighbours at the
step Redis estimates, in Redis's order) and tests each member in them, in score order, with
Redis's exact distance (or box) test, so even unsorted replies list members as Redis does.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from typing import Any

from .. import geohash as gh
from ..datatypes import ZSet
from ..keyspace import Ctx, delete, get_zset, set_value, to_int
from ..registry import COMMANDS, command
from ..replies import E_SYNTAX, RDoubleText, RError

_FLOAT = re.compile(rb"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity)\Z", re.I)
_UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}


def _double(b: bytes, err: str = "ERR value is not a valid float") -> float:
    if not _FLOAT.match(b.strip()) or b != b.strip():
        raise RError(err)
    v = float(b)
    if math.isnan(v):
        raise RError(err)
    return v


def _lonlat(lon_b: bytes, lat_b: bytes) -> tuple[float, float]:
    lon, lat = _double(lon_b), _double(lat_b)
    if not (gh.LONG_MIN <= lon <= gh.LONG_MAX and gh.LAT_MIN <= lat <= gh.LAT_MAX):
        raise RError(f"ERR invalid longitude,latitude pair {lon:f},{lat:f}")
    return lon, lat


def _unit(b: bytes) -> float:
    u = _UNITS.get(b.lower())
    if u is None:
        raise RError("ERR unsupported unit provided. please use M, KM, FT, MI")
    return u


def _score_bits(lon: float, lat: float) -> int:
    return gh.encode(lon, lat)


@command("geoadd", arity=-5, flags=("write", "denyoom"))
def cmd_geoadd(ctx: Ctx, a: list) -> Any:
    i = 2
    xx = nx = False
    while i < len(a):
        o = a[i].lower()
        if o == b"nx":
            nx = True
        elif o == b"xx":
            xx = True
        elif o != b"ch":
            break
        i += 1
    if (len(a) - i) % 3 or (xx and nx):
        raise RError(E_SYNTAX)
    zargs = [b"zadd", a[1], *a[2:i]]
    for j in range(i, len(a), 3):
        lon, lat = _lonlat(a[j], a[j + 1])
        zargs += [b"%d" % _score_bits(lon, lat), a[j + 2]]
    return COMMANDS[b"zadd"].fn(ctx, zargs)


@command("geodist", arity=-4, flags=("readonly",))
def cmd_geodist(ctx: Ctx, a: list) -> Any:
    to_m = 1.0
    if len(a) == 5:
        to_m = _unit(a[4])
    elif len(a) > 5:
        raise RError(E_SYNTAX)
    z = get_zset(ctx, a[1])
    if z is None:
        return None
    s1 = z.scores.get(a[2])
    s2 = z.scores.get(a[3])
    if s1 is None or s2 is None:
        return None
    x1, y1 = gh.decode_score(s1)
    x2, y2 = gh.decode_score(s2)
    return gh.fixed4(gh.distance(x1, y1, x2, y2) / to_m)


@command("geohash", arity=-2, flags=("readonly",))
def cmd_geohash(ctx: Ctx, a: list) -> Any:
    z = get_zset(ctx, a[1])
    out = []
    for m in a[2:]:
        s = z.scores.get(m) if z is not None else None
        out.append(None if s is None else gh.hash_string(s))
    return out


@command("geopos", arity=-2, flags=("readonly",))
def cmd_geopos(ctx: Ctx, a: list) -> Any:
    from ..replies import NULL_ARRAY

    z = get_zset(ctx, a[1])
    out: list = []
    for m in a[2:]:
        s = z.scores.get(m) if z is not None else None
        if s is None:
            out.append(NULL_ARRAY)
        else:
            x, y = gh.decode_score(s)
            out.append([RDoubleText(gh.human(x)), RDoubleText(gh.human(y))])
    return out


# ---------------------------------------------------------------------------- search
COORDS, MEMBER, NOSTORE, SEARCH, SEARCHSTORE = 1, 2, 4, 8, 16


def _search(ctx: Ctx, a: list, src: int, flags: int) -> Any:
    z = get_zset(ctx, a[src])
    storekey = None
    storedist = False
    xy: tuple | None = None
    radius = width = height = None
    conv = 1.0
    name = a[0].decode("utf-8", "replace")
    if flags & COORDS:
        base = 6
        xy = _lonlat(a[2], a[3])
        radius, conv = _distance_args(a[4], a[5])
    elif flags & MEMBER:
        base = 5
        if z is not None:
            xy = _member_xy(z, a[2])
            radius, conv = _distance_args(a[3], a[4])
    else:
        base = 2
        if flags & SEARCHSTORE:
            base = 3
            storekey = a[1]
    withdist = withhash = withcoord = any_ = False
    sort = None
    count = 0
    frommember = fromloc = byradius = bybox = False
    rest = a[base:]
    i = 0
    n = len(rest)
    while i < n:
        o = rest[i].lower()
        more = n - i - 1
        if o == b"withdist":
            withdist = True
        elif o == b"withhash":
            withhash = True
        elif o == b"withcoord":
            withcoord = True
        elif o == b"any":
            any_ = True
        elif o == b"asc":
            sort = "asc"
        elif o == b"desc":
            sort = "desc"
        elif o == b"count" and more >= 1:
            count = to_int(rest[i + 1])
            if count <= 0:
                raise RError("ERR COUNT must be > 0")
            i += 1
        elif o in (b"store", b"storedist") and more >= 1 and not flags & (NOSTORE | SEARCH):
            storekey = rest[i + 1]
            storedist = o == b"storedist"
            i += 1
        elif o == b"storedist" and flags & SEARCHSTORE:
            storedist = True
        elif o == b"frommember" and more >= 1 and flags & SEARCH and not fromloc:
            if z is not None:
                xy = _member_xy(z, rest[i + 1])
            frommember = True
            i += 1
        elif o == b"fromlonlat" and more >= 2 and flags & SEARCH and not frommember:
            xy = _lonlat(rest[i + 1], rest[i + 2])
            fromloc = True
            i += 2
        elif o == b"byradius" and more >= 2 and flags & SEARCH and not bybox:
            radius, conv = _distance_args(rest[i + 1], rest[i + 2])
            byradius = True
            i += 2
        elif o == b"bybox" and more >= 3 and flags & SEARCH and not byradius:
            width = _double(rest[i + 1], "ERR need numeric width")
            height = _double(rest[i + 2], "ERR need numeric height")
            if width < 0 or height < 0:
                raise RError("ERR height or width cannot be negative")
            conv = _unit(rest[i + 3])
            bybox = True
            i += 3
        else:
            raise RError(E_SYNTAX)
        i += 1
    if storekey is not None and (withdist or withhash or withcoord):
        what = "GEOSEARCHSTORE" if flags & SEARCHSTORE else "STORE option in GEORADIUS"
        raise RError(f"ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD "
                     "options")
    if flags & SEARCH and not (frommember or fromloc):
        raise RError(f"ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}")
    if flags & SEARCH and not (byradius or bybox):
        raise RError(f"ERR exactly one of BYRADIUS and BYBOX can be specified for {name}")
    if any_ and not count:
        raise RError("ERR the ANY argument requires COUNT argument")
    if z is None:
        if storekey is not None:
            delete(ctx, storekey)
            return 0
        return []
    if count and sort is None and not any_:
        sort = "asc"
    found = []
    cx, cy = xy
    if bybox:
        cells = gh.search_cells(cx, cy, width * conv / 2, height * conv / 2,
                                math.sqrt((width / 2) ** 2 + (height / 2) ** 2) * conv)
    else:
        cells = gh.search_cells(cx, cy, radius * conv, radius * conv, radius * conv)
    items = z.items()
    scores = [s for s, _ in items]
    for lo, hi in cells:  # Redis's nine cells, in its order; members in score order
        k = bisect_left(scores, lo)
        while k < len(items) and items[k][0] < hi:
            score, member = items[k]
            k += 1
            px, py = gh.decode_score(score)
            if bybox:
                d = gh.in_box(width * conv, height * conv, cx, cy, px, py)
                if d is None:
                    continue
            else:
                d = gh.distance(cx, cy, px, py)
                if d > radius * conv:
                    continue
            found.append((d, score, member, px, py))
            if any_ and len(found) >= count:
                break
        if any_ and len(found) >= count:
            break
    if sort == "asc":
        found.sort(key=lambda f: f[0])
    elif sort == "desc":
        found.sort(key=lambda f: -f[0])
    if count:
        found = found[:count]
    if storekey is None:
        out = []
        for d, score, member, px, py in found:
            if not (withdist or withhash or withcoord):
                out.append(member)
                continue
            item: list = [member]
            if withdist:
                item.append(gh.fixed4(d / conv))
            if withhash:
                item.append(int(score))
            if withcoord:
                item.append([RDoubleText(gh.human(px)), RDoubleText(gh.human(py))])
            out.append(item)
        return out
    if not found:
        delete(ctx, storekey)
        return 0
    nz = ZSet()
    for d, score, member, _, _ in found:
        nz.add(member, d / conv if storedist else score)
    set_value(ctx, storekey, nz)
    return len(found)


def _distance_args(r: bytes, unit: bytes) -> tuple[float, float]:
    radius = _double(r, "ERR need numeric radius")
    if radius < 0:
        raise RError("ERR radius cannot be negative")
    return radius, _unit(unit)


def _member_xy(z: Any, member: bytes) -> tuple[float, float]:
    s = z.scores.get(member)
    if s is None:
        raise RError("ERR could not decode requested zset member")
    return gh.decode_score(s)


@command("georadius", arity=-6, flags=("write", "denyoom"))
def cmd_georadius(ctx: Ctx, a: list) -> Any:
    return _search(ctx, a, 1, COORDS)


@command("georadiusbymember", arity=-5, flags=("write", "denyoom"))
def cmd_georadiusbymember(ctx: Ctx, a: list) -> Any:
    return _search(ctx, a, 1, MEMBER)


@command("georadius_ro", arity=-6, flags=("readonly",))
def cmd_georadius_ro(ctx: Ctx, a: list) -> Any:
    return _search(ctx, a, 1, COORDS | NOSTORE)


@command("georadiusbymember_ro", arity=-5, flags=("readonly",))
def cmd_georadiusbymember_ro(ctx: Ctx, a: list) -> Any:
    return _search(ctx, a, 1, MEMBER | NOSTORE)


@command("geosearch", arity=-7, flags=("readonly",))
def cmd_geosearch(ctx: Ctx, a: list) -> Any:
    return _search(ctx, a, 1, SEARCH)


@command("geosearchstore", arity=-8, flags=("write", "denyoom"), keys=(1, 2, 1))
def cmd_geosearchstore(ctx: Ctx, a: list) -> Any:
    return _search(ctx, a, 2, SEARCH | SEARCHSTORE)
