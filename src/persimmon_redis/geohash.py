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
