"""State machines used by the runtime tests (module level, so the shadow can import them)."""

from __future__ import annotations

import time

import persimmon


class KV:
    """A key-value state machine with an op counter, in the plain ``apply(op)`` form."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.n = 0

    def apply(self, op):
        kind = op[0]
        if kind == "set" or kind == b"set":  # (b"set", ...): logged packed, not pickled
            self.data[op[1]] = op[2]
        elif kind == "del":
            self.data.pop(op[1], None)
        elif kind == "incr":
            self.data[op[1]] = self.data.get(op[1], 0) + 1
        elif kind == "get":
            return self.data.get(op[1])
        elif kind == "boom":
            self.data["before-boom"] = op[1]
            raise ValueError("boom")
        elif kind == "append":
            self.data.setdefault(op[1], []).append(op[2])
        self.n += 1
        return self.n


class Counter:
    """The decorator form."""

    def __init__(self) -> None:
        self.counts: dict = {}
        self.total = 0

    @persimmon.rw
    def add(self, key, amount=1):
        self.counts[key] = self.counts.get(key, 0) + amount
        self.total += amount
        return self.counts[key]

    @persimmon.ro
    def get(self, key):
        return self.counts.get(key, 0)


class Clocky:
    """Nondeterministic on purpose: reads the clock inside an operation."""

    def __init__(self) -> None:
        self.stamps: list = []

    def apply(self, op):
        self.stamps.append(time.time())


def workload_op(i: int):
    """Operation number ``i`` of the crash workload (deterministic)."""
    k = f"k{(i * 7919) % 97}"
    if i % 5 == 4:
        return ("append", f"l{i % 11}", i)
    if i % 13 == 12:
        return ("del", k)
    if i % 3 == 1:  # bytes and ints only: the packed form (tag T)
        return (b"set", k.encode(), (b"v%d" % i * (1 + i % 9), i))
    return ("set", k, b"v%d" % i * (1 + i % 9))


def expected_state(n: int) -> dict:
    kv = KV()
    for i in range(n):
        kv.apply(workload_op(i))
    return {"data": kv.data, "n": kv.n}


class Leaky:
    """A port bug: stores a value the PM copy cannot hold."""

    def __init__(self) -> None:
        self.items: list = []

    def apply(self, op):
        if op[0] == "leak":
            self.items.append(lambda: op[1])
        else:
            self.items.append(op[1])


class Mixed:
    """Every form of operation the shadow reads: bytes operations (``b"S" + key + value``),
    packed tuples (``(b"set", key, value, n)``), tuples through ``apply`` (one that raises;
    one that leaves a native list for end_op to store; one that leaves end_op a value it
    cannot persist; a big value that grows the pool; stores into many slots) and method
    calls of the decorator form (``rw`` methods beside ``apply``)."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.lists: dict = {}
        self.n = 0

    def apply(self, op):
        self.n += 1
        if type(op) is bytes:
            self.data[op[1:9]] = op[9:]
            return None
        kind = op[0]
        if kind == b"set":  # a tuple of bytes and ints: logged packed (tag T), not pickled
            self.data[op[1]] = op[2]
            return op[3]
        if kind == "boom":
            self.data["before-boom"] = op[1]
            raise ValueError(f"boom {op[1]}")
        if kind == "list":  # a native list, filled after it is stored: end_op stores it
            lst = []
            self.lists[op[1]] = lst
            lst.extend(range(op[2]))
        elif kind == "bad":  # end_op cannot persist what the list holds
            lst = []
            self.lists["bad"] = lst
            lst.append(lambda: 0)
        elif kind == "big":
            self.data[op[1]] = b"B" * op[2]
        elif kind == "many":  # stores into many committed slots: many undo entries
            for j in range(op[1]):
                self.data[b"w%04d" % j] = b"%d" % op[2]
        return self.n

    @persimmon.rw
    def put(self, key, value=b""):
        self.n += 1
        self.data[key] = value
        return self.n


BIG_BASE = 4200  # entries BigKV starts with: more than heap._PROBE_OVER


class BigKV:
    """A key-value state machine whose table is big from the start (more entries than a
    table of bytes keys gets a DRAM index for, when the compiled module is there: the
    shadow's stores probe the pool's own index table).  Operations are bytes:
    ``b"S" + 6-byte key + value`` or ``b"D" + key``."""

    def __init__(self) -> None:
        self.data = {b"p%05d" % j: b"v" for j in range(BIG_BASE)}
        self.n = 0

    def apply(self, op):
        if op[0] == 0x53:
            self.data[op[1:7]] = op[7:]
        else:
            self.data.pop(op[1:7], None)
        self.n += 1
        return self.n


def big_op(i: int) -> bytes:
    """Operation number ``i`` of the big-table crash workload (deterministic)."""
    k = b"p%05d" % ((i * 7919) % (BIG_BASE + 300))
    return b"D" + k if i % 7 == 3 else b"S" + k + b"%d:" % i * (1 + i % 19)


_big_replay: list = []  # [BigKV, n]: the last expected state computed, advanced from there


def big_expected(n: int) -> dict:
    """The state after the first ``n`` operations of the big-table workload."""
    if not _big_replay or _big_replay[1] > n:
        _big_replay[:] = [BigKV(), 0]
    kv = _big_replay[0]
    for i in range(_big_replay[1], n):
        kv.apply(big_op(i))
    _big_replay[1] = n
    return {"data": dict(kv.data), "n": kv.n}


class ShadowBomb(KV):
    """A KV whose ("bomb", fuse) operation kills the process that applies it unless that
    process is the one whose pid the file ``fuse`` holds (the foreground): the shadow's
    replay fails at that operation every time, as one hitting a bug would.  Remove the
    file to disarm it."""

    def apply(self, op):
        if op[0] == "bomb":
            import os

            try:
                with open(op[1]) as f:
                    armed = int(f.read()) != os.getpid()
            except FileNotFoundError:
                armed = False
            if armed:
                raise SystemExit("the bomb went off in the shadow")
            self.data["bombed"] = True
            self.n += 1
            return self.n
        return super().apply(op)
