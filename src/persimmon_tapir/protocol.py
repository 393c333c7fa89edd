"""The message names and a shape check for every message a replica or client accepts.

A datagram that decodes but has the wrong shape (wrong field count or type, an operation the
store does not know) is rejected here, before anything reaches the state machine.
"""

from __future__ import annotations

from .wire import MessageError

__all__ = ["REPLICA_MESSAGES", "CLIENT_MESSAGES", "check_replica_message", "check_op",
           "check_entries", "superquorum"]

REPLICA_MESSAGES = frozenset({"PI", "FI", "PC", "FC", "U", "DVC", "SV", "RQ", "RR"})
CLIENT_MESSAGES = frozenset({"RI", "RC", "CF", "RU"})


def superquorum(f: int) -> int:
    """ceil(3f/2) + 1: matching results the fast path needs."""
    return (3 * f + 1) // 2 + 1


def _int(x) -> bool:
    return type(x) is int


def _i64(x) -> bool:
    return type(x) is int and -(1 << 63) <= x < (1 << 63)


def _ts(x) -> bool:  # (signed 64-bit: the store packs timestamps and transaction ids so)
    return type(x) is tuple and len(x) == 2 and _i64(x[0]) and _i64(x[1])


def _result(x) -> bool:
    return (type(x) is tuple and len(x) == 2 and _int(x[0]) and 0 <= x[0] <= 3
            and (x[1] is None or _ts(x[1])))


def check_op(op) -> None:
    """An operation of TAPIR-KV: prepare/commit/abort (txn), or get (key)."""
    if type(op) is not tuple or not op:
        raise MessageError("operation is not a tuple")
    if op[0] == "get":
        if len(op) != 2 or type(op[1]) is not bytes:
            raise MessageError("get needs one bytes key")
        return
    if op[0] not in ("prepare", "commit", "abort") or len(op) != (6 if op[0] == "prepare" else 5):
        raise MessageError(f"unknown operation {str(op[0])[:20]!r} or wrong field count")
    _, txn_id, ts, reads, writes = op[:5]
    if op[0] == "prepare":
        coord = op[5]
        if type(coord) is not tuple or not all(
                type(c) is tuple and len(c) == 2 and _int(c[0]) and _int(c[1]) for c in coord):
            raise MessageError("malformed participant list")
    if not _i64(txn_id) or not _ts(ts) or type(reads) is not tuple or type(writes) is not tuple:
        raise MessageError("malformed transaction")
    for r in reads:
        if type(r) is not tuple or len(r) != 2 or type(r[0]) is not bytes or not _ts(r[1]):
            raise MessageError("malformed read set")
    for w in writes:
        if type(w) is not tuple or len(w) != 2 or type(w[0]) is not bytes \
                or type(w[1]) is not bytes:
            raise MessageError("malformed write set")


def check_entries(entries) -> None:
    if type(entries) is not tuple:
        raise MessageError("record is not a tuple")
    for e in entries:
        if (type(e) is not tuple or len(e) != 7 or not _int(e[0]) or not _int(e[1])
                or e[2] not in ("I", "C") or e[3] not in ("T", "F") or not _int(e[4])):
            raise MessageError("malformed record entry")
        check_op(e[5])
        if (e[2] == "C") != (e[5][0] == "prepare") or e[5][0] == "get":
            raise MessageError("record entry of the wrong kind for its operation")
        if e[2] == "C" and not _result(e[6]):
            raise MessageError("malformed consensus result in record")


_SHAPES = {
    # name: (field count including the name, checker of the fields)
    "PI": 5, "FI": 4, "PC": 5, "FC": 5, "U": 4, "DVC": 5, "SV": 3, "RQ": 3, "RR": 8,
}


def check_replica_message(msg: tuple) -> None:
    name = msg[0]
    if len(msg) != _SHAPES[name]:
        raise MessageError(f"{name} with {len(msg)} fields")
    if name in ("PI", "FI", "PC", "FC", "U"):
        if not _int(msg[1]) or not _int(msg[2]):
            raise MessageError(f"{name}: client id and request id must be integers")
        if name in ("PI", "PC"):
            if not _int(msg[3]):
                raise MessageError(f"{name}: view must be an integer")
            check_op(msg[4])
            if (msg[4][0] == "prepare") != (name == "PC"):
                raise MessageError(f"{name}: wrong kind of operation {msg[4][0]!r}")
        else:
            check_op(msg[3])
            if name in ("FI", "FC") and (msg[3][0] == "prepare") != (name == "FC"):
                raise MessageError(f"{name}: wrong kind of operation {msg[3][0]!r}")
        if name == "FC" and not _result(msg[4]):
            raise MessageError("FC: malformed result")
        if name == "U" and msg[3][0] != "get":
            raise MessageError("U: only get is unlogged")
    elif name == "DVC":
        if not (_int(msg[1]) and _int(msg[2]) and _int(msg[3])):
            raise MessageError("DVC: malformed header")
        if msg[4] is not None:
            check_entries(msg[4])
    elif name == "SV":
        if not _int(msg[1]):
            raise MessageError("SV: malformed view")
        check_entries(msg[2])
    elif name == "RQ":
        if not (_int(msg[1]) and _int(msg[2])):
            raise MessageError("RQ: malformed")
    elif name == "RR":
        if not all(_int(x) for x in (msg[1], msg[2], msg[3], msg[5], msg[7])) or \
                msg[4] not in ("normal", "view-change", "recovering") or type(msg[6]) is not bool:
            raise MessageError("RR: malformed")
