"""The transaction mixes of the persimmon-tapir benchmarks, shared by bench_tapir.py (real
UDP clusters) and bench_tapir_shadow.py (a replica's log, built in one process).

Each workload is a coroutine ``workload(core, rng, zipf) -> bool`` over a coordinator
(``TapirClient``: the real one or the simulated cluster's): it runs one transaction and
returns whether it committed.
"""

from __future__ import annotations

import bisect
import random

VALUE = b"v" * 64


class Zipf:
    def __init__(self, n: int, theta: float) -> None:
        weights = [1.0 / (i + 1) ** theta for i in range(n)]
        total = sum(weights)
        acc, self.cdf = 0.0, []
        for w in weights:
            acc += w / total
            self.cdf.append(acc)
        self.n = n

    def key(self, rng: random.Random) -> bytes:
        return b"key-%08d" % min(bisect.bisect_left(self.cdf, rng.random()), self.n - 1)


async def retwis(core, rng, zipf) -> bool:
    """TAPIR's Retwis mix: add-user 5 %, follow 15 %, post-tweet 30 %, get-timeline 50 %."""
    t = core.begin()
    kind = rng.randrange(100)
    if kind < 5:  # add user
        await t.get(zipf.key(rng))
        for _ in range(3):
            t.put(zipf.key(rng), VALUE)
    elif kind < 20:  # follow
        for _ in range(2):
            k = zipf.key(rng)
            await t.get(k)
            t.put(k, VALUE)
    elif kind < 50:  # post tweet
        for _ in range(3):
            k = zipf.key(rng)
            await t.get(k)
            t.put(k, VALUE)
        for _ in range(2):
            t.put(zipf.key(rng), VALUE)
    else:  # get timeline
        for _ in range(rng.randint(1, 10)):
            await t.get(zipf.key(rng))
    return await t.commit()


async def rwmix(core, rng, zipf) -> bool:
    """Half the transactions read 2 keys and write them, half read 4."""
    t = core.begin()
    if rng.random() < 0.5:
        for _ in range(2):
            k = zipf.key(rng)
            await t.get(k)
            t.put(k, VALUE)
    else:
        for _ in range(4):
            await t.get(zipf.key(rng))
    return await t.commit()


WORKLOADS = {"retwis": retwis, "rw-mix": rwmix}
