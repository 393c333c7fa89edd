"""Python libraries built on Redis, unchanged, against persimmon-redis: RQ (a job queue:
enqueue, a burst worker, results), cachelib's RedisCache (Flask-Caching's backend) and
dogpile.cache's Redis backend.  They install from PyPI with the ``test`` extra."""

from __future__ import annotations

import math


def test_rq_enqueue_burst_worker_and_results(r):
    from rq import Queue, SimpleWorker

    q = Queue("persimmon", connection=r)
    jobs = [q.enqueue(math.factorial, n) for n in range(8)]
    assert q.count == 8
    w = SimpleWorker([q], connection=r)
    assert w.work(burst=True)  # processes every job, then returns
    for n, job in enumerate(jobs):
        job.refresh()
        assert job.get_status() == "finished"
        assert job.result == math.factorial(n)
    assert q.count == 0
    failing = q.enqueue(math.factorial, -1)  # ValueError in the job
    SimpleWorker([q], connection=r).work(burst=True)
    failing.refresh()
    assert failing.get_status() == "failed" and "ValueError" in failing.exc_info
    assert failing.id in q.failed_job_registry.get_job_ids()


def test_cachelib_redis_cache(r, server):
    from cachelib import RedisCache

    cache = RedisCache(host="127.0.0.1", port=server.port, key_prefix="app:",
                       default_timeout=100)
    assert cache.set("user:1", {"name": "ada", "tags": [1, 2]})
    assert cache.get("user:1") == {"name": "ada", "tags": [1, 2]}
    assert cache.add("user:1", "other") is False
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.get_many("a", "b", "missing") == [1, 2, None]
    assert cache.inc("hits") == 1 and cache.inc("hits", 5) == 6
    assert 0 < r.ttl("app:user:1") <= 100
    assert cache.delete("user:1") and cache.get("user:1") is None
    assert cache.has("a")
    cache.clear()
    assert not cache.has("a")


def test_dogpile_cache_redis_backend(server):
    from dogpile.cache import make_region

    region = make_region().configure(
        "dogpile.cache.redis", expiration_time=60,
        arguments={"host": "127.0.0.1", "port": server.port, "db": 0,
                   "redis_expiration_time": 120})
    calls = []

    @region.cache_on_arguments()
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert calls == [3, 4]  # the second square(3) came from persimmon-redis
    square.invalidate(3)
    assert square(3) == 9 and calls == [3, 4, 3]
    region.set_multi({"k1": "v1", "k2": "v2"})
    assert region.get_multi(["k1", "k2"]) == ["v1", "v2"]
    region.delete("k1")
    assert region.get("k1").__class__.__name__ == "NoValue"
