"""Serializability under the simulated network with faults: drops, duplicates, reordering,
partitions, replica crashes and restarts (durable and in-memory state), forced view changes.
Each seed is a different deterministic run; the history of every client is checked against
TAPIR's timestamp order, and the final state against the last committed writes."""

from __future__ import annotations

import random

import pytest

from persimmon_tapir.simnet import SimCluster
from persimmon_tapir.tasks import spawn

from .history import History

KEYS = [b"k%d" % i for i in range(8)]


async def _client_work(cluster, c, rng, history, ntx):
    for n in range(ntx):
        t = c.begin()
        for key in rng.sample(KEYS, rng.randint(1, 3)):
            await t.get(key)
        for key in rng.sample(KEYS, rng.randint(0, 2)):
            t.put(key, b"c%d-t%d" % (c.cid, n))
        if rng.random() < 0.05:
            t.abort()
            continue
        history.add(t, await t.commit())


async def _sleep(net, ep_cluster, seconds):
    from persimmon_tapir.tasks import Future
    f = Future()
    ep_cluster.net._push(ep_cluster.net.time + seconds, lambda: f.set_result(None))
    await f


async def _faults(cluster, rng, stop, durable):
    """One replica per shard at most is down at any time (f = 1)."""
    shards = len(cluster.config.shards)
    while not stop():
        await _sleep(None, cluster, rng.uniform(0.05, 0.4))
        s, i = rng.randrange(shards), rng.randrange(cluster.n)
        what = rng.random()
        if what < 0.4:
            cluster.crash(s, i)
            await _sleep(None, cluster, rng.uniform(0.01, 0.5))
            cluster.restart(s, i)
            if not durable:  # an in-memory replica must finish its recovery first
                while cluster.replicas[(s, i)].state.status != "normal" and not stop():
                    await _sleep(None, cluster, 0.05)
        elif what < 0.7:
            cluster.replicas[(s, i)].request_view_change()
        else:
            a, b = ("r", s, i), ("c", rng.randint(1, 4))
            cluster.net.partition(a, b)
            await _sleep(None, cluster, rng.uniform(0.05, 0.3))
            cluster.net.heal()


def _run(seed: int, durable: bool, nclients: int = 4, ntx: int = 25):
    rng = random.Random(seed)
    cluster = SimCluster(seed, shards=2, durable=durable, drop=0.03, dup=0.03,
                         delay=(0.0002, 0.004))
    history = History()
    clients = [cluster.client(skew=rng.uniform(-0.002, 0.002)) for _ in range(nclients)]
    tasks = [spawn(_client_work(cluster, c, random.Random(rng.getrandbits(32)), history, ntx))
             for c in clients]
    done = lambda: all(t.done for t in tasks)  # noqa: E731
    faults = spawn(_faults(cluster, random.Random(seed + 1), done, durable))
    cluster.net.run_until(done, limit=3000)
    for t in tasks:
        t.result()
    cluster.net.run_until(lambda: faults.done, limit=100)
    faults.result()
    history.check()
    # every committed write is what a fresh transaction reads at the end
    cluster.net.heal()
    for s in range(len(cluster.config.shards)):
        for i in range(cluster.n):
            if (s, i) not in cluster.replicas:
                cluster.restart(s, i)
    final = cluster.client()

    async def read_all():
        while True:  # a read-only transaction that commits read the latest versions
            t = final.begin()
            got = {k: await t.get(k) for k in KEYS}
            if await t.commit():
                return got
    got = cluster.run(spawn(read_all()), limit=100)
    want = {k: v for k, (v, _ts) in history.latest().items()}
    assert {k: v for k, v in got.items() if v is not None} == want
    return history, cluster


@pytest.mark.parametrize("seed", range(12))
def test_history_serializable_durable_replicas(seed):
    history, cluster = _run(seed, durable=True)
    assert len(history.committed) > 20


@pytest.mark.parametrize("seed", range(100, 106))
def test_history_serializable_in_memory_replicas_recovering_by_view_change(seed):
    history, cluster = _run(seed, durable=False)
    assert len(history.committed) > 20


def test_checker_catches_a_stale_read():
    """The checker itself: a read that missed a committed write fails it."""
    h = History()
    h.committed.append(((10, 1), {}, {b"x": b"new"}))
    h.committed.append(((20, 2), {b"x": (None, (0, 0))}, {}))
    with pytest.raises(AssertionError, match="timestamp order"):
        h.check()


def test_fast_and_slow_paths_both_taken():
    """Without faults every prepare takes the fast path; with a replica down, the slow one."""
    cluster = SimCluster(7, shards=1)
    c = cluster.client()

    async def one(v):
        t = c.begin()
        await t.get(b"a")
        t.put(b"a", v)
        return await t.commit()
    assert cluster.run(spawn(one(b"1")))
    assert c.shard_stats()["fast"] == 1 and c.shard_stats()["slow"] == 0
    cluster.crash(0, 2)
    assert cluster.run(spawn(one(b"2")))
    assert c.shard_stats()["slow"] == 1
