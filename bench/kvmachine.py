"""The key-value state machine the runtime benchmarks drive (importable by the shadow)."""

from __future__ import annotations


class BenchKV:
    def __init__(self, n: int = 0, value: bytes = b"") -> None:
        self.data = {b"key:%012d" % i: value for i in range(n)}

    def apply(self, op):
        if type(op) is bytes:  # b"S" + 16-byte key + value
            self.data[op[1:17]] = op[17:]
            return None
        kind = op[0]
        if kind == "set":
            self.data[op[1]] = op[2]
        elif kind == "get":
            return self.data.get(op[1])
        return None
