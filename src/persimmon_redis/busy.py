"""The server's side of scripting: EVAL/EVALSHA(_RO), FCALL(_RO), SCRIPT, FUNCTION, and
answering other clients while a script runs past ``busy-reply-threshold``.

A script runs on the event loop's thread, synchronously (a script is a few redis.call in the
common case: handing it to a thread would cost more than it).  Every 100k Lua instructions a
count hook checks the clock; past the threshold it calls :func:`serve_while_busy`, which
first makes the writes already acknowledged-to-be durable (group commit), sends the replies
waiting from before, then reads whatever the other clients sent, straight from their sockets,
and answers it: BUSY for everything but SCRIPT KILL, FUNCTION KILL and SHUTDOWN NOSAVE (and
FUNCTION STATS), as Redis does.  The running script's own client is not read (its next
commands wait for the script, as in Redis).  A killed script raised an error and wrote
nothing, so nothing is logged for it.
"""

from __future__ import annotations

import logging
import os
import select
import time
from typing import Any

import hiredis

from . import registry, scripting
from .keyspace import Ctx
from .registry import command
from .replies import OK, RError, RMap

log = logging.getLogger("persimmon_redis")

BUSY_EVAL = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
BUSY_FUNC = ("BUSY Redis is busy running a script. You can only call FUNCTION KILL or "
             "SHUTDOWN NOSAVE.")
UNKILLABLE = ("UNKILLABLE Sorry the script already executed write commands against the "
              "dataset. You can either wait the script termination or kill the server in a "
              "hard way using the SHUTDOWN NOSAVE command.")


def serve_while_busy(s: Any, run: Any) -> None:
    """Called from the script's hook past the busy threshold (see the module doc)."""
    if not run.flushed:
        run.flushed = True
        try:
            s.settle_commits()
            s.p.sync()
        except Exception:  # pragma: no cover - reported by the next write
            log.exception("commit while a script was busy")
        for c in list(s.pending.values()):
            if c.out and c.transport is not None and c is not run.caller:
                c.send_out()
    fds = {}
    for c in list(s.clients.values()):
        if c is run.caller or c.closing or c.transport is None:
            continue
        sock = c.transport.get_extra_info("socket")
        if sock is None:
            continue
        try:
            fds[sock.fileno()] = c
        except (OSError, ValueError):
            continue
    if not fds:
        time.sleep(0.001)
        return
    try:
        ready, _, _ = select.select(list(fds), [], [], 0.001)
    except (OSError, ValueError):
        return
    for fd in ready:
        c = fds[fd]
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            continue
        if not data:
            continue
        c.reader.feed(data)
        while True:
            try:
                argv = c.reader.gets()
            except hiredis.ProtocolError:
                c.protocol_error("invalid request while busy")
                break
            if argv is False or not isinstance(argv, list) or not argv:
                break
            _busy_command(s, c, argv, run)
        if c.out and c.transport is not None:
            c.send_out()


def _busy_command(s: Any, c: Any, a: list, run: Any) -> None:
    name = a[0].lower() if isinstance(a[0], bytes) else b""
    sub = a[1].lower() if len(a) > 1 and isinstance(a[1], bytes) else b""
    if name in (b"script", b"function") and sub == b"kill":
        c.reply(_kill(run, name == b"script"))
    elif name == b"function" and sub == b"stats":
        c.reply(function_stats(s))
    elif name == b"shutdown" and any(x.lower() == b"nosave" for x in a[1:]):
        log.warning("SHUTDOWN NOSAVE while a script is busy: exiting (the script's writes "
                    "were never logged)")
        try:
            s.closed = True
            s.p.close()
        finally:
            os._exit(0)
    else:
        cmd = registry.lookup(name)
        if cmd is not None and cmd.server and cmd.has("allow-busy"):
            s.dispatch(c, a, name)  # MULTI, DISCARD, WATCH, AUTH, HELLO...: as Redis 7 allows
            return
        busy = BUSY_EVAL if run.eval_mode else BUSY_FUNC
        if c.multi is not None:  # a rejected command flags the transaction (Redis's
            if name == b"exec":  # rejectCommand); EXEC itself is aborted with the reason
                c.multi = None
                c.multi_error = False
                s.unwatch_all(c)
                c.reply(RError("EXECABORT Transaction discarded because of: " + busy))
                return
            c.multi_error = True
        c.reply(RError(busy))


def _kill(run: Any, is_eval: bool) -> Any:
    if run is None:
        return RError("NOTBUSY No scripts in execution right now.")
    if run.dirty:
        return RError(UNKILLABLE)
    if is_eval and not run.eval_mode:
        return RError(BUSY_FUNC)
    if not is_eval and run.eval_mode:
        return RError(BUSY_EVAL)
    run.kill = True
    return OK


def function_stats(s: Any) -> Any:
    run = scripting.vm().run
    running = None
    if run is not None:
        running = RMap([(b"name", run.name),
                        (b"command", [b"eval" if run.eval_mode else b"fcall", run.name]),
                        (b"duration_ms", int((time.monotonic() - run.started) * 1000))])
    scripting.sync_libraries(s.state)
    return RMap([(b"running_script", running),
                 (b"engines", RMap([(b"LUA", RMap([
                     (b"libraries_count", len(scripting._libs)),
                     (b"functions_count", len(scripting._funcs))]))]))])


# ------------------------------------------------------------------ commands
def _now_us() -> int:
    return time.time_ns() // 1000


def _log(s: Any, res: Any, run: Any, op: tuple) -> None:
    """Log a script that wrote (one operation; applied on the DRAM copy it returns ``res``,
    computed just now), then tell blocked clients and WATCHers about its keys."""
    scripting.precomputed(res)
    try:
        s.p.execute_rw(op)
    finally:
        scripting._precomputed = scripting._NONE
    if run.written:
        _touch(s, run)


def _touch(s: Any, run: Any) -> None:
    for db, keys in run.written_keys():
        s.touched(db, keys)


def _finish(s: Any, c: Any, res: Any, run: Any, op: tuple) -> None:
    if run is not None and run.dirty:
        _log(s, res, run, op)
    c.reply(res)


def _eval(s: Any, c: Any, a: list) -> None:
    name = a[0].lower()
    ro = name[-3:] == b"_ro"
    n = scripting.parse_numkeys(a)
    if type(n) is not int:
        c.reply(n)
        return
    machine = scripting.vm()
    if name[4:7] == b"sha":
        sha = a[1].lower()
        ent = scripting.SCRIPTS.get(sha) if len(sha) == 40 else None
        if ent is None:
            c.reply(RError(scripting.NOSCRIPT))
            return
        body = ent[0]
        entry = machine.scripts.get(sha) or scripting.compiled(body)
    else:
        body = a[1]
        entry = scripting.compiled(body)
    if isinstance(entry, RError):
        c.reply(entry)
        return
    flags = entry[2]
    if ro and flags is not None and "no-writes" not in flags:
        c.reply(RError("ERR Can not execute a script with write flag using *_ro command."))
        return
    seed = machine.rand_state
    t = _now_us()
    ms = t // 1000
    res, run = scripting.run_entry(Ctx(s.state, c.db, ms), entry, n, a[3:], ro, seed, t, s, c)
    if run.dirty:
        if s.p.mode == "none":  # (nothing to log: the script already ran on the state)
            if run.written:
                _touch(s, run)
        else:
            _log(s, res, run, (c.db, ms, (b"\x00eval", b"%d" % seed, b"%d" % t, body,
                                          b"%d" % n, *a[3:])))
    c.reply(res)


def _fcall(s: Any, c: Any, a: list) -> None:
    ro = a[0].lower() == b"fcall_ro"
    try:
        n = int(a[2])
    except ValueError:
        c.reply(RError("ERR Bad number of keys provided"))
        return
    if n > len(a) - 3:
        c.reply(RError("ERR Number of keys can't be greater than number of args"))
        return
    if n < 0:
        c.reply(RError("ERR Number of keys can't be negative"))
        return
    machine = scripting.vm()
    seed = machine.rand_state
    t = _now_us()
    ctx = Ctx(s.state, c.db, t // 1000)
    res, run = scripting.run_fcall(ctx, a[1], n, list(a[3:]), ro, seed, t, s, c)
    op = (c.db, t // 1000, (b"\x00fcall", b"%d" % seed, b"%d" % t, a[1], b"%d" % n, *a[3:]))
    _finish(s, c, res, run, op)


def _script(s: Any, c: Any, a: list) -> None:
    sub = a[1].lower()
    if sub == b"load" and len(a) == 3:
        entry = scripting.compiled(a[2])
        c.reply(entry if isinstance(entry, RError) else entry[0])
    elif sub == b"exists" and len(a) >= 3:
        c.reply([1 if x.lower() in scripting.SCRIPTS else 0 for x in a[2:]])
    elif sub == b"flush":
        if len(a) > 3 or (len(a) == 3 and a[2].lower() not in (b"sync", b"async")):
            c.reply(RError("ERR SCRIPT FLUSH only support SYNC|ASYNC option"))
            return
        scripting.reset_vm()
        c.reply(OK)
    elif sub == b"kill" and len(a) == 2:
        c.reply(_kill(None, True))
    elif sub == b"debug":
        c.reply(RError("ERR SCRIPT DEBUG is not supported by persimmon-redis"))
    elif sub == b"help":
        c.reply([b"SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                 b"EXISTS <sha1> [<sha1> ...]", b"FLUSH [ASYNC|SYNC]", b"KILL",
                 b"LOAD <script>"])
    else:
        c.reply(RError(f"ERR unknown subcommand or wrong number of arguments for "
                       f"'{a[1].decode('utf-8', 'replace')}'. Try SCRIPT HELP."))


def _function(s: Any, c: Any, a: list) -> None:
    sub = a[1].lower()
    if sub == b"load" and len(a) >= 3:
        replace = False
        i = 2
        while i < len(a) - 1:
            if a[i].lower() == b"replace":
                replace = True
                i += 1
            else:
                c.reply(RError(f"ERR Unknown option given: {a[i].decode('utf-8', 'replace')}"))
                return
        if i != len(a) - 1:
            c.reply(RError("ERR Function code is missing"))
            return
        c.reply(s.write(c.db, (b"\x00function", b"load", b"1" if replace else b"0", a[-1])))
    elif sub == b"delete" and len(a) == 3:
        c.reply(s.write(c.db, (b"\x00function", b"delete", a[2])))
    elif sub == b"flush" and len(a) <= 3:
        if len(a) == 3 and a[2].lower() not in (b"sync", b"async"):
            c.reply(RError("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"))
            return
        c.reply(s.write(c.db, (b"\x00function", b"flush")))
    elif sub == b"restore" and len(a) in (3, 4):
        policy = a[3].upper() if len(a) == 4 else b"APPEND"
        if policy not in (b"FLUSH", b"APPEND", b"REPLACE"):
            c.reply(RError("ERR Wrong restore policy given, value should be either FLUSH, "
                           "APPEND or REPLACE."))
            return
        c.reply(s.write(c.db, (b"\x00function", b"restore", policy, a[2])))
    elif sub == b"dump" and len(a) == 2:
        c.reply(scripting.function_dump(s.state))
    elif sub == b"list":
        c.reply(scripting.function_list(s.state, a))
    elif sub == b"stats" and len(a) == 2:
        c.reply(function_stats(s))
    elif sub == b"kill" and len(a) == 2:
        c.reply(_kill(None, False))
    elif sub == b"help":
        c.reply([b"FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                 b"LOAD [REPLACE] <FUNCTION CODE>", b"DELETE <LIBRARY NAME>",
                 b"LIST [LIBRARYNAME PATTERN] [WITHCODE]", b"FLUSH [ASYNC|SYNC]",
                 b"DUMP", b"RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]", b"STATS", b"KILL"])
    else:
        c.reply(RError(f"ERR unknown subcommand or wrong number of arguments for "
                       f"'{a[1].decode('utf-8', 'replace')}'. Try FUNCTION HELP."))


def multi_form(s: Any, c: Any, q: list) -> tuple:
    """A queued EVAL/EVALSHA/FCALL as the operation that runs it inside a transaction."""
    name = q[0].lower()
    machine = scripting.vm()
    seed = machine.rand_state
    machine.rand_state = (machine.rand_state * 0x5DEECE66D + 0xB) & ((1 << 48) - 1)
    t = _now_us()
    if name.startswith(b"fcall"):
        return (b"\x00fcall", b"%d" % seed, b"%d" % t, q[1], q[2], *q[3:])
    n = scripting.parse_numkeys(q)
    if isinstance(n, RError):
        return (b"\x00error", n.msg.encode())
    body = q[1]
    if name.startswith(b"evalsha"):
        ent = scripting.SCRIPTS.get(q[1].lower())
        if ent is None:
            return (b"\x00error", scripting.NOSCRIPT.encode())
        body = ent[0]
    return (b"\x00eval", b"%d" % seed, b"%d" % t, body, b"%d" % n, *q[3:])


SCRIPT_CALLS = frozenset({b"eval", b"evalsha", b"eval_ro", b"evalsha_ro", b"fcall",
                          b"fcall_ro"})


def _script_keys(a: list) -> list:
    try:
        n = int(a[2])
    except (ValueError, IndexError):
        return []
    return list(a[3:3 + n]) if 0 <= n <= len(a) - 3 else []


_SF = ("noscript", "skip-monitor", "may-replicate", "no-mandatory-keys", "stale")
for _name in ("eval", "evalsha", "fcall"):
    command(_name, arity=-3, flags=_SF, getkeys=_script_keys, server=True)(
        _fcall if _name == "fcall" else _eval)
    command(_name + "_ro", arity=-3, flags=("readonly",) + _SF, getkeys=_script_keys,
            server=True)(_fcall if _name == "fcall" else _eval)
command("script", arity=-2, flags=("noscript",), keys=(0, 0, 0), server=True)(_script)
command("function", arity=-2, flags=("noscript",), keys=(0, 0, 0), server=True)(_function)

scripting.busy_handler = serve_while_busy
