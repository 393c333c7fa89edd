"""An IR replica running TAPIR-KV (Zhang et al., SOSP 2015, sections 3 and 5).

Transport-agnostic: it gets datagrams through :meth:`IRReplica.receive` and talks through an
endpoint ``ep`` (``send(dst, msg)``, ``call_later(delay, cb)``, ``call_soon(cb)``, ``now()``).
Every change of the replica's state is an operation of its state machine run through the
persistence object ``sm`` (``sm.rw(op)``); replies wait in an outbox that is sent only after
``sm.commit()``, so nothing a peer or client sees can be lost by a crash of this replica.
"""

from __future__ import annotations

import logging
import random

from . import store
from .protocol import REPLICA_MESSAGES, check_replica_message
from .state import NORMAL, RECOVERING, VIEW_CHANGE, logged_op
from .wire import MessageError, decode, encode

__all__ = ["IRReplica"]

log = logging.getLogger("persimmon_tapir.replica")

_PEER_MESSAGES = frozenset({"DVC", "SV", "RQ", "RR"})  # (only from the shard's replicas)


class IRReplica:
    def __init__(self, ep, peers: list, index: int, sm, f: int = 1,
                 view_change_timeout: float = 1.0, rng: random.Random | None = None) -> None:
        self.ep, self.peers, self.idx, self.sm, self.f = ep, list(peers), index, sm, f
        self.n = len(self.peers)
        self._peer_set = {tuple(p) for p in self.peers}
        self.vc_timeout = view_change_timeout
        self.rng = rng or random.Random()
        self.bad_messages = 0
        self._out: list = []
        self._flush_pending = False
        self._dvcs: dict = {}
        self._vc_timer = None
        self._vc_failures = 0
        self._rq_timer = None
        self._rq_nonce = 0
        self._rq_replies: dict = {}
        self._closed = False
        self.backup = None  # a BackupCoordinator, when the replica knows the whole cluster

    @property
    def state(self):
        return self.sm.state

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        st = self.state.status
        if st == RECOVERING:
            if self.state.view > 0:  # was recovering a view change when it stopped
                self._start_view_change(self.state.view)
            else:
                self._recovery_query()
        elif st == VIEW_CHANGE:
            self._start_view_change(self.state.view)

    def stop(self) -> None:
        if self.backup is not None:
            self.backup.stop()
        if not self._closed:
            self.sm.commit()  # (no reply is owed, but what was run stays run)
        self._closed = True
        for t in (self._vc_timer, self._rq_timer):
            if t is not None:
                t.cancel()

    def request_view_change(self) -> None:
        """Start a view change to the next view (what a replica does when it suspects a
        failure, and what the simulator does to exercise merges)."""
        if not self._closed and self.state.status == NORMAL:
            self._start_view_change(self.state.view + 1)

    def leader(self, view: int) -> int:
        return view % self.n

    # -- I/O --------------------------------------------------------------------------------
    def receive(self, src, data: bytes) -> None:
        if self._closed:
            return
        try:
            msg = decode(data, REPLICA_MESSAGES)
            check_replica_message(msg)
        except MessageError as e:
            self.bad_messages += 1
            if self.bad_messages <= 10 or self.bad_messages % 1000 == 0:
                log.warning("replica %d: dropped a bad datagram from %s (%d so far): %s",
                            self.idx, src, self.bad_messages, e)
            return
        if msg[0] in _PEER_MESSAGES and tuple(src) not in self._peer_set:
            self.bad_messages += 1
            if self.bad_messages <= 10:
                log.warning("replica %d: dropped %s from %s, which is not a peer", self.idx,
                            msg[0], src)
            return
        getattr(self, "_on_" + msg[0])(src, msg)

    def _rw(self, op):
        """Run a state machine operation; it is made durable at the next flush (soon)."""
        result = self.sm.rw(op)
        self._schedule_flush()
        return result

    def _send(self, dst, msg: tuple) -> None:
        self._out.append((dst, msg))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.ep.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._closed:
            return
        self.sm.commit()  # everything the replies depend on is durable first
        out, self._out = self._out, []
        for dst, msg in out:
            self.ep.send(dst, encode(msg))

    def _broadcast(self, msg: tuple) -> None:
        for i, addr in enumerate(self.peers):
            if i != self.idx:
                self._send(addr, msg)

    # -- normal operation -----------------------------------------------------------------
    def _check_view_hint(self, hint: int) -> bool:
        """A client has seen a later view than ours: we missed it; catch up by a view change."""
        if hint > self.state.view and self.state.status == NORMAL:
            self._start_view_change(hint + 1)
            return False
        return True

    def _on_PI(self, src, msg):  # ("PI", cid, rid, view hint, op)
        if self.state.status != NORMAL or not self._check_view_hint(msg[3]):
            return
        self._rw(logged_op(msg))
        self._send(src, ("RI", msg[2], self.state.view, self.idx))

    def _on_FI(self, src, msg):  # ("FI", cid, rid, op)
        if self.state.status != NORMAL:
            return
        self._rw(logged_op(msg))

    def _on_PC(self, src, msg):  # ("PC", cid, rid, view hint, op)
        if self.state.status != NORMAL or not self._check_view_hint(msg[3]):
            return
        result, finalized = self._rw(logged_op(msg))
        self._send(src, ("RC", msg[2], self.state.view, self.idx, result, finalized))

    def _on_FC(self, src, msg):  # ("FC", cid, rid, op, result)
        if self.state.status != NORMAL:
            return
        recorded = self._rw(logged_op(msg))
        self._send(src, ("CF", msg[2], self.state.view, self.idx, recorded))

    def _on_U(self, src, msg):
        _, _cid, rid, op = msg
        if self.state.status == RECOVERING:
            return  # it has no state to read from
        self._send(src, ("RU", rid, store.get(self.state, op[1])))

    # -- view change (IR section 3.2.2) ------------------------------------------------------
    def _start_view_change(self, new_view: int) -> None:
        s = self.state
        status = RECOVERING if s.status == RECOVERING else VIEW_CHANGE
        if new_view != s.view or status != s.status:
            self._rw(("vc", new_view, status, s.latest_normal_view))  # durable view number
        self._dvcs = {}
        lnv = s.latest_normal_view
        record = None if status == RECOVERING else s.record_entries()
        leader = self.leader(new_view)
        for i, addr in enumerate(self.peers):
            if i == self.idx:
                continue
            self._send(addr, ("DVC", new_view, lnv, self.idx, record if i == leader else None))
        if leader == self.idx and record is not None:
            self._dvcs[self.idx] = (lnv, record)
        self._arm_vc_timer()

    def _arm_vc_timer(self) -> None:
        if self._vc_timer is not None:
            self._vc_timer.cancel()
        view = self.state.view
        # randomized, and doubled after every view change that did not finish: a view
        # change that moves a large record can take longer than the base timeout
        delay = self.vc_timeout * (1 + self.rng.random()) * (2 ** min(self._vc_failures, 5))

        def expired():
            self._vc_timer = None
            if not self._closed and self.state.status != NORMAL and self.state.view == view:
                self._vc_failures += 1
                nxt = view + 1
                while self.state.status == RECOVERING and self.leader(nxt) == self.idx:
                    nxt += 1
                self._start_view_change(nxt)
        self._vc_timer = self.ep.call_later(delay, expired)

    def _on_DVC(self, src, msg):
        _, new_view, lnv, sender, record = msg
        s = self.state
        if new_view < s.view or not 0 <= sender < self.n or sender == self.idx:
            return
        if new_view == s.view and s.status == NORMAL:
            if self.leader(s.view) == self.idx:  # it missed our START-VIEW
                self._send(self.peers[sender], ("SV", s.view, s.record_entries()))
            return
        if new_view > s.view:
            self._start_view_change(new_view)
        if self.leader(new_view) != self.idx or s.status == RECOVERING:
            return
        if record is not None and lnv >= 0:
            self._dvcs[sender] = (lnv, record)
        if len(self._dvcs) < self.f + 1:
            return
        top = max(v for v, _ in self._dvcs.values())
        records = tuple(r for v, r in self._dvcs.values() if v == top)
        master = self._rw(("merge", new_view, records))
        log.info("shard %d replica %d: view %d started (merged %d records, %d entries)",
                 self.state.ident[1], self.idx, new_view, len(records), len(master))
        self._dvcs = {}
        self._vc_failures = 0
        if self._vc_timer is not None:
            self._vc_timer.cancel()
            self._vc_timer = None
        self._broadcast(("SV", new_view, master))

    def _on_SV(self, src, msg):
        _, new_view, entries = msg
        s = self.state
        if new_view < s.view or (new_view == s.view and s.status == NORMAL):
            return
        if self.leader(new_view) == self.idx:
            return
        self._rw(("install", new_view, entries))
        log.info("shard %d replica %d: joined view %d (%d entries)", self.state.ident[1],
                 self.idx, new_view, len(entries))
        self._vc_failures = 0
        if self._vc_timer is not None:
            self._vc_timer.cancel()
            self._vc_timer = None

    # -- recovery of a replica that lost its state (in-memory mode) -------------------------
    def _recovery_query(self) -> None:
        self._rq_nonce = self.rng.getrandbits(62)
        self._rq_replies = {}
        self._broadcast(("RQ", self.idx, self._rq_nonce))

        def again():
            self._rq_timer = None
            if not self._closed and self.state.status == RECOVERING and self.state.view == 0:
                self._recovery_query()
        self._rq_timer = self.ep.call_later(self.vc_timeout * (1 + self.rng.random()), again)

    def _on_RQ(self, src, msg):
        _, sender, nonce = msg
        if not 0 <= sender < self.n:
            return
        s = self.state
        history = bool(s.record) or s.view > 0
        self._send(self.peers[sender], ("RR", nonce, self.idx, s.view, s.status,
                                         s.latest_normal_view, history, s.ident[0]))

    def _on_RR(self, src, msg):
        _, nonce, sender, view, status, lnv, history, cluster = msg
        s = self.state
        if cluster != s.ident[0] or nonce != self._rq_nonce or s.status != RECOVERING or s.view > 0:
            return
        if not 0 <= sender < self.n or sender == self.idx:
            return
        self._rq_replies[sender] = (view, status, lnv, history)
        if any(h for _, _, _, h in self._rq_replies.values()):
            if sum(1 for _, st, lv, _ in self._rq_replies.values() if lv >= 0) < 1:
                return
            top = max(v for v, _, _, _ in self._rq_replies.values())
            nxt = top + 1
            while self.leader(nxt) == self.idx:
                nxt += 1
            if self._rq_timer is not None:
                self._rq_timer.cancel()
                self._rq_timer = None
            log.info("shard %d replica %d: recovering by a view change to %d",
                     self.state.ident[1], self.idx, nxt)
            self._start_view_change(nxt)
        elif len(self._rq_replies) == self.n - 1:
            # no replica has any history: a new cluster
            if self._rq_timer is not None:
                self._rq_timer.cancel()
                self._rq_timer = None
            self._rw(("vc", 0, NORMAL, 0))
            log.info("shard %d replica %d: new cluster, view 0", self.state.ident[1], self.idx)
