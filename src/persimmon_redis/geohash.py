"""Redis's geohash arithmetic: 52-bit interleaved scores, decoding, distances.

Same formulas and the same order of floating-point operations as Redis's geohash.c and
geohash_helper.c, so scores, positions and distances print Redis's digits.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

LONG_MIN, LONG_MAX = -180.0, 180.0
LAT_MIN, LAT_MAX = -85.05112878, 85.05112878
STEP = 26
EARTH_RADIUS = 6372797.560856
D_R = math.pi / 180.0
ALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"


def _spread(v: int) -> int:
    """Put the 32 bits of ``v`` in the even bit positions."""
    v &= 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    v = (v | (v << 1)) & 0x5555555555555555
    return v


def _squash(v: int) -> int:
    v &= 0x5555555555555555
    v = (v | (v >> 1)) & 0x3333333333333333
    v = (v | (v >> 2)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v >> 4)) & 0x00FF00FF00FF00FF
    v = (v | (v >> 8)) & 0x0000FFFF0000FFFF
    v = (v | (v >> 16)) & 0x00000000FFFFFFFF
    return v


def encode(lon: float, lat: float, step: int = STEP,
           lon_range: tuple = (LONG_MIN, LONG_MAX),
           lat_range: tuple = (LAT_MIN, LAT_MAX)) -> int:
    lat_off = (lat - lat_range[0]) / (lat_range[1] - lat_range[0])
    lon_off = (lon - lon_range[0]) / (lon_range[1] - lon_range[0])
    lat_off *= 1 << step
    lon_off *= 1 << step
    return _spread(int(lat_off)) | (_spread(int(lon_off)) << 1)


def decode(bits: int, step: int = STEP) -> tuple[float, float]:
    """The centre ``(lon, lat)`` of a geohash cell (clamped to the valid ranges)."""
    ilat = _squash(bits)
    ilon = _squash(bits >> 1)
    lat_scale = LAT_MAX - LAT_MIN
    lon_scale = LONG_MAX - LONG_MIN
    scale = float(1 << step)
    lat_min = LAT_MIN + (ilat * 1.0 / scale) * lat_scale
    lat_max = LAT_MIN + ((ilat + 1) * 1.0 / scale) * lat_scale
    lon_min = LONG_MIN + (ilon * 1.0 / scale) * lon_scale
    lon_max = LONG_MIN + ((ilon + 1) * 1.0 / scale) * lon_scale
    lon = min(max((lon_min + lon_max) / 2, LONG_MIN), LONG_MAX)
    lat = min(max((lat_min + lat_max) / 2, LAT_MIN), LAT_MAX)
    return lon, lat


def decode_score(score: float) -> tuple[float, float]:
    return decode(int(score))


def hash_string(score: float) -> bytes:
    """GEOHASH's 11-character standard geohash of a stored score."""
    lon, lat = decode_score(score)
    bits = encode(lon, lat, 26, (-180.0, 180.0), (-90.0, 90.0))
    out = bytearray()
    for i in range(11):
        idx = 0 if i == 10 else (bits >> (52 - (i + 1) * 5)) & 0x1F
        out.append(ALPHABET[idx])
    return bytes(out)


def lat_distance(lat1: float, lat2: float) -> float:
    return EARTH_RADIUS * abs(lat2 * D_R - lat1 * D_R)


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    lon1r = lon1 * D_R
    lon2r = lon2 * D_R
    v = math.sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return lat_distance(lat1, lat2)
    lat1r = lat1 * D_R
    lat2r = lat2 * D_R
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS * math.asin(math.sqrt(a))


def in_box(width: float, height: float, x1: float, y1: float, x2: float,
           y2: float) -> float | None:
    """The distance from the box centre (x1, y1) to (x2, y2), or None if outside."""
    if lat_distance(y2, y1) > height / 2:
        return None
    if distance(x2, y2, x1, y2) > width / 2:
        return None
    return distance(x1, y1, x2, y2)


def human(x: float) -> bytes:
    """Redis's human-friendly long double (``%.17Lf`` without trailing zeros)."""
    s = format(Decimal(x).quantize(Decimal("1e-17"), rounding=ROUND_HALF_EVEN), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s == "-0":
        s = "0"
    return s.encode()


def fixed4(x: float) -> bytes:
    return b"%.4f" % x


# ---------------------------------------------------------------------------- search cells
MERCATOR_MAX = 20037726.37
_EVEN = 0x5555555555555555
_ODD = 0xAAAAAAAAAAAAAAAA


def _steps_for(range_m: float, lat: float) -> int:
    if range_m == 0:
        return 26
    step = 1
    while range_m < MERCATOR_MAX:
        range_m *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


def _move(bits: int, step: int, dx: int, dy: int) -> int:
    if dx:
        x, y = bits & _ODD, bits & _EVEN
        zz = _EVEN >> (64 - step * 2)
        x = x + (zz + 1) if dx > 0 else (x | zz) - (zz + 1)
        bits = (x & (_ODD >> (64 - step * 2))) | y
    if dy:
        x, y = bits & _ODD, bits & _EVEN
        zz = _ODD >> (64 - step * 2)
        y = y + (zz + 1) if dy > 0 else (y | zz) - (zz + 1)
        bits = x | (y & (_EVEN >> (64 - step * 2)))
    return bits


def _area(bits: int, step: int) -> tuple[float, float, float, float]:
    """(lon_min, lon_max, lat_min, lat_max) of a cell."""
    ilat, ilon = _squash(bits), _squash(bits >> 1)
    scale = float(1 << step)
    lat_scale, lon_scale = LAT_MAX - LAT_MIN, LONG_MAX - LONG_MIN
    return (LONG_MIN + (ilon * 1.0 / scale) * lon_scale,
            LONG_MIN + ((ilon + 1) * 1.0 / scale) * lon_scale,
            LAT_MIN + (ilat * 1.0 / scale) * lat_scale,
            LAT_MIN + ((ilat + 1) * 1.0 / scale) * lat_scale)


# the nine cells in Redis's visiting order: (dx, dy)
_ORDER = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))


def search_cells(lon: float, lat: float, width_m: float, height_m: float,
                 radius_m: float) -> list:
    """Redis's geohashCalculateAreasByShapeWGS84: the score ranges ``[lo, hi)`` of the
    cells a search visits, in its order (``width_m``/``height_m``: half extents)."""
    lat_delta = (height_m / EARTH_RADIUS) / D_R
    top = (width_m / EARTH_RADIUS / math.cos((lat + lat_delta) * D_R)) / D_R
    bottom = (width_m / EARTH_RADIUS / math.cos((lat - lat_delta) * D_R)) / D_R
    south = lat < 0
    min_lon = lon - bottom if south else lon - top
    max_lon = lon + bottom if south else lon + top
    min_lat, max_lat = lat - lat_delta, lat + lat_delta
    steps = _steps_for(radius_m, lat)
    bits = encode(lon, lat, steps)
    n = _area(_move(bits, steps, 0, 1), steps)
    s = _area(_move(bits, steps, 0, -1), steps)
    e = _area(_move(bits, steps, 1, 0), steps)
    w = _area(_move(bits, steps, -1, 0), steps)
    if (n[3] < max_lat or s[2] > min_lat or e[1] < max_lon or w[0] > min_lon) and steps > 1:
        steps -= 1
        bits = encode(lon, lat, steps)
    cells = [(_move(bits, steps, dx, dy), dx, dy) for dx, dy in _ORDER]
    area = _area(bits, steps)
    drop: set = set()
    if steps >= 2:
        if area[2] < min_lat:
            drop |= {(0, -1), (-1, -1), (1, -1)}
        if area[3] > max_lat:
            drop |= {(0, 1), (1, 1), (-1, 1)}
        if area[0] < min_lon:
            drop |= {(-1, 0), (-1, -1), (-1, 1)}
        if area[1] > max_lon:
            drop |= {(1, 0), (1, -1), (1, 1)}
    out = []
    last = None
    shift = 52 - steps * 2
    for i, (cb, dx, dy) in enumerate(cells):
        if (dx, dy) in drop:
            continue
        if i and last is not None and cb == last:
            continue
        out.append((cb << shift, (cb + 1) << shift))
        if i:
            last = cb
    return out
