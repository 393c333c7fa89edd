"""Python libraries built on Redis, unchanged, against persimmon-redis: RQ (a job queue:
enqueue, a burst worker, results), Celery (a worker subprocess, persimmon-redis as broker and
result backend), cachelib's RedisCache (Flask-Caching's backend) and dogpile.cache's Redis
backend.  They install from PyPI with the ``test`` extra."""

from __future__ import annotations

import gc
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ServerProc


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


def test_celery_worker_with_persimmon_redis_as_broker_and_result_backend(tmp_path):
    """A real Celery worker (solo pool, its own process) takes tasks from persimmon-redis
    (lists, BRPOP, pub/sub) and stores results there (SET + PUBLISH in a transaction);
    chains, groups and a chord (its parts gathered with RPUSH/LLEN in a transaction) come
    back, a failing task raises its error; results survive a SIGKILL of the server."""
    import celery_tasks as t
    from celery import chain, chord, group
    from celery.result import AsyncResult

    srv = ServerProc("persimmon").start()
    url = f"redis://127.0.0.1:{srv.port}/0"
    t.app.conf.update(broker_url=url, result_backend=url)
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_tasks", "-b", url, "--result-backend",
         url, "worker", "--pool", "solo", "--concurrency", "1", "--without-gossip",
         "--loglevel", "INFO", "--hostname", f"persimmon-test-{srv.port}@localhost"],
        cwd=os.path.dirname(__file__), stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, C_FORCE_ROOT="1"))
    try:
        deadline = time.monotonic() + 30  # the worker answers a broadcast ping when ready
        while not t.app.control.ping(timeout=0.5):
            assert worker.poll() is None and time.monotonic() < deadline, (
                (tmp_path / "worker.log").read_text())
        assert t.add.delay(2, 3).get(timeout=20) == 5
        failing = t.fail.delay("boom")
        with pytest.raises(ValueError, match="boom"):
            failing.get(timeout=20)
        assert failing.state == "FAILURE"
        assert chain(t.add.s(1, 2), t.add.s(3)).apply_async().get(timeout=20) == 6
        assert group(t.add.s(i, i) for i in range(5)).apply_async().get(timeout=20) == [
            0, 2, 4, 6, 8]
        kept = chord((t.add.s(i, 10) for i in range(4)), t.total.s()).apply_async()
        assert kept.get(timeout=20) == 46
        kept_id = kept.id
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        assert worker.wait(20) == 0, (tmp_path / "worker.log").read_text()
        # (results unsubscribe from their channels when collected: before the server goes)
        del failing, kept
        gc.collect()
        t.app.backend.result_consumer.stop()
        t.app.pool.force_close_all()
        t.app.backend.client.connection_pool.disconnect()
        srv.kill()  # a power failure: the stored results survive
        srv.start()
        again = AsyncResult(kept_id, app=t.app)
        assert again.state == "SUCCESS" and again.result == 46
        del again
        gc.collect()
        t.app.backend.client.connection_pool.disconnect()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
        srv.cleanup()
