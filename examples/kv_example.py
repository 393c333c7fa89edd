"""The README's key-value state machine, and a workload for ``persimmon crashtest``.

    python -m persimmon.cli crashtest examples.kv_example:KV --ops examples.kv_example:kv_ops
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import persimmon


class KV:
    def __init__(self):
        self.data = {}

    @persimmon.rw
    def put(self, key, value):
        self.data[key] = value

    @persimmon.ro
    def get(self, key):
        return self.data.get(key)


def kv_ops(rng: random.Random) -> Iterator[tuple]:
    """Puts of 50 keys, values of every kind the state holds (str, int, bytes, lists)."""
    while True:
        key = f"k{rng.randrange(50)}"
        value = rng.choice([rng.randrange(1000), f"v{rng.random()}", b"x" * rng.randrange(64),
                            [rng.randrange(9) for _ in range(rng.randrange(4))]])
        yield ("put", key, value)
