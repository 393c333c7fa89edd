"""A deterministic simulated network and clock that runs a whole cluster in one process.

From a seed: each datagram is dropped, duplicated and delayed (so reordered) at random;
partitions cut pairs of nodes; a crashed node's timers and in-flight deliveries vanish.
Time is virtual (seconds); nothing sleeps.  :class:`SimCluster` builds shards of IR replicas
running TAPIR-KV, clients, and crash/restart of replicas with durable (persistent) or lost
(in-memory) state.
"""

from __future__ import annotations

import copy
import heapq
import random
from collections.abc import Callable

from .backup import BackupCoordinator
from .config import ClusterConfig
from .coordinator import TapirClient
from .ir_replica import IRReplica
from .persistence import InMemory
from .state import ReplicaState
from .tasks import Future

__all__ = ["SimNet", "SimCluster", "Durable"]


class _Timer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimNet:
    def __init__(self, seed: int, drop: float = 0.0, dup: float = 0.0,
                 delay: tuple = (0.0002, 0.002)) -> None:
        self.rng = random.Random(seed)
        self.drop, self.dup, self.delay = drop, dup, delay
        self.time = 0.0
        self._q: list = []
        self._seq = 0
        self.nodes: dict = {}   # addr -> receive(src, data)
        self.gen: dict = {}     # addr -> incarnation
        self.cut: set = set()   # frozenset({a, b}) pairs that cannot talk
        self.sent = self.dropped = 0

    def _push(self, t: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, fn))

    def endpoint(self, addr, receive) -> SimEndpoint:
        self.gen[addr] = self.gen.get(addr, 0) + 1
        self.nodes[addr] = receive
        return SimEndpoint(self, addr, self.gen[addr])

    def crash(self, addr) -> None:
        self.gen[addr] = self.gen.get(addr, 0) + 1
        self.nodes.pop(addr, None)

    def partition(self, a, b) -> None:
        self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()

    def deliver(self, src, dst, data: bytes) -> None:
        self.sent += 1
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            if self.rng.random() < self.drop:
                self.dropped += 1
                continue
            t = self.time + self.rng.uniform(*self.delay)
            self._push(t, lambda d=data: self._arrive(src, dst, d))

    def _arrive(self, src, dst, data: bytes) -> None:
        if frozenset((src, dst)) in self.cut:
            self.dropped += 1
            return
        recv = self.nodes.get(dst)
        if recv is not None:
            recv(src, data)

    def run_until(self, done: Callable[[], bool], limit: float = 600.0) -> None:
        end = self.time + limit
        while not done():
            if not self._q:
                raise RuntimeError("simulation ran out of events")
            t, _, fn = heapq.heappop(self._q)
            if t > end:
                raise TimeoutError(f"simulation did not finish within {limit} virtual seconds")
            self.time = max(self.time, t)
            fn()

    def run_for(self, seconds: float) -> None:
        end = self.time + seconds
        while self._q and self._q[0][0] <= end:
            t, _, fn = heapq.heappop(self._q)
            self.time = max(self.time, t)
            fn()
        self.time = end


class SimEndpoint:
    def __init__(self, net: SimNet, addr, gen: int) -> None:
        self.net, self.addr, self.gen = net, addr, gen

    def _alive(self) -> bool:
        return self.net.gen.get(self.addr) == self.gen

    def send(self, dst, data: bytes) -> None:
        if self._alive():
            self.net.deliver(self.addr, dst, data)

    def call_later(self, delay: float, cb: Callable[[], None]) -> _Timer:
        t = _Timer()

        def fire():
            if not t.cancelled and self._alive():
                cb()
        self.net._push(self.net.time + delay, fire)
        return t

    def call_soon(self, cb: Callable[[], None]) -> _Timer:
        return self.call_later(0.0, cb)

    def now(self) -> float:
        return self.net.time


class Durable:
    """Persistence as the simulator sees it: the state survives a crash of the replica.

    (What a PSM guarantees: every operation run before the replica's replies went out is
    there after the restart.)  The state is deep-copied at a crash so the restarted replica
    shares nothing volatile with the old one.
    """

    mode, recovered = "durable", False

    def __init__(self, ident: tuple, state: ReplicaState | None = None) -> None:
        self.state = state if state is not None else ReplicaState(ident)
        self.recovered = state is not None
        self.rw = self.state.apply

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class SimCluster:
    def __init__(self, seed: int, shards: int = 2, f: int = 1, durable: bool = True,
                 drop: float = 0.0, dup: float = 0.0, delay: tuple = (0.0002, 0.002),
                 timeout: float = 0.05, view_change_timeout: float = 0.3,
                 backup_timeout: float | None = 1.0) -> None:
        self.net = SimNet(seed, drop, dup, delay)
        self.rng = random.Random(seed ^ 0x5EED)
        self.f, self.n, self.durable = f, 2 * f + 1, durable
        self.timeout, self.vct = timeout, view_change_timeout
        self.config = ClusterConfig(seed & 0xFFFF, f, tuple(
            tuple(("r", s, i) for i in range(self.n)) for s in range(shards)))
        self.replicas: dict = {}
        self.sms: dict = {}
        self.backup_timeout = backup_timeout
        self._bid = 0
        for s in range(shards):
            for i in range(self.n):
                ident = self.config.ident(s, i)
                sm = Durable(ident) if durable else InMemory(ident)
                if not durable:  # a brand-new in-memory cluster starts in view 0
                    sm.rw(("vc", 0, "normal", 0))
                self.sms[(s, i)] = sm
                self._boot(s, i)
        self._cid = 0

    def _boot(self, s: int, i: int) -> None:
        addr = ("r", s, i)
        holder: list = []
        ep = self.net.endpoint(addr, lambda src, data: holder[0].receive(src, data))
        rep = IRReplica(ep, list(self.config.shards[s]), i, self.sms[(s, i)], self.f,
                        self.vct, random.Random(self.rng.getrandbits(32)))
        holder.append(rep)
        self.replicas[(s, i)] = rep
        if self.backup_timeout is not None:
            rep.backup = BackupCoordinator(rep, lambda: self._backup_client(s, i),
                                           self.backup_timeout, self.backup_timeout / 4)
        rep.start()

    def _backup_client(self, s: int, i: int):
        self._bid += 1
        addr = ("b", s, i, self._bid)
        holder: list = []
        ep = self.net.endpoint(addr, lambda src, data: holder[0].receive(src, data))
        net = self.net
        c = TapirClient(ep, list(self.config.shards), self.f, (1 << 38) + self._bid,
                        lambda: int(net.time * 1e6) + 1, timeout=self.timeout,
                        first_rid=1 << 60)
        holder.append(c)
        return c, lambda: net.crash(addr)

    def crash(self, s: int, i: int) -> None:
        self.replicas[(s, i)].stop()
        self.net.crash(("r", s, i))
        ident = self.config.ident(s, i)
        if self.durable:
            self.sms[(s, i)] = Durable(ident, copy.deepcopy(self.sms[(s, i)].state))
        else:
            self.sms[(s, i)] = InMemory(ident)

    def restart(self, s: int, i: int) -> None:
        self._boot(s, i)

    def client(self, skew: float = 0.0) -> TapirClient:
        self._cid += 1
        cid = self._cid
        holder: list = []
        ep = self.net.endpoint(("c", cid), lambda src, data: holder[0].receive(src, data))
        net = self.net
        c = TapirClient(ep, list(self.config.shards), self.f, cid,
                        lambda: int((net.time + skew) * 1e6) + 1, timeout=self.timeout)
        holder.append(c)
        return c

    def run(self, fut: Future, limit: float = 600.0):
        self.net.run_until(lambda: fut.done, limit)
        return fut.result()
