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


class Typed:
    """Wrong: an operation tests a container's type with ``type(x) is dict`` (the PM copy's
    dict is a proxy: isinstance holds, identity of the type does not)."""

    def __init__(self) -> None:
        self.data: dict = {}
        self.kinds: list = []

    def apply(self, op):
        self.data[op[1]] = op[2]
        if len(self.data) % 5 == 0:
            self.kinds.append("plain" if type(self.data) is dict else "other")


def typed_ops(rng: random.Random) -> Iterator[tuple]:
    j = 0
    while True:
        j += 1
        yield ("put", f"k{j}", rng.randrange(100))
