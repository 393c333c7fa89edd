"""Stream keyspace events (class ``t``), compared with a real redis-server 7.0: the same
commands run on both and the events each publishes must be the same, in the same order.
The persimmon server runs in verify mode, so the shadow re-executing the operations (which
publishes nothing) must also keep the PM copy equal to the DRAM copy."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from conftest import ServerProc

END = b"end-of-script"


def _events(c: redis.Redis, script) -> list:
    """Run ``script(c)`` with every keyspace event on; the events it published."""
    c.flushall()
    c.config_set("notify-keyspace-events", "KEA")
    sub = redis.Redis(port=c.connection_pool.connection_kwargs["port"]).pubsub()
    try:
        sub.psubscribe("__key*__:*", END)
        for _ in range(2):
            assert sub.get_message(timeout=5)["type"] == "psubscribe"
        script(c)
        c.publish(END, b"")
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = sub.get_message(timeout=1)
            if m is None or m["type"] != "pmessage":
                continue
            if m["channel"] == END:
                return got
            got.append((m["channel"], m["data"]))
        pytest.fail(f"the script's events did not arrive; got {got}")
    finally:
        sub.close()
        c.config_set("notify-keyspace-events", "")


def _wait_blocked(c: redis.Redis, n: int) -> None:
    deadline = time.monotonic() + 10
    while c.info("clients")["blocked_clients"] < n:
        assert time.monotonic() < deadline, "the reader never blocked"
        time.sleep(0.02)


def _stream_script(c: redis.Redis) -> None:
    x = c.execute_command
    x("XADD", "s", "1-1", "f", "v")  # new key: new, xadd
    x("XADD", "s", "2-1", "f", "v")
    x("XADD", "s", "MAXLEN", "2", "3-1", "f", "v")  # xadd then xtrim
    x("XADD", "s", "MAXLEN", "5", "4-1", "f", "v")  # nothing trimmed: xadd only
    assert x("XADD", "nostream", "NOMKSTREAM", "*", "f", "v") is None  # nothing
    x("XTRIM", "s", "MAXLEN", "10")  # nothing removed: no event
    x("XTRIM", "s", "MAXLEN", "2")
    x("XDEL", "s", "99-1")  # nothing deleted: no event
    x("XDEL", "s", "4-1")
    x("XGROUP", "CREATE", "g", "grp", "$", "MKSTREAM")  # new, xgroup-create
    x("XGROUP", "CREATE", "s", "grp", "0")
    with pytest.raises(redis.ResponseError):  # BUSYGROUP: no event
        x("XGROUP", "CREATE", "s", "grp", "0")
    x("XGROUP", "CREATECONSUMER", "s", "grp", "bob")
    x("XGROUP", "CREATECONSUMER", "s", "grp", "bob")  # exists: no event
    x("XREADGROUP", "GROUP", "grp", "alice", "COUNT", "1", "STREAMS", "s", ">")
    x("XREADGROUP", "GROUP", "grp", "alice", "STREAMS", "s", ">")  # known consumer
    x("XCLAIM", "s", "grp", "mike", "0", "3-1")
    x("XAUTOCLAIM", "s", "grp", "bob", "0", "0")
    x("XAUTOCLAIM", "s", "grp", "zed", "0", "0")
    x("XGROUP", "DELCONSUMER", "s", "grp", "nobody")  # no such consumer: no event
    x("XGROUP", "DELCONSUMER", "s", "grp", "mike")
    x("XGROUP", "SETID", "s", "grp", "0")
    x("XSETID", "s", "9-9")
    x("XGROUP", "DESTROY", "s", "nogroup")  # no event
    x("XGROUP", "DESTROY", "g", "grp")
    x("XGROUP", "CREATE", "s", "g2", "$")
    # a blocked XREADGROUP served by an XADD: xadd, then the consumer's creation
    reader = redis.Redis(port=c.connection_pool.connection_kwargs["port"])
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", reader.execute_command(
        "XREADGROUP", "GROUP", "g2", "carol", "BLOCK", "10000", "STREAMS", "s", ">")))
    t.start()
    _wait_blocked(c, 1)
    x("XADD", "s", "10-1", "f", "v")
    t.join(15)
    reader.close()
    assert out.get("r"), "the blocked reader was not served"
    # inside a transaction (one operation): the same events, command by command
    p = c.pipeline(transaction=True)
    p.execute_command("XADD", "s", "MAXLEN", "1", "11-1", "f", "v")
    p.execute_command("XADD", "s", "12-1", "f", "v")
    p.execute_command("XREADGROUP", "GROUP", "g2", "dave", "STREAMS", "s", ">")
    p.execute_command("XGROUP", "CREATECONSUMER", "s", "g2", "erin")
    p.execute_command("XGROUP", "DELCONSUMER", "s", "g2", "erin")
    p.execute_command("XDEL", "s", "11-1")
    p.execute()
    x("DEL", "s")  # del (class g)


@pytest.fixture(scope="module")
def verify_server():
    s = ServerProc("persimmon", extra=("--verify",)).start()
    yield s
    s.cleanup()


def test_stream_events_match_redis(verify_server, real_redis):
    c = verify_server.client()
    ours = _events(c, _stream_script)
    theirs = _events(real_redis, _stream_script)
    assert ours == theirs
    names = [d for ch, d in ours if ch.startswith(b"__keyspace@")]
    assert names.count(b"xgroup-createconsumer") == 7 and b"xtrim" in names  # (not vacuous)
    info = c.info("persimmon")
    assert info["diverged"] == 0 and info["shadow_errors"] == 0, info.get("shadow_message")
    c.close()


def test_stream_events_obey_the_t_class(server, real_redis):
    """Only class ``t`` (or ``A``) enables stream events; ``K``/``E`` choose the channels."""
    def script(c: redis.Redis) -> None:
        c.config_set("notify-keyspace-events", "Et")
        c.execute_command("XADD", "s", "1-1", "f", "v")
        c.config_set("notify-keyspace-events", "Kg")
        c.execute_command("XADD", "s", "2-1", "f", "v")  # no t: nothing
        c.execute_command("DEL", "s")

    ours = _events(server.client(), script)
    assert ours == _events(real_redis, script)
    assert ours == [(b"__keyevent@0__:xadd", b"s"), (b"__keyspace@0__:s", b"del")]
