"""The stream value type: entries in id order, in nodes as Redis keeps them, and consumer
groups.

A stream id ``ms-seq`` is one int, ``ms << 64 | seq`` (so ids compare as ints and are
stable dict keys on the PM heap).  Everything is plain data (dicts, lists, tuples, ints,
bytes and the module-level classes below), so a stream persists field by field and the
same methods run on the DRAM copy and, through proxies, on the PM copy.

Entries are grouped in *nodes* like Redis's radix-tree listpacks: a node takes appends until
``node_max`` entries went into it (live or deleted), and approximate trimming (``~``) removes
whole nodes only, so ``XADD ... MAXLEN ~ n`` leaves the lengths Redis leaves.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

M64 = (1 << 64) - 1
MAX_ID = (1 << 128) - 1
INVALID = -1  # a group's entries_read when unknown


def fmt_id(i: int) -> bytes:
    return b"%d-%d" % (i >> 64, i & M64)


class Nack:
    """A pending entry of a group: its consumer (name, or None after XCLAIM FORCE before
    being assigned), last delivery time (ms) and delivery count."""

    def __init__(self, consumer: bytes | None, time: int, count: int) -> None:
        self.consumer = consumer
        self.time = time
        self.count = count


class Consumer:
    def __init__(self, name: bytes, now: int) -> None:
        self.name = name
        self.seen = now
        self.pel: dict = {}  # id -> True (the Nack is in the group's pel)


class Group:
    def __init__(self, last_id: int, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel: dict = {}  # id -> Nack
        self.consumers: dict = {}  # name -> Consumer

    def consumer(self, name: bytes, now: int, create: bool = True,
                 refresh: bool = True) -> Any:
        c = self.consumers.get(name)
        if c is None:
            if not create:
                return None
            self.consumers[name] = Consumer(name, now)
            c = self.consumers[name]
        elif refresh:
            c.seen = now
        return c

    def pel_ids(self, pel: Any = None) -> list:
        """The ids of a pel (the group's by default) in id order."""
        return sorted((self.pel if pel is None else pel).keys())

    def drop_nack(self, i: int) -> None:
        n = self.pel.pop(i)
        if n.consumer is not None:
            c = self.consumers.get(n.consumer)
            if c is not None:
                c.pel.pop(i, None)

    def assign(self, i: int, nack: Any, consumer: Any) -> None:
        """Move pending entry ``i`` to ``consumer``."""
        if nack.consumer != consumer.name:
            if nack.consumer is not None:
                old = self.consumers.get(nack.consumer)
                if old is not None:
                    old.pel.pop(i, None)
            nack.consumer = consumer.name
            consumer.pel[i] = True


class Stream:
    def __init__(self) -> None:
        self.entries: dict = {}  # id -> (field, value, field, value, ...)
        self.nodes: list = []  # lists of live ids, ascending
        self.used: list = []  # per node: entries appended to it (live and deleted)
        self.lasts: list = []  # per node: its largest live id
        self.last_id = 0
        self.first_id = 0  # "recorded-first-entry-id"
        self.max_deleted = 0
        self.entries_added = 0
        self.groups: dict = {}  # name -> Group

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ ids
    def next_id(self, now: int) -> int | None:
        """The id ``*`` gives at clock ``now`` (None: the last possible id was used)."""
        last = self.last_id
        if last == MAX_ID:
            return None
        ms = last >> 64
        if ms >= now:
            return last + 1  # (seq overflow carries into ms, as Redis's streamIncrID)
        return now << 64

    def last_valid_id(self) -> int:
        return self.lasts[-1] if self.lasts else 0

    def first_valid_id(self) -> int:
        return self.nodes[0][0] if self.nodes else 0

    # ------------------------------------------------------------------ changes
    def append(self, i: int, fields: tuple, node_max: int) -> None:
        self.entries[i] = fields
        if self.nodes and (node_max <= 0 or self.used[-1] < node_max):
            self.nodes[-1].append(i)
            self.used[-1] += 1
            self.lasts[-1] = i
        else:
            self.nodes.append([i])
            self.used.append(1)
            self.lasts.append(i)
        if len(self.entries) == 1:
            self.first_id = i
        self.last_id = i
        self.entries_added += 1

    def delete(self, i: int) -> bool:
        if i not in self.entries:
            return False
        del self.entries[i]
        ni = min(bisect_left(self.lasts, i), len(self.nodes) - 1)
        node = self.nodes[ni]
        pos = bisect_left(node, i)
        del node[pos]
        if not node:
            del self.nodes[ni]
            del self.used[ni]
            del self.lasts[ni]
        elif pos == len(node):
            self.lasts[ni] = node[-1]
        return True

    def xdel(self, ids: list) -> int:
        n = 0
        first = False
        for i in ids:
            if self.delete(i):
                if i == self.first_id:
                    first = True
                if i > self.max_deleted:
                    self.max_deleted = i
                n += 1
        if n:
            if not self.entries:
                self.first_id = 0
            elif first:
                self.first_id = self.first_valid_id()
        return n

    def trim(self, maxlen: int | None, minid: int | None, approx: bool, limit: int) -> int:
        """Redis's streamTrim: by length (``maxlen``) or by id (``minid``); with ``approx``
        only whole nodes go; ``limit`` (0: none) caps the entries removed."""
        deleted = 0
        while self.nodes:
            if maxlen is not None and len(self.entries) <= maxlen:
                break
            node = self.nodes[0]
            n = len(node)
            if limit and deleted + n > limit:
                break
            if maxlen is not None:
                whole = len(self.entries) - n >= maxlen
            else:
                whole = self.lasts[0] < minid
            if whole:
                for i in node:
                    del self.entries[i]
                del self.nodes[0]
                del self.used[0]
                del self.lasts[0]
                deleted += n
                continue
            if approx:
                break
            k = 0
            if maxlen is not None:
                k = len(self.entries) - maxlen
            else:
                k = bisect_left(node, minid)
            if k:
                for i in node[:k]:
                    del self.entries[i]
                del node[:k]
                deleted += k
            break
        if not self.entries:
            self.first_id = 0
        elif deleted:
            self.first_id = self.first_valid_id()
        return deleted

    # ------------------------------------------------------------------ reads
    def range(self, lo: int, hi: int, count: int = 0, rev: bool = False) -> list:
        """``[(id, fields)]`` with lo <= id <= hi, ascending (descending with ``rev``), at
        most ``count`` (0: all)."""
        out: list = []
        if lo > hi or not self.nodes:
            return out
        nodes, entries = self.nodes, self.entries
        if not rev:
            ni = bisect_left(self.lasts, lo)
            pos = bisect_left(nodes[ni], lo) if ni < len(nodes) else 0
            while ni < len(nodes):
                node = nodes[ni]
                for i in node[pos:]:
                    if i > hi:
                        return out
                    out.append((i, entries[i]))
                    if count and len(out) >= count:
                        return out
                ni += 1
                pos = 0
        else:
            ni = min(bisect_left(self.lasts, hi), len(nodes) - 1)
            node = nodes[ni]
            pos = bisect_right(node, hi)
            while ni >= 0:
                node = nodes[ni]
                for i in reversed(node[:pos]):
                    if i < lo:
                        return out
                    out.append((i, entries[i]))
                    if count and len(out) >= count:
                        return out
                ni -= 1
                if ni >= 0:
                    pos = len(nodes[ni])
        return out

    def has_tombstones(self, start: int) -> bool:
        """streamRangeHasTombstones(start, +)."""
        if not self.entries or not self.max_deleted:
            return False
        if self.first_id > self.max_deleted:
            return False
        return start <= self.max_deleted

    def distance(self, i: int) -> int:
        """streamEstimateDistanceFromFirstEverEntry: the logical read counter of id ``i``,
        or INVALID."""
        if not self.entries_added:
            return 0
        if not self.entries and i <= self.last_id:
            return self.entries_added
        if i == self.last_id:
            return self.entries_added
        if i > self.last_id:
            return INVALID
        if not self.max_deleted or self.max_deleted < self.first_id:
            if i < self.first_id:
                return self.entries_added - len(self.entries)
            if i == self.first_id:
                return self.entries_added - len(self.entries) + 1
        return INVALID

    def lag(self, g: Any) -> int | None:
        if not self.entries_added:
            return 0
        if g.entries_read != INVALID and not self.has_tombstones(g.last_id):
            return self.entries_added - g.entries_read
        er = self.distance(g.last_id)
        if er != INVALID:
            return self.entries_added - er
        return None

    def deliver(self, g: Any, i: int) -> None:
        """Advance group ``g`` past entry ``i`` (its read counter as Redis keeps it)."""
        if i > g.last_id:
            if g.entries_read != INVALID and not self.has_tombstones(i):
                g.entries_read += 1
            elif self.entries_added:
                g.entries_read = self.distance(i)
            g.last_id = i
