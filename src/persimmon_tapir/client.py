"""The blocking client API over real UDP: ``Client(cluster.json).begin() -> Transaction``."""

from __future__ import annotations

import asyncio
import random
import time

from .config import ClusterConfig
from .coordinator import TapirClient, TransactionError, TxnCore
from .tasks import Future
from .udp import open_endpoint

__all__ = ["Client", "Transaction", "TransactionError"]


class Client:
    """A TAPIR client: one UDP socket, an event loop run only inside its calls."""

    def __init__(self, config: str | ClusterConfig, timeout: float = 0.25,
                 max_retries: int = 8) -> None:
        cfg = config if isinstance(config, ClusterConfig) else ClusterConfig.load(config)
        self.config = cfg
        self._loop = asyncio.new_event_loop()
        host = cfg.shards[0][0][0]
        self._ep = self._loop.run_until_complete(open_endpoint(self._loop, (host, 0)))
        cid = random.SystemRandom().getrandbits(39) | 1
        self.core = TapirClient(self._ep, list(cfg.shards), cfg.f, cid,
                                lambda: int(time.time() * 1e6), timeout, max_retries)
        self._ep.receiver = self.core.receive

    def run(self, fut: Future):
        """Run the event loop until ``fut`` (a protocol future) completes; its result."""
        if not fut.done:
            af = self._loop.create_future()
            fut.add_done_callback(lambda _f: af.done() or af.set_result(None))
            self._loop.run_until_complete(af)
        return fut.result()

    def begin(self) -> Transaction:
        return Transaction(self, self.core.begin())

    def close(self) -> None:
        self._ep.close()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Transaction:
    def __init__(self, client: Client, core: TxnCore) -> None:
        self._c, self.core = client, core

    def get(self, key: bytes) -> bytes | None:
        if type(key) is not bytes:
            raise TypeError("keys are bytes")
        return self._c.run(self.core.get(key))

    def put(self, key: bytes, value: bytes) -> None:
        self.core.put(key, value)

    def commit(self) -> bool:
        """True: committed (durable at f+1 replicas of every shard it touched)."""
        return self._c.run(self.core.commit())

    def abort(self) -> None:
        self.core.abort()
