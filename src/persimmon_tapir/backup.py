"""Coordinator recovery (TAPIR section 6.2.3): participants finish a dead client's commit.

A replica acts as backup coordinator for every transaction that has stayed in its prepared
set longer than a timeout: the leader of the transaction's first participant shard first,
the other replicas of the participants after longer timeouts, in turn (a replica that missed
a Commit's finalize holds a prepared entry that no other replica may have).  It proposes the
client's Prepare again at every participant under the client's own operation ids (a replica
answers with the result it recorded, or runs the Prepare if it never saw it), decides as the
client does (fast path, or slow path with TAPIR-DECIDE, where the first finalized result a
replica records wins and f+1 matching confirmations are needed), and sends Commit or Abort.
The client and a backup therefore reach the same decision for an attempt, and Commit/Abort
are idempotent.  A shard answering RETRY means the client was about to retry at a later
timestamp: the backup leaves that attempt alone.

Simplification against the paper: no coordinator views (the paper's CoordinatorChange
consensus); the shared operation ids are what keeps the two coordinators consistent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import store
from .state import NORMAL, record_op

__all__ = ["BackupCoordinator"]

log = logging.getLogger("persimmon_tapir.backup")


class BackupCoordinator:
    def __init__(self, replica, make_client: Callable[[], tuple], timeout: float = 2.0,
                 interval: float = 0.5) -> None:
        """``make_client()`` returns ``(TapirClient, close)`` on an endpoint of its own."""
        self.rep, self.make_client = replica, make_client
        self.timeout, self.interval = timeout, interval
        self.seen: dict = {}
        self.running: set = set()
        self.finished = 0
        self._timer = replica.ep.call_later(interval, self.check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> None:
        rep = self.rep
        self._timer = None
        if rep._closed:
            return
        s = rep.state
        now = rep.ep.now()
        live = set()
        if s.status == NORMAL:
            shard = s.ident[1]
            rank = (rep.idx - rep.leader(s.view)) % rep.n
            for txn_id, p in store.prepared_items(s):
                key = (txn_id, store.prepared_ts(p))
                live.add(key)
                first = self.seen.setdefault(key, now)
                coord = [c[0] for c in store.prepared_parts(p)[2]]
                if key in self.running or shard not in coord:
                    continue
                # the first participant's leader goes first; then the others in turn (a
                # replica that missed a finalize may hold a transaction no one else does)
                turn = coord.index(shard) * rep.n + rank
                if now - first >= self.timeout * (1 + turn):
                    self._recover(key)
        self.seen = {k: t for k, t in self.seen.items() if k in live}
        self._timer = rep.ep.call_later(self.interval, self.check)

    def _recover(self, key) -> None:
        txn_id, ts = key
        found = None
        for cid, _rid, e in self.rep.state.entries():
            if e[0] != "C":
                continue
            op = record_op(e)
            if op[0] == "prepare" and op[1] == txn_id and tuple(op[2]) == ts:
                found = (cid, op)
                break
        if found is None:
            return
        client, close = self.make_client()
        self.running.add(key)
        log.info("shard %d replica %d: backup coordinator for transaction %d",
                 self.rep.state.ident[1], self.rep.idx, txn_id)

        def done(fut):
            self.running.discard(key)
            close()
            self.finished += 1
            try:
                outcome = fut.result()
            except Exception as e:  # noqa: BLE001 - logged; the next check tries again
                log.warning("backup coordinator for %d failed: %r", txn_id, e)
                return
            log.info("transaction %d finished by its backup coordinator: %s", txn_id,
                     {True: "commit", False: "abort", None: "left to its client"}[outcome])
        client.recover(found[1], found[0]).add_done_callback(done)
