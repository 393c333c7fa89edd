"""Deliberately wrong state machines for ``persimmon crashtest`` (and workloads for them)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator


class Stamped:
    """Wrong: an operation reads the clock."""

    def __init__(self) -> None:
        self.items: dict = {}

    def apply(self, op):
        self.items[op[1]] = (op[2], time.time())


def stamped_ops(rng: random.Random) -> Iterator[tuple]:
    while True:
        yield ("put", f"k{rng.randrange(20)}", rng.randrange(100))


class Tags:
    """Wrong: an operation depends on the iteration order of a set."""

    def __init__(self) -> None:
        self.tags: set = set()
        self.picked: list = []

    def apply(self, op):
        if op[0] == "add":
            self.tags.add(op[1])
        elif self.tags:  # "pick": the first tag in iteration order
            self.picked.append(next(iter(self.tags)))


def tags_ops(rng: random.Random) -> Iterator[tuple]:
    while True:
        if rng.random() < 0.8:
            yield ("add", f"tag-{rng.randrange(1000)}")
        else:
            yield ("pick",)
