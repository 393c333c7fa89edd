"""Real clients against the server: redis-py (sync, asyncio, pipelines, transactions,
pub/sub, blocking commands), redis-cli and redis-benchmark."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest
import redis
import redis.asyncio as aioredis


def test_pipeline_and_transaction(r):
    with r.pipeline(transaction=False) as p:
        for i in range(200):
            p.set(f"k{i}", i)
        p.get("k199")
        out = p.execute()
    assert out[-1] == b"199" and all(out[:200])
    with r.pipeline(transaction=True) as p:
        p.incr("ctr").incr("ctr").lpush("l", "a").lrange("l", 0, -1)
        assert p.execute() == [1, 2, 1, [b"a"]]


def test_watch_aborts_on_concurrent_change(r, server):
    r.set("w", 1)
    other = server.client()
    with r.pipeline() as p:
        p.watch("w")
        other.set("w", 2)
        p.multi()
        p.set("w", 3)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("w") == b"2"
    with r.pipeline() as p:
        p.watch("w")
        p.multi()
        p.set("w", 4)
        assert p.execute() == [True]
    assert r.get("w") == b"4"
    other.close()


def test_exec_abort_on_queue_error(r):
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() == b"OK"
        conn.send_command("SET", "a")
        with pytest.raises(redis.ResponseError, match="wrong number"):
            conn.read_response()
        conn.send_command("EXEC")
        with pytest.raises(redis.exceptions.ExecAbortError, match="discarded"):
            conn.read_response()
    finally:
        r.connection_pool.release(conn)


def test_pubsub(r, server):
    sub = server.client().pubsub()
    sub.subscribe("news")
    sub.psubscribe("ne*")
    assert sub.get_message(timeout=2)["type"] == "subscribe"
    assert sub.get_message(timeout=2)["type"] == "psubscribe"
    assert r.publish("news", "hello") == 2
    got = [sub.get_message(timeout=2) for _ in range(2)]
    assert {m["type"] for m in got} == {"message", "pmessage"}
    assert all(m["data"] == b"hello" for m in got)
    assert r.pubsub_numsub("news") == [(b"news", 1)]
    sub.close()


def test_blocking_pops(r, server):
    other = server.client()
    res = {}

    def waiter():
        res["v"] = other.blpop(["q1", "q2"], timeout=5)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    r.rpush("q2", "job")
    t.join(10)
    assert res["v"] == (b"q2", b"job")
    t0 = time.monotonic()
    assert other.brpop(["empty"], timeout=0.3) is None
    assert time.monotonic() - t0 >= 0.25
    r.zadd("zq", {"m": 1})
    assert other.bzpopmin("zq", timeout=1) == (b"zq", b"m", 1.0)
    r.rpush("src", "x")
    assert other.blmove("src", "dst", 1, "LEFT", "RIGHT") == b"x"
    assert r.lrange("dst", 0, -1) == [b"x"]
    other.close()


def test_asyncio_client(server):
    async def main():
        c = aioredis.Redis(port=server.port)
        await c.set("async", "yes")
        async with c.pipeline(transaction=True) as p:
            p.incr("ai")
            p.get("async")
            out = await p.execute()
        await c.aclose()
        return out

    assert asyncio.run(main()) == [1, b"yes"]


def test_expiry_lazy_and_active(r):
    r.set("t1", "v", px=100)
    r.set("t2", "v", px=100)
    assert r.pttl("t1") > 0
    time.sleep(0.3)
    assert r.get("t1") is None and r.exists("t1") == 0
    # the active cycle deletes t2 without anybody touching it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = r.info("stats")
        if info["expired_keys"] >= 1:
            break
        time.sleep(0.1)
    assert r.info("stats")["expired_keys"] >= 1
    assert r.dbsize() == 0


def test_server_commands(r, server):
    assert r.ping() and r.echo("hi") == b"hi"
    info = r.info()
    assert "redis_version" in info and "connected_clients" in info
    if server.mode == "persimmon":
        assert "ops_logged" in r.info("persimmon")
    assert r.config_get("databases") == {"databases": "16"}
    assert r.command_count() > 150
    assert r.client_id() > 0
    r.client_setname("me")
    assert r.client_getname() == "me"
    assert "name=me" in r.execute_command("CLIENT", "LIST").decode()
    assert len(r.time()) == 2
    assert r.save() and r.lastsave()
    assert r.dbsize() == 0


def test_redis_cli_and_inline(server):
    out = subprocess.run(["redis-cli", "-p", str(server.port), "SET", "cli", "a b"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "OK"
    out = subprocess.run(["redis-cli", "-p", str(server.port)], input="GET cli\nPING\n",
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.split("\n")[:2] == ["a b", "PONG"]


def test_redis_benchmark_runs_to_completion(server):
    out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-q", "-n", "2000",
                          "-c", "10", "-t", "set,get,incr,lpush,lpop,sadd,hset,zadd"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stdout.replace("\r", "\n").split("\n") if "requests per second" in x]
    assert len(lines) == 8, out.stdout
