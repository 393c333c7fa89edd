"""EVAL/FCALL: commands and conversions, the sandbox, BUSY/SCRIPT KILL, persistence of
functions, determinism on the PM copy (verify mode) and SIGKILL during writing scripts,
redis-py's Lock and a PyPI rate limiter (both use Lua) unchanged."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis
from redis_rate_limit import RateLimit, TooManyRequests

from conftest import ServerProc
from persimmon_redis.replies import RError
from persimmon_redis.state import RedisState, dump

LIB = ("#!lua name=mylib\n"
       "redis.register_function('bump', function(keys, args) "
       "return redis.call('incrby', keys[1], args[1]) end)\n"
       "redis.register_function{function_name='peek', callback=function(keys) "
       "return redis.call('get', keys[1]) end, flags={'no-writes'}, description='read'}\n")


def test_eval_replies_and_conversions(r):
    assert r.eval("return 'hello'", 0) == b"hello"
    assert r.eval("return 100.5", 0) == 100
    assert r.eval("return true", 0) == 1 and r.eval("return false", 0) is None
    assert r.eval("return {ok='fine'}", 0) == b"fine"
    assert r.eval("return {1,2,3,'ciao',{1,2}}", 0) == [1, 2, 3, b"ciao", [1, 2]]
    assert r.eval("return {1,2,nil,4}", 0) == [1, 2]  # arrays stop at the first nil
    assert r.eval("return {KEYS[1],KEYS[2],ARGV[1],ARGV[2]}", 2, "a", "b", "c", "d") == \
        [b"a", b"b", b"c", b"d"]
    with pytest.raises(redis.ResponseError, match="^this is an error$"):
        r.eval("return {err='ERR this is an error'}", 0)
    r.set("x", "0")
    assert r.eval("local v = redis.pcall('incr', KEYS[1]) return {type(v), v}", 1, "x") == \
        [b"number", 1]
    assert r.eval("return redis.pcall('get', 'nokey') == false", 0) == 1
    r.set("s", "v")
    assert r.eval("return redis.pcall('incr', KEYS[1])['err']", 1, "s") == \
        b"ERR value is not an integer or out of range"
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE .* script: [0-9a-f]{40}, on "
                       "@user_script:1.$"):
        r.eval("redis.call('lpush', KEYS[1], 'x')", 1, "s")
    with pytest.raises(redis.ResponseError, match="Unknown Redis command called from script"):
        r.eval("redis.call('nosuchcommand')", 0)
    with pytest.raises(redis.ResponseError, match="Wrong number of args calling Redis"):
        r.eval("redis.call('get','a','b')", 0)
    with pytest.raises(redis.ResponseError, match="not allowed from script"):
        r.eval("redis.call('blpop','x',0)", 0)
    with pytest.raises(redis.ResponseError, match="Number of keys can.t be negative$"):
        r.eval("return 1", -1)
    assert r.eval("return redis.sha1hex('Pizza & Mandolino')", 0) == \
        b"74822d82031af7493c20eefa13bd07ec4fada82f"
    assert r.eval("return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2]'), ' ')",
                  0) == b"0 -5000 -1 0.0003 1023.2"
    assert r.eval("return cjson.encode({a={1,2}})", 0) == b'{"a":[1,2]}'
    assert r.eval("local e = cmsgpack.pack(-1099511627776) local h = '' for i = 1, #e do "
                  "h = h .. string.format('%02x', string.byte(e, i)) end return h", 0) == \
        b"d3ffffff0000000000"
    assert r.eval("return {bit.band(7, 3), bit.bor(1, 2, 4), bit.tohex(255, 4)}", 0) == \
        [3, 7, b"00ff"]
    assert r.eval("return struct.unpack('>I2', struct.pack('>I2', 258))", 0) == 258


def test_scripts_read_streams_without_blocking(r):
    """XREAD and XREADGROUP from a script: served at once on the script's state (the
    server serves them itself outside scripts), their replies converted as Redis converts
    them (RESP2 pairs, a RESP3 map); BLOCK refused with Redis's error; XREADGROUP is a
    write (refused in read-only scripts) whose delivery the group keeps."""
    r.xgroup_create("s", "g", "$", mkstream=True)
    assert r.eval("return redis.call('xread', 'STREAMS', KEYS[1], '$')", 1, "s") is None
    for name, args in (("xread", "'STREAMS', KEYS[1], '$'"),
                       ("xreadgroup", "'GROUP', 'g', 'c', 'STREAMS', KEYS[1], '>'")):
        with pytest.raises(redis.ResponseError,
                           match=f"^{name} command is not allowed with BLOCK option from "
                                 "scripts"):
            r.eval(f"return redis.call('{name}', 'BLOCK', 0, {args})", 1, "s")
    r.xadd("s", {"a": "1"}, id="1-1")
    r.xadd("s", {"b": "2"}, id="2-1")
    assert r.eval("return redis.call('xread', 'COUNT', 1, 'STREAMS', KEYS[1], '0')", 1,
                  "s") == [[b"s", [[b"1-1", [b"a", b"1"]]]]]
    assert r.eval("redis.setresp(3) local m = redis.call('xread', 'STREAMS', KEYS[1], '1-1')"
                  "['map'] return m[KEYS[1]][1]", 1, "s") == [b"2-1", [b"b", b"2"]]
    with pytest.raises(redis.ResponseError, match="not allowed from read-only scripts"):
        r.eval_ro("return redis.call('xreadgroup', 'GROUP', 'g', 'c', 'STREAMS', KEYS[1], "
                  "'>')", 1, "s")
    assert r.eval("return redis.call('xreadgroup', 'GROUP', 'g', 'c', 'STREAMS', KEYS[1], "
                  "'>')", 1, "s") == [[b"s", [[b"1-1", [b"a", b"1"]], [b"2-1", [b"b", b"2"]]]]]
    assert r.xpending("s", "g")["pending"] == 2
    assert r.eval_ro("return redis.call('xread', 'STREAMS', KEYS[1], '0')", 1, "s")[0][0] \
        == b"s"


def test_evalsha_script_cache_and_shebang(r):
    sha = r.script_load("return 'loaded'")
    assert sha == "b534286061d4b9e4026607613b95c06c06015ae8"
    assert r.evalsha(sha, 0) == b"loaded" and r.evalsha(sha.upper(), 0) == b"loaded"
    assert r.script_exists(sha, "0" * 40) == [True, False]
    r.script_flush()
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha(sha, 0)
    with pytest.raises(redis.ResponseError, match="Unexpected engine in script shebang"):
        r.eval("#!not-lua\nreturn 1", 0)
    with pytest.raises(redis.ResponseError, match="Unexpected flag in script shebang"):
        r.eval("#!lua flags=allow-oom,what?\nreturn 1", 0)
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed from "
                       "read-only scripts"):
        r.eval("#!lua flags=no-writes\nredis.call('set','x',1)", 1, "x")
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed"):
        r.eval_ro("redis.call('del', KEYS[1])", 1, "x")
    r.set("k", "v")
    assert r.eval_ro("return redis.call('get', KEYS[1])", 1, "k") == b"v"


def test_functions(r, server):
    r.function_flush()
    assert r.function_load(LIB) in (b"mylib", "mylib")
    with pytest.raises(redis.ResponseError, match="Library 'mylib' already exists"):
        r.function_load(LIB)
    assert r.function_load(LIB, replace=True) in (b"mylib", "mylib")
    assert r.fcall("bump", 1, "n", 5) == 5
    assert r.fcall_ro("peek", 1, "n") == b"5"
    with pytest.raises(redis.ResponseError, match="write flag using \\*_ro command"):
        r.fcall_ro("bump", 1, "n", 1)
    with pytest.raises(redis.ResponseError, match="Function not found"):
        r.fcall("nope", 0)
    listing = r.function_list(withcode=True)
    assert listing[0][1] == b"mylib" and LIB.encode() in listing[0]
    payload = r.function_dump()
    r.function_flush()
    with pytest.raises(redis.ResponseError, match="Function not found"):
        r.fcall("bump", 1, "n", 1)
    assert r.function_restore(payload) in (b"OK", True, "OK")
    assert r.fcall("bump", 1, "n", 1) == 6
    with pytest.raises(redis.ResponseError, match="payload version or checksum are wrong"):
        r.function_restore(b"garbage")
    with pytest.raises(redis.ResponseError, match="Missing library metadata"):
        r.function_load("return 1")
    r.function_delete("mylib")
    with pytest.raises(redis.ResponseError, match="Library not found"):
        r.function_delete("mylib")


def test_functions_survive_restart():
    srv = ServerProc("persimmon").start()
    try:
        c = srv.client()
        c.function_load(LIB)
        assert c.fcall("bump", 1, "n", 2) == 2
        c.close()
        srv.kill(signal.SIGKILL)
        srv.start()
        c = srv.client()
        assert c.fcall("bump", 1, "n", 3) == 5
        assert c.function_list()[0][1] == b"mylib"
        c.close()
    finally:
        srv.cleanup()


def test_old_state_without_functions_attribute_still_works():
    st = RedisState(2)
    del st.__dict__["functions"]  # a pool made before scripting
    assert st.apply((0, 0, (b"\x00fcall", b"1", b"0", b"bump", b"0"))) == \
        RError("ERR Function not found")
    res = st.apply((0, 0, (b"\x00function", b"load", b"0", LIB.encode())))
    assert res == b"mylib" and st.functions[b"mylib"] == LIB.encode()


@pytest.mark.parametrize("escape", [
    "return os.execute('true')", "return io.open('/etc/passwd')", "return require('os')",
    "return loadfile('/etc/passwd')", "return dofile('/etc/passwd')", "return print",
    "return python.eval('1')", "return debug.getinfo(1)", "return package.loaded",
    "return loadstring(string.dump(function() return 1 end))()",
    "local f = redis.call return f.__class__", "return getfenv(0).os",
    "setfenv(0, {})", "rawset(_G, 'x', 1)", "setmetatable(_G, nil)",
    "getmetatable('').__index = {}", "redis.call = nil",
    "local ok, e = pcall(redis.call) if type(e) ~= 'table' then return e.__class__ end "
    "error('the error value is a plain table')",
])
def test_sandbox_escapes_fail(r, escape):
    with pytest.raises(redis.ResponseError):
        r.eval(escape, 0)
    assert r.ping()


def test_python_objects_are_unreachable_even_if_handed_to_lua():
    from persimmon_redis.lua_env import LuaVM

    vm = LuaVM()
    probe = vm.lua.eval("function(o) return o.__class__ end")
    with pytest.raises(Exception, match="not allowed"):
        probe(object())
    items = vm.lua.eval("function(o) return o[1] end")
    with pytest.raises(Exception, match="not allowed"):
        items([1, 2])
    setter = vm.lua.eval("function(o) o.x = 1 end")
    with pytest.raises(Exception, match="not allowed"):
        setter(vm)


def test_memory_of_a_script_is_bounded(r):
    with pytest.raises(redis.ResponseError):
        r.eval("local s = 'x' while true do s = s .. s end", 0)
    assert r.eval("return 1", 0) == 1


def test_busy_script_kill_and_unkillable(server):
    c = server.client()
    c.config_set("lua-time-limit", 50)
    other = server.client()
    assert other.ping()  # (connected before the script: no new connection while busy)
    res: list = []
    t = threading.Thread(target=lambda: res.append(_catch(lambda: c.eval(
        "while true do end", 0))))
    t.start()
    time.sleep(0.4)
    with pytest.raises(redis.ResponseError, match="BUSY"):
        other.ping()
    assert other.script_kill()
    t.join(10)
    assert "killed by user" in str(res[0])
    assert other.ping()
    # a script that wrote cannot be killed; it finishes when the key appears
    t = threading.Thread(target=lambda: res.append(c.eval(
        "redis.call('set', KEYS[1], 'y') local i = 0 while i < 3e7 do i = i + 1 end "
        "return 'done'", 1, "wk")))
    t.start()
    time.sleep(0.4)
    with pytest.raises(redis.ResponseError, match="UNKILLABLE"):
        other.script_kill()
    t.join(120)
    assert res[-1] == b"done" and other.get("wk") == b"y"
    c.config_set("lua-time-limit", 5000)


def _catch(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return e


def test_redis_py_lock(r, server):
    lock = r.lock("res", timeout=5)
    assert lock.acquire(blocking=False)
    other = server.client().lock("res", timeout=5)
    assert not other.acquire(blocking=False)  # contention
    assert lock.extend(5)
    assert r.pttl("res") > 5000
    lock.release()
    assert other.acquire(blocking=False)
    assert lock.acquire(blocking=True, blocking_timeout=0.2) is False  # waits, then gives up
    r.set("res", "someone-else")  # the lock changed hands behind other's back
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.extend(5)  # (the Lua scripts refuse: the token is not ours)
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.release()
    assert r.get("res") == b"someone-else"


def test_rate_limiter(server):
    pool = redis.ConnectionPool(port=server.port)
    redis.Redis(connection_pool=pool).flushall()
    ok = 0
    with pytest.raises(TooManyRequests):
        for _ in range(10):
            with RateLimit(resource="api", client="me", max_requests=3, expire=10,
                           redis_pool=pool):
                ok += 1
    assert ok == 3


def test_verify_mode_pm_copy_equals_dram_with_writing_scripts():
    srv = ServerProc("persimmon", extra=("--verify",)).start()
    try:
        c = srv.client()
        c.function_load(LIB)
        c.xgroup_create("st", "g", "$", mkstream=True)
        for i in range(50):
            c.eval("redis.call('sadd', KEYS[1], ARGV[1]) "
                   "redis.call('set', KEYS[2], math.random(1000000)) "
                   "redis.call('spop', KEYS[1]) redis.call('hset', 'h', ARGV[1], "
                   "redis.call('time')[1]) return redis.call('incr', 'n')",
                   2, "s", "r", str(i))
            c.fcall("bump", 1, "cnt", 2)
            c.xadd("st", {"i": str(i)})
            c.eval("return redis.call('xreadgroup', 'GROUP', 'g', 'c', 'COUNT', 1, "
                   "'STREAMS', KEYS[1], '>')", 1, "st")
            with pytest.raises(redis.ResponseError):  # writes, then fails: writes kept
                c.eval("redis.call('rpush', 'l', ARGV[1]) error('boom')", 0, str(i))
        assert c.llen("l") == 50
        c.save()  # the PM copy caught up; verify mode stops at any divergence
        c.close()
        srv.stop()
        log = open(srv.log_path, "rb").read()
        assert b"divergence" not in log, log[-2000:]
        srv.start()  # and the recovered state is the acknowledged one
        c = srv.client()
        assert int(c.get("n")) == 50 and int(c.get("cnt")) == 100 and c.llen("l") == 50
        assert c.xpending("st", "g")["pending"] == 50
        c.close()
    finally:
        srv.cleanup()


def test_sigkill_during_writing_scripts_loses_no_acknowledged_script():
    srv = ServerProc("persimmon")
    script = ("local n = redis.call('incr', 'a') redis.call('rpush', 'seq', n) "
              "redis.call('set', 'b', n) return n")
    try:
        last = 0
        for cut in (0.5, 0.9):
            srv.start()
            acked: list = []
            stop = threading.Event()

            def work() -> None:
                c = redis.Redis(port=srv.port, socket_timeout=5)
                try:
                    while not stop.is_set():  # noqa: B023
                        acked.append(c.eval(script, 0))  # noqa: B023
                except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
                    pass

            t = threading.Thread(target=work)
            t.start()
            time.sleep(cut)
            srv.kill(signal.SIGKILL)
            stop.set()
            t.join(10)
            srv.start()
            c = srv.client()
            a, b = int(c.get("a") or 0), int(c.get("b") or 0)
            assert a == b == c.llen("seq"), "a script was half applied"
            if acked:
                assert a >= acked[-1], "an acknowledged script was lost"
            assert a >= last
            last = a
            c.close()
            srv.stop()
        assert last > 10
    finally:
        srv.cleanup()


def test_apply_runs_scripts_deterministically_on_two_copies():
    a, b = RedisState(2), RedisState(2)
    op = (0, 1000, (b"\x00eval", b"12345", b"1000000", b"redis.call('sadd','s',1,2,3,4,5) "
                    b"redis.call('spop','s') return {math.random(100), "
                    b"redis.call('srandmember','s')}", b"0"))
    assert a.apply(op) == b.apply(op) and dump(a) == dump(b)


def test_scripts_inside_multi_are_part_of_the_transaction(r):
    r.delete("m")
    p = r.pipeline(transaction=True)
    p.eval("return redis.call('incr', KEYS[1])", 1, "m")
    p.eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, "m", 10)
    p.evalsha("0" * 40, 0)
    p.get("m")
    res = p.execute(raise_on_error=False)
    assert res[0] == 1 and res[1] == 11 and isinstance(res[2], redis.ResponseError)
    assert "No matching script" in str(res[2]) and res[3] == b"11"


def test_transactions_around_a_busy_script_run_whole_or_not_at_all(server):
    # Redis 7's rules (unit/multi "... and script timeout"): MULTI is allowed while a script
    # is busy; a command rejected with BUSY flags the transaction, and EXEC aborts it (with
    # BUSY as the reason when EXEC itself arrives during the script)
    c = server.client()
    c.config_set("lua-time-limit", 10)
    c.set("xx", 1)
    r2 = redis.Redis(port=server.port, single_connection_client=True)
    assert r2.ping()

    def busy() -> threading.Thread:
        t = threading.Thread(target=lambda: _catch(lambda: server.client().eval(
            "while true do end", 0)))
        t.start()
        time.sleep(0.3)
        return t

    def kill(t: threading.Thread) -> None:
        assert c.script_kill()
        t.join(10)
        assert not t.is_alive()

    t = busy()  # MULTI during the script, a command rejected, then EXEC after it
    assert r2.execute_command("MULTI") == b"OK"
    with pytest.raises(redis.ResponseError, match="BUSY"):
        r2.execute_command("INCR", "xx")
    kill(t)
    assert r2.execute_command("INCR", "xx") == b"QUEUED"
    with pytest.raises(redis.exceptions.ExecAbortError, match="previous errors"):
        r2.execute_command("EXEC")
    assert c.get("xx") == b"1" and r2.ping()

    assert r2.execute_command("MULTI") == b"OK"  # EXEC during the script
    assert r2.execute_command("INCR", "xx") == b"QUEUED"
    t = busy()
    with pytest.raises(redis.exceptions.ExecAbortError, match="because of: BUSY"):
        r2.execute_command("EXEC")
    kill(t)
    assert c.get("xx") == b"1"
    assert r2.execute_command("ECHO", "asdf") == b"asdf"  # no longer in MULTI
    c.config_set("lua-time-limit", 5000)
