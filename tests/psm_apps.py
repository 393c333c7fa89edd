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
        if kind == "set":
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
