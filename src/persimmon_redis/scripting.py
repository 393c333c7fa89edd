"""EVAL / FCALL and friends: Lua scripts and functions as operations of the state machine.

A script call that may write runs once on the DRAM copy in the server (so that a busy
script can be answered with BUSY, killed, or reported), and, if it wrote anything, becomes
ONE logged operation::

    (db, now_ms, (b"\\x00eval",  rand48, time_us, body, numkeys, *keys, *args))
    (db, now_ms, (b"\\x00fcall", rand48, time_us, name, numkeys, *keys, *args))

carrying everything the script can observe that is not in the state: the clock (TIME and
key expiry see ``time_us``/``now_ms``), the rand48 state ``math.random`` starts from, the
seed of random commands (SPOP, SRANDMEMBER, ... draw from ``random.Random(rand48)`` over a
canonical order, as in MULTI), the script body itself (EVALSHA is logged with its body).
``RedisState.apply`` re-runs it: on the DRAM copy the server hands it the result it has just
computed (the script already ran there, nothing ran in between); in the shadow, on the PM
copy, the script runs again in the shadow's own Lua VM and reaches the same state and reply.
A script that wrote and then failed keeps its writes on both copies, as in Redis.  A call
that wrote nothing (EVAL_RO, FCALL_RO, ``no-writes``, or a script that only read) is not
logged.  Libraries loaded with FUNCTION LOAD live in the state (``RedisState.functions``:
library name -> code), so they are persistent; each process compiles them on first use.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from typing import Any

from . import chance
from .keyspace import Ctx, to_int
from .lua_env import LuaVM
from .registry import COMMANDS, command
from .replies import E_DB, OK, PONG, RError, RMap, RSet, Status

log = logging.getLogger("persimmon_redis")

NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."
SCRIPT_FLAGS = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")
# Commands a script may not call (Redis flags them noscript), and those that block.
_NOT_IN_SCRIPTS = frozenset({
    b"eval", b"evalsha", b"eval_ro", b"evalsha_ro", b"fcall", b"fcall_ro", b"script",
    b"function", b"multi", b"exec", b"discard", b"watch", b"unwatch", b"subscribe",
    b"psubscribe", b"unsubscribe", b"punsubscribe", b"auth", b"hello", b"reset", b"quit",
    b"save", b"bgsave", b"shutdown", b"cluster", b"monitor", b"sync", b"psync",
    b"client", b"debug", b"config", b"slaveof", b"replicaof", b"blpop", b"brpop",
    b"brpoplpush", b"blmove", b"blmpop", b"bzpopmin", b"bzpopmax", b"bzmpop"})
LOAD_BUDGET = 5000  # FUNCTION LOAD: at most this many 100k-instruction steps (deterministic)

_vm: LuaVM | None = None
# busy.serve_while_busy, set when busy.py is imported (the server's side; the shadow, which
# replays scripts without a server, never needs it)
busy_handler: Any = None
SCRIPTS: dict[bytes, tuple[bytes, frozenset]] = {}  # sha -> (body, flags): the EVAL cache
_libs: dict[bytes, tuple] = {}  # library name -> (code, callbacks, specs)
_funcs: dict[bytes, tuple] = {}  # function name -> (library, callback, description, flags)
_NONE = object()
_precomputed: Any = _NONE
stats = {"killed": 0}


def vm() -> LuaVM:
    global _vm
    if _vm is None:
        _vm = LuaVM()
    return _vm


def reset_vm() -> None:
    """SCRIPT FLUSH: a fresh Lua VM, as Redis starts a new one (the libraries are compiled
    again on their next use; math.random's sequence goes on)."""
    global _vm
    old = _vm
    _vm = LuaVM()
    if old is not None:
        _vm.rand_state = old.rand_state
    SCRIPTS.clear()
    _libs.clear()
    _funcs.clear()


def vm_memory() -> int:
    """Bytes of the Lua heap (INFO used_memory_lua)."""
    return _vm.memory() if _vm is not None else 0


def sha1hex(b: bytes) -> bytes:
    return hashlib.sha1(b).hexdigest().encode()


def shebang_flags(body: bytes) -> tuple[frozenset | None, int, str | None]:
    """(flags, shebang length, error): flags None = no shebang (compatibility mode)."""
    if not body.startswith(b"#!"):
        return None, 0, None
    end = body.find(b"\n")
    if end < 0:
        return None, 0, "ERR Invalid script shebang"
    parts = body[:end].split()
    if not parts:
        return None, 0, "ERR Invalid engine in script shebang"
    if parts[0] != b"#!lua":
        return None, 0, f"ERR Unexpected engine in script shebang: {parts[0].decode('utf-8', 'replace')}"  # noqa: E501
    flags: set = set()
    for p in parts[1:]:
        if p.startswith(b"flags="):
            for f in p[6:].split(b","):
                name = f.decode("utf-8", "replace")
                if f and name not in SCRIPT_FLAGS:
                    return None, 0, f"ERR Unexpected flag in script shebang: {name}"
                if f:
                    flags.add(name)
                elif p[6:]:
                    return None, 0, "ERR Unexpected flag in script shebang: "
        else:
            return None, 0, f"ERR Unknown lua shebang option: {p.decode('utf-8', 'replace')}"
    return frozenset(flags), end, None


class Run:
    """One script execution: what redis.call sees and what the hook checks."""

    __slots__ = ("ctx", "vm", "resp", "readonly", "dirty", "written", "seed", "rng", "server",
                 "started", "threshold", "kill", "eval_mode", "name", "time_us", "busy",
                 "caller", "track", "flushed")

    def __init__(self, ctx: Ctx, machine: LuaVM, readonly: bool, seed: int, time_us: int,
                 eval_mode: bool, name: str, server: Any = None, caller: Any = None) -> None:
        self.ctx = ctx
        self.vm = machine
        self.resp = 2
        self.readonly = readonly
        self.dirty = False
        self.written: list = []
        self.seed = seed
        self.rng: random.Random | None = None
        self.server = server
        self.caller = caller
        # the written keys matter only to WATCHers and blocked clients (none can appear
        # while the script runs: other clients get BUSY)
        self.track = server is not None and bool(server.watchers or server.blocked)
        self.started = time.monotonic()
        self.threshold = -1.0  # (read from the server's config at the first hook call)
        self.kill = False
        self.busy = False
        self.flushed = False  # (busy: the replies waiting from before were sent)
        self.eval_mode = eval_mode
        self.name = name
        self.time_us = time_us

    # ------------------------------------------------------------------ redis.call
    def call(self, args: tuple) -> Any:
        if not args:
            return True, b"ERR Please specify at least one argument for this redis lib call"
        if args[0] == b"\x00many":
            t = args[2]
            args = tuple(t[i] for i in range(1, int(args[1]) + 1))
        argv = list(args)
        for a in argv:
            if type(a) is not bytes:
                argv = _as_arguments(argv)
                if argv is None:
                    return True, (b"ERR Lua redis lib command arguments must be strings or "
                                  b"integers")
                break
        name = argv[0].lower()
        entry = _TABLE.get(name) or _table().get(name)
        if entry is None:
            if name == b"\x00acl_check":
                if len(argv) < 2 or argv[1].lower() not in COMMANDS:
                    return True, b"ERR Invalid command passed to redis.acl_check_cmd()"
                return False, 1
            if name in _NOT_IN_SCRIPTS or name in COMMANDS:
                return True, b"ERR This Redis command is not allowed from script"
            return True, b"ERR Unknown Redis command called from script"
        fn, arity, write, cmd = entry
        n = len(argv)
        if name in _MAY_BLOCK and any(x.upper() == b"BLOCK" for x in argv):
            return True, (b"ERR " + name + b" command is not allowed with BLOCK option from "
                          b"scripts")
        if (arity > 0 and n != arity) or n < -arity:
            return True, b"ERR Wrong number of args calling Redis command from script"
        if fn is None:
            return True, b"ERR This Redis command is not allowed from script"
        if write:
            if self.readonly:
                return True, b"ERR Write commands are not allowed from read-only scripts."
            self.dirty = True
        try:
            if cmd is not None:
                res = fn(self.ctx, argv)
                if write and self.track:
                    self.written.append((self.ctx.dbi, cmd, argv))
            else:
                res = fn(self, argv)
        except RError as e:
            return True, e.msg.encode("utf-8", "replace")
        t = type(res)
        if t is bytes or t is int:
            return False, res
        if t is RError or isinstance(res, RError):
            return True, res.msg.encode("utf-8", "replace")
        return False, self.vm.to_lua(res, self.resp)

    def written_keys(self) -> list:
        """[(db, keys)] of the write commands the script called (for WATCH and blocked
        clients)."""
        out = []
        for dbi, cmd, argv in self.written:
            out.append((dbi, cmd.keys(argv) if cmd is not None else argv))
        return out

    def random(self) -> random.Random:
        if self.rng is None:
            self.rng = random.Random(self.seed)
        return self.rng

    # ------------------------------------------------------------------ the hook
    def interrupt(self) -> bool:
        """Called every 100k Lua instructions: past the busy threshold, let the server answer
        other clients (BUSY) and see whether SCRIPT/FUNCTION KILL asked to stop."""
        s = self.server
        if s is None:
            return False
        if self.threshold < 0:
            self.threshold = s.busy_threshold()
        if self.threshold <= 0:
            return False
        if not self.busy:
            if time.monotonic() - self.started < self.threshold:
                return False
            self.busy = True
            log.warning("Slow script detected: still in execution after %d milliseconds. "
                        "You can try killing the script using the %s command. Script name "
                        "is: %s.", int((time.monotonic() - self.started) * 1000),
                        "SCRIPT KILL" if self.eval_mode else "FUNCTION KILL",
                        self.name.decode("utf-8", "replace"))
        busy_handler(s, self)
        if self.kill:
            stats["killed"] += 1
            return True
        return False


def _as_arguments(argv: list) -> list | None:
    """redis.call's arguments as bytes (numbers as Lua prints them), or None if one is
    neither a string nor a number."""
    out = []
    for a in argv:
        if type(a) is not bytes:
            if isinstance(a, (int, float)) and not isinstance(a, bool):
                a = b"%.17g" % a
            else:
                return None
        out.append(a)
    return out


# reads that block with the BLOCK option (refused in scripts)
_MAY_BLOCK = frozenset({b"xread", b"xreadgroup"})


# ---------------------------------------------------------------- commands run by scripts
def _x_select(run: Run, a: list) -> Any:
    try:
        i = int(a[1])
    except ValueError:
        raise RError("ERR value is not an integer or out of range") from None
    if not 0 <= i < len(run.ctx.state.dbs):
        raise RError(E_DB)
    run.ctx.select(i)
    return OK


def _x_ping(run: Run, a: list) -> Any:
    if len(a) > 2:
        raise RError("ERR wrong number of arguments for 'ping' command")
    return a[1] if len(a) == 2 else PONG


def _x_echo(run: Run, a: list) -> Any:
    return a[1]


def _x_time(run: Run, a: list) -> Any:
    return [b"%d" % (run.time_us // 1_000_000), b"%d" % (run.time_us % 1_000_000)]


def _x_random(run: Run, a: list) -> Any:
    reply, write = chance.resolve(run.ctx, a, run.random(), canonical=True)
    if write is not None:
        if run.readonly:
            raise RError("ERR Write commands are not allowed from read-only scripts.")
        run.dirty = True
        if run.track:
            run.written.append((run.ctx.dbi, None, [a[1]]))
        return cmd_spop_members(run.ctx, list(write))
    return reply


def _x_publish(run: Run, a: list) -> Any:
    # a side effect outside the state: done by the server that runs the script first; the
    # replay in the shadow publishes nothing (its reply, the receivers count, is 0 there)
    s = run.server
    return s.publish(a[1], a[2]) if s is not None else 0


# name -> (handler(run, argv), arity, write)
_EXTRA: dict[bytes, tuple] = {
    b"select": (_x_select, 2, False), b"ping": (_x_ping, -1, False),
    b"echo": (_x_echo, 2, False), b"time": (_x_time, 1, False),
    b"spop": (_x_random, -2, True), b"srandmember": (_x_random, -2, False),
    b"zrandmember": (_x_random, -2, False), b"hrandfield": (_x_random, -2, False),
    b"randomkey": (_x_random, 1, False), b"publish": (_x_publish, 3, False),
}


# name -> (handler, arity, write, registry command or None): what redis.call can run
_TABLE: dict[bytes, tuple] = {}


def _table() -> dict:
    if not _TABLE:
        for name, cmd in COMMANDS.items():
            if name[:1] == b"\x00":
                continue
            if name in _NOT_IN_SCRIPTS:
                _TABLE[name] = (None, cmd.arity, False, None)
            elif not cmd.server:
                _TABLE[name] = (cmd.fn, cmd.arity, cmd.write, cmd)
        for name, (fn, arity, write) in _EXTRA.items():
            _TABLE[name] = (fn, arity, write, None)
        # XREAD and XREADGROUP, which the server serves itself (they may block): in a
        # script, where BLOCK is refused, they are served at once on the script's state, as
        # inside MULTI (XREADGROUP a write: it moves the group and its pending entries)
        served_now = COMMANDS[b"\x00xread"]
        for name, write in ((b"xread", False), (b"xreadgroup", True)):
            _TABLE[name] = (served_now.fn, COMMANDS[name].arity, write, served_now)
    return _TABLE


# ---------------------------------------------------------------- running scripts
def error_reply(res: tuple, funcname: Any) -> RError:
    """Redis's error reply for a failed script: the message, then where it failed."""
    if isinstance(funcname, bytes):
        funcname = funcname.decode("utf-8", "replace")
    _, msg, source, line = res
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    if text.startswith("-"):
        text = text[1:]
    if source and line is not False and line is not None:
        src = source.decode("utf-8", "replace") if isinstance(source, bytes) else str(source)
        text += f" script: {funcname}, on {src}:{int(line)}."
    return RError(text)


def compiled(body: bytes) -> Any:
    """(sha, function, flags) of a script body, compiled once per VM (or an RError)."""
    machine = vm()
    entry = machine.by_body.get(body)  # (no SHA1 per call: a dict lookup by the body)
    if entry is not None:
        return entry
    sha = sha1hex(body)
    entry = machine.scripts.get(sha)
    if entry is not None:
        machine.by_body[body] = entry
        return entry
    flags, shebang_len, err = shebang_flags(body)
    if err is not None:
        return RError(err)
    # (a shebang line is blanked, not cut: line numbers stay the user's)
    f = machine.compile(body[shebang_len:] if shebang_len else body, b"@user_script")
    if isinstance(f, bytes):
        return RError("ERR Error compiling script (new function): "
                      + f.decode("utf-8", "replace"))
    entry = (sha, f, flags)
    machine.scripts[sha] = entry
    machine.by_body[body] = entry
    SCRIPTS[sha] = (body, flags if flags is not None else frozenset())
    return entry


def run_eval(ctx: Ctx, body: bytes, nkeys: int, args: list, readonly: bool, seed: int,
             time_us: int, server: Any = None, caller: Any = None) -> tuple[Any, Run | None]:
    """Run a script on ``ctx``'s state; (reply, run)."""
    entry = compiled(body)
    if isinstance(entry, RError):
        return entry, None
    return run_entry(ctx, entry, nkeys, args, readonly, seed, time_us, server, caller)


def run_entry(ctx: Ctx, entry: tuple, nkeys: int, args: list, readonly: bool, seed: int,
              time_us: int, server: Any = None, caller: Any = None) -> tuple[Any, Run]:
    """Run a compiled script ``(sha, function, flags)``; (reply, run)."""
    sha, fn, flags = entry
    machine = vm()
    ro = readonly or (flags is not None and "no-writes" in flags)
    run = Run(ctx, machine, ro, seed, time_us, True, sha, server, caller)
    return _execute(machine, run, fn, False, nkeys, args), run


def _execute(machine: LuaVM, run: Run, fn: Any, fmode: bool, nkeys: int, args: list) -> Any:
    prev, prev_rand = machine.run, machine.rand_state
    machine.run = run
    machine.rand_state = run.seed
    try:
        res = machine.call(fn, fmode, run.server is not None, nkeys, args)
    finally:
        machine.run = prev
        if run.server is None:
            machine.rand_state = prev_rand
    if isinstance(res, tuple):
        return error_reply(res, run.name)
    return res


def run_fcall(ctx: Ctx, fname: bytes, nkeys: int, args: list, readonly: bool, seed: int,
              time_us: int, server: Any = None, caller: Any = None) -> tuple[Any, Run | None]:
    sync_libraries(ctx.state)
    f = _funcs.get(fname)
    if f is None:
        return RError("ERR Function not found"), None
    _lib, cb, _desc, flags = f
    if readonly and "no-writes" not in flags:
        return RError("ERR Can not execute a script with write flag using *_ro command."), None
    machine = vm()
    run = Run(ctx, machine, readonly or "no-writes" in flags, seed, time_us, False, fname,
              server, caller)
    return _execute(machine, run, cb, True, nkeys, args), run


def parse_numkeys(a: list) -> Any:
    try:
        n = to_int(a[2])
    except RError as e:
        return e
    if n > len(a) - 3:
        return RError("ERR Number of keys can't be greater than number of args")
    if n < 0:
        return RError("ERR Number of keys can't be negative")
    return n


# ---------------------------------------------------------------- the logged operations
def op_eval(ctx: Ctx, a: list) -> Any:
    """``\\x00eval rand48 time_us body numkeys keys... args...`` (see the module doc)."""
    global _precomputed
    if _precomputed is not _NONE:
        res, _precomputed = _precomputed, _NONE
        return res
    ctx.now = int(a[2]) // 1000
    res, _ = run_eval(ctx, a[3], int(a[4]), list(a[5:]), False, int(a[1]), int(a[2]))
    return res


def op_fcall(ctx: Ctx, a: list) -> Any:
    """``\\x00fcall rand48 time_us name numkeys keys... args...``."""
    global _precomputed
    if _precomputed is not _NONE:
        res, _precomputed = _precomputed, _NONE
        return res
    ctx.now = int(a[2]) // 1000
    res, _ = run_fcall(ctx, a[3], int(a[4]), list(a[5:]), False, int(a[1]), int(a[2]))
    return res


def precomputed(result: Any) -> None:
    """The next script operation applied (on the DRAM copy, where it just ran) returns
    ``result`` instead of running again."""
    global _precomputed
    _precomputed = result


# ---------------------------------------------------------------- function libraries
def _library_meta(code: bytes) -> Any:
    if not code.startswith(b"#!"):
        return RError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        return RError("ERR Invalid library metadata")
    parts = code[:end].split()
    if not parts:
        return RError("ERR Invalid library metadata")
    engine = parts[0][2:]
    name = None
    for p in parts[1:]:
        if p[:5].lower() == b"name=":
            if name is not None:
                return RError("ERR Invalid metadata value, name argument was given multiple times")
            name = p[5:]
            continue
        return RError(f"ERR Invalid metadata value given: {p.decode('utf-8', 'replace')}")
    if name is None:
        return RError("ERR Library name was not given")
    if not name or not all(c == 0x5F or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A
                           or 0x61 <= c <= 0x7A for c in name):
        return RError("ERR Library names can only contain letters, numbers, or "
                      "underscores(_) and must be at least one character long")
    if engine.lower() != b"lua":
        return RError(f"ERR Engine '{engine.decode('utf-8', 'replace')}' not found")
    return name, end


def _compile_library(code: bytes, end: int) -> Any:
    # the shebang line is blanked so that line numbers stay the user's
    res = vm().load_library(b"\n" + code[end + 1:], LOAD_BUDGET)
    if isinstance(res, str):
        return RError(res)
    cbs, specs = res
    if not cbs:
        return RError("ERR No functions registered")
    return cbs, specs


def libraries(state: Any) -> Any:
    return getattr(state, "functions", None)


def sync_libraries(state: Any) -> None:
    """Make this process's compiled functions match the libraries in ``state``."""
    libs = libraries(state)
    names = list(libs.keys()) if libs else []
    if len(names) == len(_libs) and all(n in _libs and _libs[n][0] == libs[n] for n in names):
        return
    for n in list(_libs):
        if n not in names or _libs[n][0] != libs[n]:
            _drop_library(n)
    for n in names:
        if n not in _libs:
            code = bytes(libs[n])
            meta = _library_meta(code)
            if isinstance(meta, RError):
                log.error("library %r in the state does not load: %s", n, meta.msg)
                continue
            res = _compile_library(code, meta[1])
            if isinstance(res, RError):
                log.error("library %r in the state does not load: %s", n, res.msg)
                continue
            _install(n, code, *res)


def _install(name: bytes, code: bytes, cbs: dict, specs: dict) -> None:
    _libs[name] = (code, cbs, specs)
    for f, cb in cbs.items():
        desc, flags = specs[f]
        _funcs[f] = (name, cb, desc, [x.decode() for x in flags])


def _drop_library(name: bytes) -> None:
    entry = _libs.pop(name, None)
    if entry is not None:
        for f in entry[1]:
            _funcs.pop(f, None)


def _set_libraries(state: Any, items: list) -> None:
    libs = libraries(state)
    if libs is None:
        state.functions = {}
        libs = state.functions
    libs.clear()
    for k, v in items:
        libs[k] = v


def op_function(ctx: Ctx, a: list) -> Any:
    """``\\x00function load|delete|flush|restore ...``: FUNCTION's writes (logged)."""
    state = ctx.state
    sub = a[1].lower()
    sync_libraries(state)
    if sub == b"load":
        replace = a[2] == b"1"
        code = a[3]
        meta = _library_meta(code)
        if isinstance(meta, RError):
            return meta
        name, end = meta
        libs = libraries(state) or {}
        if name in libs and not replace:
            return RError(f"ERR Library '{name.decode('utf-8', 'replace')}' already exists")
        res = _compile_library(code, end)
        if isinstance(res, RError):
            return res
        cbs, specs = res
        for f in cbs:
            owner = _funcs.get(f)
            if owner is not None and owner[0] != name:
                return RError(f"ERR Function {f.decode('utf-8', 'replace')} already exists")
        items = [(k, v) for k, v in libs.items() if k != name] + [(name, code)]
        _set_libraries(state, items)
        _drop_library(name)
        _install(name, code, cbs, specs)
        return name
    if sub == b"delete":
        libs = libraries(state) or {}
        if a[2] not in libs:
            return RError("ERR Library not found")
        _set_libraries(state, [(k, v) for k, v in libs.items() if k != a[2]])
        _drop_library(a[2])
        return OK
    if sub == b"flush":
        _set_libraries(state, [])
        for n in list(_libs):
            _drop_library(n)
        return OK
    if sub == b"restore":
        policy = a[2].upper()
        libs = libraries(state) or {}
        new = _parse_dump(a[3])
        if isinstance(new, RError):
            return new
        compiled_new = []
        for code in new:
            meta = _library_meta(code)
            if isinstance(meta, RError):
                return meta
            compiled_new.append((meta[0], code, meta[1]))
        if policy == b"FLUSH":
            items: list = []
        elif policy == b"APPEND":
            for name, _c, _e in compiled_new:
                if name in libs:
                    return RError(f"ERR Library {name.decode('utf-8', 'replace')} already exists")
            items = list(libs.items())
        else:  # REPLACE
            names = {n for n, _c, _e in compiled_new}
            items = [(k, v) for k, v in libs.items() if k not in names]
        # check that every function name stays unique
        seen: dict = {}
        for n, _code in items:
            for f in _libs.get(n, (None, {}))[1]:
                seen[f] = n
        loaded = []
        for name, code, end in compiled_new:
            res = _compile_library(code, end)
            if isinstance(res, RError):
                return res
            for f in res[0]:
                if f in seen:
                    return RError(f"ERR Function {f.decode('utf-8', 'replace')} already exists")
                seen[f] = name
            loaded.append((name, code, res))
        _set_libraries(state, items + [(n, c) for n, c, _r in loaded])
        for n in list(_libs):
            _drop_library(n)
        sync_libraries(state)
        return OK
    return RError("ERR unknown FUNCTION operation")


_DUMP_MAGIC = b"PSMFN\x01"


def function_dump(state: Any) -> bytes:
    """FUNCTION DUMP's payload: the libraries' code, with a version and a checksum."""
    libs = libraries(state) or {}
    body = b"".join(len(c).to_bytes(4, "big") + bytes(c) for c in libs.values())
    return _DUMP_MAGIC + body + hashlib.sha1(_DUMP_MAGIC + body).digest()[:8]


def _parse_dump(payload: bytes) -> Any:
    if len(payload) < len(_DUMP_MAGIC) + 8 or not payload.startswith(_DUMP_MAGIC) or \
            hashlib.sha1(payload[:-8]).digest()[:8] != payload[-8:]:
        return RError("ERR DUMP payload version or checksum are wrong")
    body = payload[len(_DUMP_MAGIC):-8]
    out = []
    i = 0
    while i < len(body):
        n = int.from_bytes(body[i:i + 4], "big")
        out.append(body[i + 4:i + 4 + n])
        i += 4 + n
    return out


def function_list(state: Any, a: list) -> Any:
    sync_libraries(state)
    withcode = False
    pattern = None
    i = 2
    while i < len(a):
        opt = a[i].upper()
        if opt == b"WITHCODE":
            withcode = True
            i += 1
        elif opt == b"LIBRARYNAME":
            if i + 1 >= len(a):
                return RError("ERR library name argument was not given")
            pattern = a[i + 1]
            i += 2
        else:
            return RError(f"ERR Unknown argument {a[i].decode('utf-8', 'replace')}")
    from .patterns import glob_match

    out = []
    libs = libraries(state) or {}
    for name in libs:
        if pattern is not None and not glob_match(pattern, name):
            continue
        entry = _libs.get(name)
        if entry is None:
            continue
        funcs = []
        for f in entry[1]:
            desc, flags = entry[2][f]
            funcs.append(RMap([(b"name", f), (b"description", desc),
                               (b"flags", RSet([Status(x.decode()) for x in flags]))]))
        item = [(b"library_name", name), (b"engine", b"LUA"), (b"functions", funcs)]
        if withcode:
            item.append((b"library_code", bytes(libs[name])))
        out.append(RMap(item))
    return out


# ---------------------------------------------------------------- registration
_OP = ("write", "internal")


@command("\x00eval", arity=-6, flags=_OP, keys=(0, 0, 0))
def _op_eval(ctx: Ctx, a: list) -> Any:
    return op_eval(ctx, a)


@command("\x00fcall", arity=-6, flags=_OP, keys=(0, 0, 0))
def _op_fcall(ctx: Ctx, a: list) -> Any:
    return op_fcall(ctx, a)


@command("\x00function", arity=-2, flags=_OP, keys=(0, 0, 0))
def _op_function(ctx: Ctx, a: list) -> Any:
    return op_function(ctx, a)


def cmd_spop_members(ctx: Ctx, a: list) -> Any:
    """``\\x00spop key single member...``: remove SPOP's chosen members (cmds/sets.py)."""
    return COMMANDS[b"\x00spop"].fn(ctx, a)
