"""DUMP and RESTORE in Redis's serialization format (``rdb.py``): a DUMP from redis-server
RESTOREs here and a DUMP from here RESTOREs in redis-server.

RESTORE is a logged operation: the payload is decoded inside ``apply`` (a pure function of
the bytes), and a relative TTL becomes a deadline from the operation's clock.  IDLETIME and
FREQ are checked as Redis checks them and otherwise ignored (no LRU/LFU data is kept).
"""

from __future__ import annotations

from typing import Any

from .. import rdb
from ..keyspace import Ctx, delete, lookup, lookup_write, set_value, to_int
from ..registry import command
from ..replies import E_SYNTAX, OK, RError


@command("dump", arity=2, flags=("readonly",))
def cmd_dump(ctx: Ctx, a: list) -> Any:
    v = lookup(ctx, a[1])
    if v is None:
        return None
    return rdb.dump(v)


@command("restore", arity=-4, flags=("write", "denyoom"))
def cmd_restore(ctx: Ctx, a: list) -> Any:
    replace = absttl = False
    idle = freq = -1
    j = 4
    while j < len(a):
        o = a[j].lower()
        more = len(a) - j - 1
        if o == b"replace":
            replace = True
        elif o == b"absttl":
            absttl = True
        elif o == b"idletime" and more >= 1 and freq == -1:
            idle = to_int(a[j + 1])
            if idle < 0:
                raise RError("ERR Invalid IDLETIME value, must be >= 0")
            j += 1
        elif o == b"freq" and more >= 1 and idle == -1:
            freq = to_int(a[j + 1])
            if not 0 <= freq <= 255:
                raise RError("ERR Invalid FREQ value, must be >= 0 and <= 255")
            j += 1
        else:
            raise RError(E_SYNTAX)
        j += 1
    key = a[1]
    if not replace and lookup_write(ctx, key) is not None:
        raise RError("BUSYKEY Target key name already exists.")
    ttl = to_int(a[2])
    if ttl < 0:
        raise RError("ERR Invalid TTL value, must be >= 0")
    if not rdb.check(a[3]):
        raise RError("ERR DUMP payload version or checksum are wrong")
    try:
        v = rdb.load(a[3])
    except rdb.BadFormat:
        raise RError("ERR Bad data format") from None
    if replace:
        delete(ctx, key)
    if ttl and not absttl:
        ttl += ctx.now
    if ttl and ttl <= ctx.now:
        return OK  # already expired: nothing is stored (a replaced key is gone)
    set_value(ctx, key, v)
    if ttl:
        ctx.expires[key] = ttl
    return OK
