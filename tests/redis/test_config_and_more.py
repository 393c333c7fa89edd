"""Configuration (redis.conf, requirepass, maxclients) and commands the differential
scripts do not reach: scans, random reads, multi-key pops, transactions across databases."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import redis

from conftest import ServerProc, free_port, wait_port


def test_redis_conf_and_requirepass(tmp_path):
    port = free_port()
    pool = f"/dev/shm/persimmon-conf-{port}"
    conf = tmp_path / "redis.conf"
    conf.write_text(f"# test\nport {port}\nbind 127.0.0.1\ndir {pool}\nrequirepass s3cret\n"
                    "databases 4\nmaxclients 3\nappendfsync always\nno-such-directive 1\n")
    log = open(tmp_path / "log", "wb")
    p = subprocess.Popen([sys.executable, "-m", "persimmon_redis", str(conf)], stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        wait_port(port, p)
        anon = redis.Redis(port=port)
        with pytest.raises(redis.AuthenticationError):
            anon.get("x")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="wrong").ping()
        c = redis.Redis(port=port, password="s3cret")
        assert c.set("x", 1) and c.get("x") == b"1"
        assert c.config_get("databases") == {"databases": "4"}
        with pytest.raises(redis.ResponseError, match="DB index is out of range"):
            c.execute_command("SELECT", "4")
        # maxclients 3: a fourth connection is refused with Redis's error
        extra = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(2)
        assert s.recv(100) == b"-ERR max number of clients reached\r\n"
        for x in [*extra, s]:
            x.close()
        anon.close()
        c.close()
        text = open(tmp_path / "log", "rb").read()
        assert b"'appendfsync' has no effect in persimmon-redis" in text
        assert b"ignoring unsupported directive 'no-such-directive'" in text
        assert c.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        p.terminate()
        p.wait(30)
        log.close()
        subprocess.run(["rm", "-rf", pool])


def _started(*args: str) -> subprocess.CompletedProcess:
    """persimmon-redis run with ``args`` until it exits (these tests expect it to refuse)."""
    return subprocess.run([sys.executable, "-m", "persimmon_redis", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "argument --port: argument must be between 0 and 65535 inclusive"),
    (["--databases", "0"], "argument --databases: argument must be between 1 and"),
    (["--maxclients", "-1"], "argument --maxclients: argument must be between 1 and"),
    (["--log-size", "0"], "argument --log-size: '0' is not a size"),
    (["--log-size", "64tb"], "argument --log-size: '64tb' is not a size"),
    (["--commit-overlap", "maybe"], "argument --commit-overlap: no, yes or a number"),
    (["--dir", "/etc/hostname/pool"],
     "cannot open the persistent pool in /etc/hostname/pool: Not a directory"),
])
def test_bad_command_line_values_are_refused_with_a_clear_error(args, message, tmp_path):
    """Out of Redis's ranges, or not a size, or a --dir that cannot hold a pool: the
    server says which and exits (status 2 for the arguments, as argparse does; 1 for the
    directory), without a traceback and without serving."""
    p = _started("--port", str(free_port()),
                 *(["--dir", str(tmp_path / "pool")] if "--dir" not in args else []), *args)
    assert p.returncode == (1 if "--dir" in args else 2)
    assert message in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "pool").exists()


def test_port_0_is_refused_as_redis_refuses_it_without_a_unix_socket(tmp_path):
    p = _started("--port", "0", "--dir", str(tmp_path / "pool"))
    assert p.returncode == 1 and "Configured to not listen anywhere, exiting." in p.stderr
    assert not (tmp_path / "pool").exists()


def test_a_port_in_use_is_a_clear_error_and_the_pool_is_closed(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = _started("--port", str(port), "--dir", str(tmp_path / "pool"))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"cannot listen on 127.0.0.1 port {port}: " in p.stderr
    assert "address already in use" in p.stderr.lower()
    # (closed: a second server opens the same pool at once)
    s = ServerProc(pool_dir=str(tmp_path / "pool")).start()
    try:
        assert s.client().ping()
    finally:
        s.stop()


def test_bad_values_in_a_redis_conf_are_refused_the_same_way(tmp_path):
    conf = tmp_path / "redis.conf"
    conf.write_text("port 6390\ndatabases 0\n")
    p = _started(str(conf))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert f"{conf}:2: bad value for 'databases': argument must be between 1 and" in p.stderr


def test_scans_visit_every_key(r):
    for i in range(237):
        r.set(f"k{i}", i)
    r.hset("h", mapping={f"f{i}": i for i in range(57)})
    r.sadd("s", *[f"m{i}" for i in range(61)])
    r.zadd("z", {f"z{i}": i for i in range(43)})
    assert {k.decode() for k in r.scan_iter(count=20)} >= {f"k{i}" for i in range(237)}
    assert set(r.scan_iter(match="k1*", count=7)) == {f"k{i}".encode() for i in range(237)
                                                     if str(i).startswith("1")}
    assert set(r.scan_iter(_type="hash")) == {b"h"}
    assert len(dict(r.hscan_iter("h", count=10))) == 57
    assert len(set(r.sscan_iter("s", count=10))) == 61
    assert len(list(r.zscan_iter("z", count=10))) == 43


def test_random_reads(r):
    r.sadd("s", "a", "b", "c")
    r.hset("h", mapping={"a": 1, "b": 2})
    r.zadd("z", {"a": 1, "b": 2})
    assert r.srandmember("s") in (b"a", b"b", b"c")
    assert len(r.srandmember("s", 2)) == 2 and len(r.srandmember("s", -5)) == 5
    assert r.hrandfield("h") in (b"a", b"b") and len(r.hrandfield("h", 2, True)) == 4
    assert r.zrandmember("z") in (b"a", b"b")
    assert r.randomkey() in (b"s", b"h", b"z")
    assert r.scard("s") == 3  # reads do not remove anything
    popped = r.spop("s", 2)
    assert len(popped) == 2 and r.scard("s") == 1


def test_multi_key_pops_and_blocking_variants(r, server):
    r.rpush("l1", "a", "b", "c")
    assert r.execute_command("BLMPOP", "1", "2", "nol", "l1", "RIGHT", "COUNT", "2") == \
        [b"l1", [b"c", b"b"]]
    r.zadd("z", {"a": 1, "b": 2})
    assert r.execute_command("BZMPOP", "1", "1", "z", "MAX") == [b"z", [[b"b", b"2"]]]
    assert r.execute_command("BLMPOP", "0.1", "1", "nol", "LEFT") is None


def test_transaction_across_databases(r):
    with r.pipeline() as p:
        p.set("a", "db0")
        p.execute_command("SELECT", "2")
        p.set("a", "db2")
        out = p.execute()
    assert out == [True, True, True]
    port = r.connection_pool.connection_kwargs["port"]
    r0, r2 = redis.Redis(port=port, db=0), redis.Redis(port=port, db=2)
    assert r2.get("a") == b"db2" and r0.get("a") == b"db0"
    r0.close()
    r2.close()
    r.connection_pool.disconnect()  # that connection was left in db 2, as Redis does


def test_slow_reader_is_bounded(tmp_path):
    conf = tmp_path / "redis.conf"
    port = free_port()
    pool = f"/dev/shm/persimmon-obuf-{port}"
    conf.write_text(f"port {port}\ndir {pool}\nclient-output-buffer-limit normal 1mb 0 0\n")
    p = subprocess.Popen([sys.executable, "-m", "persimmon_redis", str(conf), "--persistence",
                          "none"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, p)
        c = redis.Redis(port=port)
        c.set("big", b"x" * (256 * 1024))
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        req = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 200  # 50 MB of replies, never read
        try:
            s.sendall(req)
        except OSError:
            pass
        import time

        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            info = c.info("clients")
            closed = info["connected_clients"] == 1
            time.sleep(0.1)
        assert closed, "the slow reader was not disconnected"
        assert c.ping()
        s.close()
        c.close()
    finally:
        p.terminate()
        p.wait(30)
        subprocess.run(["rm", "-rf", pool])


def test_server_starts_in_none_mode_and_reports_bad_pool(tmp_path):
    bad = tmp_path / "pooldir"
    bad.mkdir()
    (bad / "persimmon-redis.pool").write_bytes(b"not a pool at all" * 500)
    srv = ServerProc("persimmon", pool_dir=str(bad))
    srv.logf = open(srv.log_path, "ab")
    out = subprocess.run([sys.executable, "-m", "persimmon_redis", "--port", str(srv.port),
                          "--dir", str(bad)], capture_output=True, text=True, timeout=60)
    srv.logf.close()
    assert out.returncode == 1
    assert "not a Persimmon pool" in out.stderr and "Traceback" not in out.stderr
    # a bad persist setting and a bad redis.conf value are refused the same way
    env = dict(os.environ, PERSIMMON_TMPFS_PERSIST="bogus")
    out = subprocess.run([sys.executable, "-m", "persimmon_redis", "--port", str(srv.port),
                          "--dir", f"/dev/shm/persimmon-badenv-{srv.port}"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "PERSIMMON_TMPFS_PERSIST='bogus'" in out.stderr
    subprocess.run(["rm", "-rf", f"/dev/shm/persimmon-badenv-{srv.port}"])
    conf = tmp_path / "bad.conf"
    conf.write_text(f"port {srv.port}\npersimmon-shadow-priority fast\n")
    out = subprocess.run([sys.executable, "-m", "persimmon_redis", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "bad value for 'persimmon-shadow-priority'" in out.stderr
    conf.write_text(f"port {srv.port}\npersimmon-commit-overlap sometimes\n")
    out = subprocess.run([sys.executable, "-m", "persimmon_redis", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "bad value for 'persimmon-commit-overlap'" in out.stderr


def test_transaction_with_connection_commands_is_one_operation(r, server):
    def logged():
        return int(r.info("persimmon").get("ops_logged", 0))

    before = logged()
    p = r.pipeline(transaction=True)
    p.set("tx1", 1).ping().incr("tx1").echo("hi").publish("nobody", "x").get("tx1")
    p.execute_command("TIME")
    res = p.execute()
    assert res[:6] == [True, True, 2, b"hi", 0, b"2"] and len(res[6]) == 2
    if server.mode == "persimmon":
        assert logged() == before + 1  # SET, INCR and GET went into the log as one EXEC
    # a command the server must resolve (SPOP) still runs, command by command
    r.sadd("txs", "a")
    p = r.pipeline(transaction=True)
    p.spop("txs").ping().set("tx2", 5)
    assert p.execute() == [b"a", True, True] and r.get("tx2") == b"5"


def test_connection_commands_in_a_write_transaction_keep_it_one_operation(r, server):
    # AUTH, HELLO, UNWATCH and SUBSCRIBE touch only the connection: they are answered in
    # their place around the EXEC's one operation (before, such a transaction ran command by
    # command and was not atomic across a crash).
    import hiredis

    before = int(r.info("persimmon").get("ops_logged", 0))
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        def send(*args):
            s.sendall(b"*%d\r\n" % len(args) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a), a) for a in args))

        for cmd in ([b"MULTI"], [b"SET", b"txc", b"1"], [b"AUTH", b"nopass"],
                    [b"HELLO", b"2"], [b"UNWATCH"], [b"INCR", b"txc"],
                    [b"SUBSCRIBE", b"txch"], [b"GET", b"txc"], [b"EXEC"]):
            send(*cmd)
        reader = hiredis.Reader()
        replies: list = []
        s.settimeout(10)
        while len(replies) < 9:
            reader.feed(s.recv(65536))
            while (x := reader.gets()) is not False:
                replies.append(x)
    assert replies[:8] == [b"OK"] + [b"QUEUED"] * 7
    res = replies[8]
    assert res[0] == b"OK" and isinstance(res[1], hiredis.ReplyError)
    assert res[2][:2] == [b"server", b"redis"] and res[3] == b"OK" and res[4] == 2
    assert res[5] == [b"subscribe", b"txch", 1] and res[6] == b"2"
    if server.mode == "persimmon":
        assert int(r.info("persimmon")["ops_logged"]) == before + 1
    assert r.get("txc") == b"2"


def test_random_and_blocking_commands_in_a_transaction_are_one_deterministic_operation():
    """SPOP, SRANDMEMBER, ZRANDMEMBER, HRANDFIELD, RANDOMKEY and blocking pops inside MULTI
    run inside the EXEC's one operation; in verify mode the shadow checks that the PM copy
    made the same choices, and a restart after SIGKILL shows the same dataset."""
    srv = ServerProc("persimmon", extra=("--verify",)).start()
    try:
        r = srv.client()
        r.sadd("s", *[f"m{i}" for i in range(200)])
        r.zadd("z", {f"z{i}": i for i in range(50)})
        r.hset("h", mapping={f"f{i}": i for i in range(40)})
        r.rpush("l", *range(10))
        before = int(r.info("persimmon")["ops_logged"])
        for _ in range(3):
            p = r.pipeline(transaction=True)
            p.spop("s", 5).srandmember("s", -7)
            p.execute_command("ZRANDMEMBER", "z", "3", "WITHSCORES")
            p.hrandfield("h", 4).randomkey().blpop(["nokey", "l"], 0).spop("s")
            p.execute_command("BZPOPMIN", "z", "0").incr("n")
            res = p.execute()
            assert len(res[0]) == 5 and len(res[1]) == 7 and len(res[3]) == 4
            assert res[5][0] == b"l" and res[8] is not None
            assert not ({*res[0], res[6]} & r.smembers("s"))  # popped members are gone
        assert int(r.info("persimmon")["ops_logged"]) == before + 3
        assert r.save()  # the shadow caught up; in verify mode a divergence would fail here
        info = r.info("persimmon")
        assert info["diverged"] == 0 and info["shadow_errors"] == 0, info.get("shadow_message")
        def dump(c):
            return (sorted(c.keys()), c.smembers("s"), c.zrange("z", 0, -1, withscores=True),
                    c.hgetall("h"), c.lrange("l", 0, -1), c.get("n"))

        before_kill = dump(r)
        r.close()
        srv.kill()
        srv.start()
        r = srv.client()
        assert dump(r) == before_kill
        assert r.scard("s") == 200 - 18
        r.close()
    finally:
        srv.cleanup()
