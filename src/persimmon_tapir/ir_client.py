"""The IR client library for one shard: inconsistent, consensus and unlogged operations.

* inconsistent: PROPOSE to all replicas, done at f+1 replies of one view, then FINALIZE
  asynchronously (replicas execute it at finalize, or at the next view change's sync);
* consensus: PROPOSE to all; the fast path returns a result that ceil(3f/2)+1 replies of one
  view agree on; otherwise, with f+1 replies of one view, the slow path decides the result
  (the application's ``decide``), sends FINALIZE and returns at f+1 CONFIRMs of one view
  (the result those replicas recorded: a view change's merge wins over our decision);
* unlogged: one replica answers, the next one is tried on a timeout.
Lost messages are retransmitted to the replicas that have not answered.
"""

from __future__ import annotations

from collections.abc import Callable

from .protocol import superquorum
from .tasks import Future
from .wire import encode

__all__ = ["IRShardClient"]


class _Request:
    __slots__ = ("replies", "future", "timer", "phase", "fast_timer", "result", "op", "owner",
                 "cid")

    def __init__(self, op, owner) -> None:
        self.owner = owner
        self.cid = owner.cid
        self.replies: dict = {}
        self.future = Future()
        self.timer = None
        self.fast_timer = None
        self.phase = "propose"
        self.result = None
        self.op = op


class IRShardClient:
    def __init__(self, ep, client_id: int, replicas: list, f: int, next_rid: Callable[[], int],
                 pending: dict, timeout: float = 0.25, fast_wait: float | None = None) -> None:
        self.ep, self.cid, self.replicas, self.f = ep, client_id, list(replicas), f
        self.n = len(self.replicas)
        self.timeout = timeout
        self.fast_wait = timeout / 5 if fast_wait is None else fast_wait
        self.next_rid = next_rid
        self.view = 0
        self.pending = pending  # rid -> request, shared by the client's shards
        self.read_replica = client_id % self.n
        self.stats = {"fast": 0, "slow": 0, "retransmits": 0}

    def _send(self, i: int, msg: tuple) -> None:
        self.ep.send(self.replicas[i], encode(msg))

    def _retransmit(self, rid: int, make_msg, who: Callable[[_Request], list]) -> None:
        req = self.pending.get(rid)
        if req is None or req.future.done:
            return
        for i in who(req):
            self.stats["retransmits"] += 1
            self._send(i, make_msg())
        req.timer = self.ep.call_later(self.timeout,
                                       lambda: self._retransmit(rid, make_msg, who))

    def _laggards(self, req: _Request) -> list:
        """Replicas to ask again: no reply yet, or a reply from an older view than we know."""
        return [i for i in range(self.n)
                if i not in req.replies or req.replies[i][0] < self.view]

    def _finish(self, rid: int, req: _Request, value) -> None:
        self.pending.pop(rid, None)
        for t in (req.timer, req.fast_timer):
            if t is not None:
                t.cancel()
        req.future.set_result(value)

    # -- inconsistent -----------------------------------------------------------------------
    def invoke_inconsistent(self, op) -> Future:
        rid = self.next_rid()
        req = _Request(op, self)
        self.pending[rid] = req
        propose = lambda: ("PI", self.cid, rid, self.view, op)  # noqa: E731
        for i in range(self.n):
            self._send(i, propose())
        req.timer = self.ep.call_later(self.timeout, lambda: self._retransmit(
            rid, propose, self._laggards))
        return req.future

    def _on_RI(self, msg) -> None:
        _, rid, view, idx = msg
        req = self.pending.get(rid)
        if req is None or req.phase != "propose" or not 0 <= idx < self.n:
            return
        self.view = max(self.view, view)
        req.replies[idx] = (view, None)
        same = sum(1 for v, _ in req.replies.values() if v == view)
        if same >= self.f + 1:
            for i in range(self.n):  # FINALIZE, asynchronously
                self._send(i, ("FI", self.cid, rid, req.op))
            self._finish(rid, req, None)

    # -- consensus ---------------------------------------------------------------------------
    def invoke_consensus(self, op, decide: Callable[[list], tuple], rid: int | None = None,
                         cid: int | None = None) -> Future:
        """``rid``/``cid``: the operation's id when not a fresh one of ours (a backup
        coordinator re-proposes the original client's operation under its original id)."""
        rid = self.next_rid() if rid is None else rid
        cid = self.cid if cid is None else cid
        req = _Request(op, self)
        req.result = decide  # (the decide function until the slow path replaces it)
        req.cid = cid
        self.pending[rid] = req
        propose = lambda: ("PC", cid, rid, self.view, op)  # noqa: E731
        for i in range(self.n):
            self._send(i, propose())
        req.timer = self.ep.call_later(self.timeout, lambda: self._retransmit(
            rid, propose, self._laggards))
        return req.future

    def _on_RC(self, msg) -> None:
        _, rid, view, idx, result, _finalized = msg
        req = self.pending.get(rid)
        if req is None or req.phase != "propose" or not 0 <= idx < self.n:
            return
        self.view = max(self.view, view)
        req.replies[idx] = (view, result)
        self._consider(rid, req, final=False)

    def _consider(self, rid: int, req: _Request, final: bool) -> None:
        if req.phase != "propose":
            return
        views: dict = {}
        for v, res in req.replies.values():
            views.setdefault(v, []).append(res)
        top = max(views)
        results = views[top]
        counts: dict = {}
        for r in results:
            counts[r] = counts.get(r, 0) + 1
        best = max(counts.values())
        if best >= superquorum(self.f):  # fast path
            result = next(r for r, c in counts.items() if c == best)
            self.stats["fast"] += 1
            for i in range(self.n):
                self._send(i, ("FC", req.cid, rid, req.op, result))
            self._finish(rid, req, result)
            return
        if len(results) < self.f + 1:
            return
        if not final and len(results) < self.n:
            if req.fast_timer is None:  # wait a little for a super-quorum
                req.fast_timer = self.ep.call_later(
                    self.fast_wait, lambda: self._consider(rid, req, final=True))
            return
        self._slow_path(rid, req, req.result(results))

    def _slow_path(self, rid: int, req: _Request, result) -> None:
        self.stats["slow"] += 1
        req.phase = "finalize"
        req.result = result
        req.replies = {}
        if req.timer is not None:
            req.timer.cancel()
        finalize = lambda: ("FC", req.cid, rid, req.op, req.result)  # noqa: E731
        for i in range(self.n):
            self._send(i, finalize())
        req.timer = self.ep.call_later(self.timeout, lambda: self._retransmit(
            rid, finalize, self._laggards))

    def _on_CF(self, msg) -> None:
        _, rid, view, idx, recorded = msg
        req = self.pending.get(rid)
        if req is None or req.phase != "finalize" or not 0 <= idx < self.n:
            return
        self.view = max(self.view, view)
        req.replies[idx] = (view, recorded)
        counts: dict = {}
        for vr in req.replies.values():
            counts[vr] = counts.get(vr, 0) + 1
        for (_v, res), c in counts.items():
            if c >= self.f + 1:
                self._finish(rid, req, res)
                return

    # -- unlogged ----------------------------------------------------------------------------
    def invoke_unlogged(self, op) -> Future:
        rid = self.next_rid()
        req = _Request(op, self)
        self.pending[rid] = req
        state = {"replica": self.read_replica}

        def send():
            self._send(state["replica"], ("U", self.cid, rid, op))

        def again():
            if req.future.done:
                return
            self.stats["retransmits"] += 1
            state["replica"] = (state["replica"] + 1) % self.n
            send()
            req.timer = self.ep.call_later(self.timeout, again)
        send()
        req.timer = self.ep.call_later(self.timeout, again)
        return req.future

    def _on_RU(self, msg) -> None:
        _, rid, result = msg
        req = self.pending.get(rid)
        if req is not None:
            self._finish(rid, req, result)

