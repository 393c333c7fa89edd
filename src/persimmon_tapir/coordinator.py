"""TAPIR's client-side transaction coordinator (section 5.2), on the IR client of each shard.

Reads go to one replica of the key's shard (unlogged) and record the version read; writes are
buffered. Commit picks a timestamp from the client's clock, runs Prepare as an IR consensus
operation at every participant shard (TAPIR-DECIDE resolves a slow path), retries with a
larger timestamp when a shard answers RETRY, then sends Commit or Abort as an IR inconsistent
operation to every participant and returns once each has f+1 replies.
"""

from __future__ import annotations

from collections.abc import Callable

from . import store
from .config import shard_of
from .ir_client import IRShardClient
from .protocol import CLIENT_MESSAGES
from .tasks import Future, spawn
from .wire import MessageError, decode

__all__ = ["TapirClient", "TxnCore", "decide", "TransactionError"]


class TransactionError(Exception):
    """A transaction used after it committed or aborted."""


def decide(results: list, f: int) -> tuple:
    """TAPIR-DECIDE: the slow path's result of one shard's Prepare."""
    codes = [r[0] for r in results]
    if store.ABORT in codes:
        return (store.ABORT, None)
    if codes.count(store.OK) >= f + 1:
        return (store.OK, None)
    if codes.count(store.ABSTAIN) >= f + 1:
        return (store.ABORT, None)
    if store.RETRY in codes:
        return (store.RETRY, max(tuple(r[1]) for r in results if r[0] == store.RETRY))
    return (store.ABORT, None)


async def gather(futs: list) -> list:
    return [await f for f in futs]


class TapirClient:
    def __init__(self, ep, shards: list, f: int, client_id: int, clock: Callable[[], int],
                 timeout: float = 0.25, max_retries: int = 8) -> None:
        self.ep, self.f, self.cid, self.clock = ep, f, client_id, clock
        self.max_retries = max_retries
        self.pending: dict = {}
        self._rid = 0
        self._txn = 0
        self.bad_messages = 0
        self.shards = [IRShardClient(ep, client_id, addrs, f, self._next_rid, self.pending,
                                     timeout) for addrs in shards]
        self.stats = {"commits": 0, "aborts": 0, "retries": 0}

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def receive(self, src, data: bytes) -> None:
        try:
            msg = decode(data, CLIENT_MESSAGES)
            if len(msg) < 3 or type(msg[1]) is not int:
                raise MessageError("reply without a request id")
        except MessageError:
            self.bad_messages += 1
            return
        req = self.pending.get(msg[1])
        if req is None:
            return
        try:
            getattr(req.owner, "_on_" + msg[0])(msg)
        except (ValueError, TypeError, IndexError):
            self.bad_messages += 1

    def begin(self) -> TxnCore:
        self._txn += 1
        return TxnCore(self, (self.cid << 24) | (self._txn & 0xFFFFFF))

    def shard_stats(self) -> dict:
        out = {"fast": 0, "slow": 0, "retransmits": 0}
        for s in self.shards:
            for k in out:
                out[k] += s.stats[k]
        return out


class TxnCore:
    def __init__(self, client: TapirClient, txn_id: int) -> None:
        self.c, self.id = client, txn_id
        self.reads: dict = {}   # key -> (value, version)
        self.writes: dict = {}
        self.done = False
        self.ts: tuple | None = None

    def _live(self) -> None:
        if self.done:
            raise TransactionError("the transaction has already committed or aborted")

    def get(self, key: bytes) -> Future:
        self._live()
        if key in self.writes:
            return _now(self.writes[key])
        if key in self.reads:
            return _now(self.reads[key][0])
        return spawn(self._get(key))

    async def _get(self, key: bytes):
        shard = self.c.shards[shard_of(key, len(self.c.shards))]
        value, version = await shard.invoke_unlogged(("get", key))
        if key not in self.reads:
            self.reads[key] = (value, tuple(version))
        return self.reads[key][0]

    def put(self, key: bytes, value: bytes) -> None:
        self._live()
        if type(key) is not bytes or type(value) is not bytes:
            raise TypeError("keys and values are bytes")
        self.writes[key] = value

    def abort(self) -> None:
        self.done = True  # nothing was prepared: nothing to tell the replicas

    def commit(self) -> Future:
        self._live()
        self.done = True
        return spawn(self._commit())

    async def _commit(self) -> bool:
        c = self.c
        nshards = len(c.shards)
        parts: dict = {}
        for key, (_v, version) in self.reads.items():
            parts.setdefault(shard_of(key, nshards), ([], []))[0].append((key, version))
        for key, value in self.writes.items():
            parts.setdefault(shard_of(key, nshards), ([], []))[1].append((key, value))
        if not parts:
            return True
        order = sorted(parts)
        sets = {s: (tuple(sorted(parts[s][0])), tuple(sorted(parts[s][1]))) for s in order}
        floor = max([v[0] for _x, v in self.reads.values()] + [0]) + 1
        ts = (max(c.clock(), floor), c.cid)
        decision = False
        dec = lambda results: decide(results, c.f)  # noqa: E731
        for _attempt in range(c.max_retries):
            results = await gather([c.shards[s].invoke_consensus(
                ("prepare", self.id, ts) + sets[s], dec) for s in order])
            codes = [r[0] for r in results]
            if all(code == store.OK for code in codes):
                decision = True
                break
            if any(code in (store.ABORT, store.ABSTAIN) for code in codes):
                break
            c.stats["retries"] += 1
            ts = (max(tuple(r[1])[0] for r in results if r[0] == store.RETRY) + 1, c.cid)
        self.ts = ts
        kind = "commit" if decision else "abort"
        await gather([c.shards[s].invoke_inconsistent((kind, self.id, ts) + sets[s])
                      for s in order])
        c.stats["commits" if decision else "aborts"] += 1
        if not decision and self.reads:  # perhaps a stale replica: read elsewhere next time
            for s in order:
                sh = c.shards[s]
                sh.read_replica = (sh.read_replica + 1) % sh.n
        return decision


def _now(value) -> Future:
    f = Future()
    f.set_result(value)
    return f
