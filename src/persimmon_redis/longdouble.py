"""INCRBYFLOAT arithmetic as Redis does it: x87 80-bit ``long double``, printed ``%.17Lf``.

Redis parses the stored value and the increment with ``strtold``, adds them in long double
(64-bit significand) and stores ``snprintf("%.17Lf")`` with the trailing zeros removed.  With
Python's 64-bit floats ``0.1 + 0.2`` would print as ``0.30000000000000004`` where Redis
prints ``0.3``.  Here every step is exact rational arithmetic, rounded to a 64-bit
significand where the C code rounds, so the results match Redis's digit for digit (and are
the same in the foreground and in the shadow: no float hardware is involved).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

_SIG = 64  # significand bits of the x87 extended format
_SCALE = 10**17


def parse(text: bytes) -> Fraction | None:
    """The long double ``strtold`` gives for a decimal ``text``, or None where Redis's
    ``string2ld`` refuses it: not a number, infinite, or out of the long double range
    (``strtold`` reports ERANGE for an overflow and for an underflow to zero)."""
    try:
        d = Decimal(text.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        return None
    if not d.is_finite():
        return None
    if d.is_zero():
        return Fraction(0)
    if d.adjusted() > 4933 or d.adjusted() < -4952:  # decided before any big arithmetic
        return None
    x = round_ld(Fraction(d))
    if x == 0 or too_big(x):
        return None
    return x


def round_ld(x: Fraction) -> Fraction:
    """``x`` rounded to the nearest value with a 64-bit significand (ties to even)."""
    if x == 0:
        return Fraction(0)
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**e <= a < 2**(e+2)
    if a < Fraction(2) ** e:
        e -= 1
    shift = e - (_SIG - 1)  # the significand is a / 2**shift, in [2**63, 2**64)
    m = a / (Fraction(2) ** shift)
    q = round(m)  # Fraction.__round__ rounds half to even
    r = Fraction(q) * Fraction(2) ** shift
    return r if x > 0 else -r


def add(a: Fraction, b: Fraction) -> Fraction:
    return round_ld(a + b)


def too_big(x: Fraction) -> bool:
    """Outside the long double range (it would be infinity)."""
    return abs(x) >= Fraction(2) ** 16384


def human(x: Fraction) -> bytes:
    """``%.17Lf`` with trailing zeros (and a trailing dot) removed, as Redis stores it."""
    n = round(x * _SCALE)  # printf rounds the exact binary value, ties to even
    digits = str(abs(n)).rjust(18, "0")
    s = digits[:-17] + "." + digits[-17:]
    s = s.rstrip("0").rstrip(".")
    if n < 0 and s != "0":
        s = "-" + s
    return s.encode()
