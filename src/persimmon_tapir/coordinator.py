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
                 timeout: float = 0.25, max_retries: int = 8, first_rid: int = 0) -> None:
        self.ep, self.f, self.cid, self.clock = ep, f, client_id, clock
        self.max_retries = max_retries
        self.pending: dict = {}
        self._rid = first_rid
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

    def decide(self, results: list) -> tuple:
        return decide(results, self.f)

    async def finish(self, txn_id, ts, reads, writes, order, decision: bool) -> None:
        """Commit or Abort (an IR inconsistent operation) at every participant shard."""
        op = ("commit" if decision else "abort", txn_id, ts, reads, writes)
        await gather([self.shards[s].invoke_inconsistent(op) for s in order])

    def recover(self, prepare_op: tuple, cid: int) -> Future:
        """Finish a transaction whose coordinator (client ``cid``) may have died: propose its
        Prepare again under the original ids at every participant (replicas answer with what
        they recorded; one that never saw it runs it), decide as the client would, and send
        Commit or Abort.  Result: True/False, or None when a shard answered RETRY (the client
        was going to retry at a later timestamp: nothing to finish for this attempt)."""
        return spawn(self._recover(prepare_op, cid))

    async def _recover(self, op: tuple, cid: int):
        _, txn_id, ts, reads, writes, rids = op
        results = await gather([self.shards[s].invoke_consensus(op, self.decide, rid=rid,
                                                                cid=cid) for s, rid in rids])
        outcome = outcome_of(results)
        if outcome is not None:
            await self.finish(txn_id, ts, reads, writes, [s for s, _ in rids], outcome)
        return outcome

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
        reads = tuple(sorted((k, v[1]) for k, v in self.reads.items()))
        writes = tuple(sorted(self.writes.items()))
        order = sorted({shard_of(k, nshards) for k, _ in reads + writes})
        if not order:
            return True
        floor = max([v[0] for _k, v in reads] + [0]) + 1
        ts = (max(c.clock(), floor), c.cid)
        decision = False
        for _attempt in range(c.max_retries):
            # every participant gets the whole transaction and the ids of the Prepare at
            # each of them, so a backup coordinator can finish it from any one of them
            rids = tuple((s, c._next_rid()) for s in order)
            op = ("prepare", self.id, ts, reads, writes, rids)
            results = await gather([c.shards[s].invoke_consensus(op, c.decide, rid=rid)
                                    for s, rid in rids])
            outcome = outcome_of(results)
            if outcome is not None:
                decision = outcome
                break
            c.stats["retries"] += 1
            ts = (max(tuple(r[1])[0] for r in results if r[0] == store.RETRY) + 1, c.cid)
        self.ts = ts
        await c.finish(self.id, ts, reads, writes, order, decision)
        c.stats["commits" if decision else "aborts"] += 1
        if not decision and self.reads:  # perhaps a stale replica: read elsewhere next time
            for s in order:
                sh = c.shards[s]
                sh.read_replica = (sh.read_replica + 1) % sh.n
        return decision


def outcome_of(results: list) -> bool | None:
    """Commit (all PREPARE-OK), abort (an ABORT; ABSTAIN decided into ABORT), or None: a
    RETRY, try again at a later timestamp."""
    codes = [r[0] for r in results]
    if all(code == store.OK for code in codes):
        return True
    if any(code in (store.ABORT, store.ABSTAIN) for code in codes):
        return False
    return None


def _now(value) -> Future:
    f = Future()
    f.set_result(value)
    return f
