"""Reply values and their RESP2/RESP3 encoding, and Redis's exact error strings.

Command handlers return plain values: ``bytes`` (bulk string), ``int`` (integer), ``None``
(null), ``list`` (array), :class:`Status` (simple string), :class:`RError` (error, also
raised), :class:`RDouble`, :class:`RMap`, :class:`RSet`, :class:`Push` (pub/sub messages).
"""

from __future__ import annotations

import math
from typing import Any


class Status(str):
    """A simple-string reply (``+OK``)."""


OK = Status("OK")
QUEUED = Status("QUEUED")
PONG = Status("PONG")


class RError(Exception):
    """An error reply; the message starts with its code (``ERR``, ``WRONGTYPE`` ...)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RError) and other.msg == self.msg

    def __hash__(self) -> int:
        return hash(self.msg)

    def __reduce__(self) -> Any:
        return (RError, (self.msg,))


class RDouble(float):
    """A floating-point reply (bulk string in RESP2, ``,`` in RESP3)."""


class RMap(list):
    """A map reply given as a list of pairs (flat array in RESP2)."""


class RSet(list):
    """A set reply (array in RESP2)."""


class RPairs(list):
    """(member, score) pairs: a flat array in RESP2, an array of pairs in RESP3."""


class Push(list):
    """An out-of-band message (pub/sub): array in RESP2, ``>`` in RESP3."""


class RBool(int):
    """A boolean reply (``#t``/``#f`` in RESP3, ``:1``/``:0`` in RESP2): scripts."""


class RBigNum(bytes):
    """A big number reply (``(`` in RESP3, a bulk string in RESP2): scripts."""


class RVerbatim(bytes):
    """A verbatim string reply: 3 bytes of format, then the text (``=`` in RESP3, the text
    as a bulk string in RESP2): scripts."""


class _NullArray:
    """The null array (``*-1`` in RESP2): a blocking command that timed out."""


NULL_ARRAY = _NullArray()


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
E_SYNTAX = "ERR syntax error"
E_INT = "ERR value is not an integer or out of range"
E_FLOAT = "ERR value is not a valid float"
E_OVERFLOW = "ERR increment or decrement would overflow"
E_NOKEY = "ERR no such key"
E_RANGE = "ERR index out of range"
E_POSITIVE = "ERR value is out of range, must be positive"
E_DB = "ERR DB index is out of range"
E_HASH_INT = "ERR hash value is not an integer"
E_HASH_FLOAT = "ERR hash value is not a float"
E_NAN = "ERR increment would produce NaN or Infinity"
E_NOAUTH = "NOAUTH Authentication required."
E_WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def arity_error(name: str) -> RError:
    return RError(f"ERR wrong number of arguments for '{name}' command")


def fmt_double(x: float) -> bytes:
    """Redis's reply form of a double (``%.17g``; inf and -inf spelled out)."""
    if math.isinf(x):
        return b"inf" if x > 0 else b"-inf"
    if x == int(x) and abs(x) < 1e17:
        return b"%d" % int(x)
    return (b"%.17g" % x)


_CRLF = b"\r\n"


def encode(v: Any, resp3: bool = False) -> bytes:
    """One reply in RESP."""
    out: list[bytes] = []
    _enc(v, resp3, out)
    return b"".join(out)


def _enc(v: Any, r3: bool, out: list[bytes]) -> None:
    t = type(v)
    if t is bytes:
        out.append(b"$%d\r\n%b\r\n" % (len(v), v))
    elif t is int:
        out.append(b":%d\r\n" % v)
    elif v is None:
        out.append(b"_\r\n" if r3 else b"$-1\r\n")
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(v))
        for x in v:
            _enc(x, r3, out)
    elif t is Status:
        out.append(b"+%b\r\n" % v.encode())
    elif isinstance(v, RError):
        msg = v.msg.replace("\r", " ").replace("\n", " ")
        out.append(b"-%b\r\n" % msg.encode("utf-8", "replace"))
    elif t is RDouble:
        if r3:
            out.append(b",%b\r\n" % fmt_double(v))
        else:
            s = fmt_double(v)
            out.append(b"$%d\r\n%b\r\n" % (len(s), s))
    elif t is RMap:
        out.append((b"%%%d\r\n" if r3 else b"*%d\r\n") % (len(v) if r3 else 2 * len(v)))
        for a, b in v:
            _enc(a, r3, out)
            _enc(b, r3, out)
    elif t is RSet:
        out.append((b"~%d\r\n" if r3 else b"*%d\r\n") % len(v))
        for x in v:
            _enc(x, r3, out)
    elif t is RPairs:
        if r3:
            out.append(b"*%d\r\n" % len(v))
            for a, b in v:
                out.append(b"*2\r\n")
                _enc(a, r3, out)
                _enc(b, r3, out)
        else:
            out.append(b"*%d\r\n" % (2 * len(v)))
            for a, b in v:
                _enc(a, r3, out)
                _enc(b, r3, out)
    elif t is RDoubleText:
        out.append((b",%b\r\n" % v) if r3 else (b"$%d\r\n%b\r\n" % (len(v), v)))
    elif t is RPairMap:
        out.append((b"%%%d\r\n" if r3 else b"*%d\r\n") % len(v))
        for a, b in v:
            if not r3:
                out.append(b"*2\r\n")
            _enc(a, r3, out)
            _enc(b, r3, out)
    elif t is Push:
        out.append((b">%d\r\n" if r3 else b"*%d\r\n") % len(v))
        for x in v:
            _enc(x, r3, out)
    elif v is NULL_ARRAY:
        out.append(b"_\r\n" if r3 else b"*-1\r\n")
    elif t is bool:
        out.append(b":1\r\n" if v else b":0\r\n")
    elif t is str:
        b = v.encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    elif t is float:
        s = fmt_double(v)
        out.append(b"$%d\r\n%b\r\n" % (len(s), s))
    elif t is RBool:
        out.append((b"#t\r\n" if v else b"#f\r\n") if r3 else (b":1\r\n" if v else b":0\r\n"))
    elif t is RBigNum:
        out.append(b"(%b\r\n" % v if r3 else b"$%d\r\n%b\r\n" % (len(v), v))
    elif t is RVerbatim:
        if r3:
            out.append(b"=%d\r\n%b:%b\r\n" % (len(v) + 1, v[:3], v[3:]))
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(v) - 3, v[3:]))
    else:
        raise TypeError(f"cannot encode reply {v!r}")


class RDoubleText(bytes):
    """A double given as its text: a bulk string in RESP2, a double (``,``) in RESP3."""


class RPairMap(list):
    """(key, value) pairs: a map in RESP3, an array of 2-element arrays in RESP2 (XREAD)."""
