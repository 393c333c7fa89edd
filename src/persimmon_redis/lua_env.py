"""The Lua 5.1 virtual machine scripts run in (lupa), and the conversions between Lua values
and replies.

One :class:`LuaVM` per process (the server's, and the shadow's when it replays a script).
The Lua side (``lua_prelude.lua``) builds the environment Redis gives scripts: the ``redis``
table, ``bit``, ``struct``, ``cjson``, ``cmsgpack``, read-only globals, ``math.random`` on
Redis's rand48.  The binding is locked down: Lua strings cross as ``bytes``, nothing but
strings, numbers, booleans and nil ever goes from Python to Lua except the few callables
handed to the prelude (kept in its local upvalues), every item or attribute access on a
Python object is refused (``attribute_handlers``), ``python.eval`` and the builtins are not
registered and the ``python`` table is not visible to scripts, and the VM's memory is
bounded (``max_memory``).

The callbacks report errors by returning ``(True, message)``; they never raise into Lua.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct as _struct
from typing import Any

import lupa.lua51 as _lupa

from .replies import (
    NULL_ARRAY,
    RBigNum,
    RBool,
    RDouble,
    RError,
    RMap,
    RPairMap,
    RPairs,
    RSet,
    RVerbatim,
    Status,
    fmt_double,
)

LUA_MAX_MEMORY = 512 << 20
_PRELUDE = os.path.join(os.path.dirname(__file__), "lua_prelude.lua")
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def _deny_get(obj: Any, name: Any) -> Any:
    raise AttributeError("access to Python objects is not allowed from scripts")


def _deny_set(obj: Any, name: Any, value: Any) -> Any:
    raise AttributeError("access to Python objects is not allowed from scripts")


# ------------------------------------------------------------------------------ rand48
_A, _C, _M = 0x5DEECE66D, 0xB, (1 << 48) - 1
RAND48_INIT = 0x1234ABCD330E


def srand48(seed: int) -> int:
    """The rand48 state Redis's ``redisSrand48(seed)`` sets (seed as a C int32)."""
    s = seed & 0xFFFFFFFF
    return ((s >> 16) << 32) | ((s & 0xFFFF) << 16) | 0x330E


# ------------------------------------------------------------------------------ bit
def _tobit(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return 0
        x = round(x)  # (BitOp's add-2^52 trick rounds half to even, as round() does)
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def _bit(op: bytes, *args: Any) -> Any:
    try:
        name = op.decode() if isinstance(op, bytes) else op
        if name == "tohex":
            x = _tobit(args[0])
            n = _tobit(args[1]) if len(args) > 1 and args[1] is not None else 8
            upper = n < 0
            n = min(abs(n), 8)
            s = "%08x" % (x & 0xFFFFFFFF)
            s = s[8 - n:] if n else ""
            return False, (s.upper() if upper else s).encode()
        if not args:
            return True, f"bad argument #1 to '{name}' (number expected, got no value)".encode()
        v = [_tobit(a) for a in args]
        x = v[0]
        if name == "tobit":
            r = x
        elif name == "bnot":
            r = ~x
        elif name in ("band", "bor", "bxor"):
            r = x
            for y in v[1:]:
                r = r & y if name == "band" else r | y if name == "bor" else r ^ y
        elif name == "bswap":
            r = int.from_bytes((x & 0xFFFFFFFF).to_bytes(4, "little"), "big")
        else:
            n = v[1] & 31 if len(v) > 1 else 0
            u = x & 0xFFFFFFFF
            if name == "lshift":
                r = u << n
            elif name == "rshift":
                r = u >> n
            elif name == "arshift":
                r = x >> n
            elif name == "rol":
                r = (u << n) | (u >> (32 - n)) if n else u
            else:  # ror
                r = (u >> n) | (u << (32 - n)) if n else u
        return False, _tobit(r)
    except (TypeError, IndexError):
        return True, b"bad argument (number expected)"


# ------------------------------------------------------------------------------ struct
def _struct_items(fmt: bytes) -> list:
    """Parse a Lua struct format into (code, size) items and endianness markers."""
    out = []
    i, n = 0, len(fmt)
    while i < n:
        c = chr(fmt[i])
        i += 1
        j = i
        while j < n and 0x30 <= fmt[j] <= 0x39:
            j += 1
        num = int(fmt[i:j]) if j > i else None
        i = j
        out.append((c, num))
    return out


_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "f": 4, "d": 8, "i": 4,
          "I": 4, "x": 1}


def _struct_op(op: bytes, fmt: Any, *args: Any) -> Any:
    try:
        if not isinstance(fmt, bytes):
            return True, b"bad argument #1 (string expected)"
        items = _struct_items(fmt)
        big = False
        if op == b"size":
            total = 0
            for c, num in items:
                if c in "<>!= ":
                    continue
                if c in "iI":
                    total += num or 4
                elif c == "c":
                    total += num or 1
                elif c in _SIZES:
                    total += _SIZES[c]
                elif c == "s":
                    return True, b"options 's' has no fixed size"
                else:
                    return True, f"invalid format option '{c}'".encode()
            return False, total
        if op == b"pack":
            out = bytearray()
            a = list(args)
            k = 0
            for c, num in items:
                if c in "<>!= ":
                    if c in "<>":
                        big = c == ">"
                    continue
                if c == "x":
                    out += b"\0"
                    continue
                if k >= len(a):
                    return True, f"bad argument #{k + 2} to 'pack' (value expected)".encode()
                v = a[k]
                k += 1
                if c in "bBhHlLTiI":
                    size = (num or 4) if c in "iI" else _SIZES[c]
                    if not isinstance(v, (int, float)) or isinstance(v, bool):
                        return True, f"bad argument #{k + 1} to 'pack' (number expected)".encode()
                    iv = int(v) & ((1 << (8 * size)) - 1)
                    out += iv.to_bytes(size, "big" if big else "little")
                elif c in "fd":
                    out += _struct.pack((">" if big else "<") + c, float(v))
                elif c in "cs":
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        v = (b"%.14g" % v)
                    if not isinstance(v, bytes):
                        return True, f"bad argument #{k + 1} to 'pack' (string expected)".encode()
                    if c == "s":
                        out += v + b"\0"
                    else:
                        ln = len(v) if num is None or num == 0 else num
                        if len(v) < ln:
                            return True, f"bad argument #{k + 1} to 'pack' (string too short)".encode()  # noqa: E501
                        out += v[:ln]
                else:
                    return True, f"invalid format option '{c}'".encode()
            return False, bytes(out)
        # unpack
        data = args[0] if args else None
        if not isinstance(data, bytes):
            return True, b"bad argument #2 to 'unpack' (string expected)"
        pos = int(args[1]) - 1 if len(args) > 1 and args[1] is not None else 0
        res: list = []
        for c, num in items:
            if c in "<>!= ":
                if c in "<>":
                    big = c == ">"
                continue
            if c == "x":
                pos += 1
                continue
            if c in "bBhHlLTiI":
                size = (num or 4) if c in "iI" else _SIZES[c]
                if pos + size > len(data):
                    return True, b"bad argument #2 to 'unpack' (data string too short)"
                res.append(int.from_bytes(data[pos:pos + size], "big" if big else "little",
                                          signed=c in "bhliT" and c != "T"))
                pos += size
            elif c in "fd":
                size = 4 if c == "f" else 8
                if pos + size > len(data):
                    return True, b"bad argument #2 to 'unpack' (data string too short)"
                res.append(_struct.unpack((">" if big else "<") + c, data[pos:pos + size])[0])
                pos += size
            elif c == "s":
                e = data.find(b"\0", pos)
                if e < 0:
                    return True, b"unfinished string in data"
                res.append(data[pos:e])
                pos = e + 1
            elif c == "c":
                ln = num if num else (int(res.pop()) if num == 0 and res else 1)
                if pos + ln > len(data):
                    return True, b"bad argument #2 to 'unpack' (data string too short)"
                res.append(data[pos:pos + ln])
                pos += ln
            else:
                return True, f"invalid format option '{c}'".encode()
        return (False, *res, pos + 1)
    except (ValueError, OverflowError, _struct.error) as e:
        return True, str(e).encode()


# ------------------------------------------------------------------------------ msgpack
def _msgnum(x: Any, raw: Any = None) -> Any:
    """Encode a Lua number as msgpack (one argument) or decode one (tag, bytes)."""
    if raw is not None:
        tag = int(x)
        if tag == 0xCA:
            return _struct.unpack(">f", raw)[0]
        if tag == 0xCB:
            return _struct.unpack(">d", raw)[0]
        signed = tag in (0xD0, 0xD1, 0xD2, 0xD3)
        return int.from_bytes(raw, "big", signed=signed)
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and -2**63 <= x < 2**64):
        n = int(x)
        if n >= 0:
            if n < 128:
                return bytes([n])
            if n < 256:
                return b"\xcc" + bytes([n])
            if n < 65536:
                return b"\xcd" + n.to_bytes(2, "big")
            if n < 2**32:
                return b"\xce" + n.to_bytes(4, "big")
            return b"\xcf" + n.to_bytes(8, "big")
        if n >= -32:
            return bytes([n & 0xFF])
        if n >= -128:
            return b"\xd0" + n.to_bytes(1, "big", signed=True)
        if n >= -32768:
            return b"\xd1" + n.to_bytes(2, "big", signed=True)
        if n >= -2**31:
            return b"\xd2" + n.to_bytes(4, "big", signed=True)
        return b"\xd3" + n.to_bytes(8, "big", signed=True)
    f = float(x)
    try:
        if _struct.unpack(">f", _struct.pack(">f", f))[0] == f:
            return b"\xca" + _struct.pack(">f", f)
    except OverflowError:
        pass
    return b"\xcb" + _struct.pack(">d", f)


_SOURCES: dict[bytes, bytes] = {}


def _source(name: bytes) -> bytes:
    """The Lua source of a library loaded on first use (cjson, cmsgpack)."""
    src = _SOURCES.get(name)
    if src is None:
        path = os.path.join(os.path.dirname(__file__), f"lua_{name.decode()}.lua")
        with open(path, "rb") as f:
            src = _SOURCES[name] = f.read()
    return src


def _jnum(x: Any) -> bytes:
    """cjson's number format (``%.14g``)."""
    return b"%.14g" % float(x)


# ------------------------------------------------------------------------------ replies
def lua_number_to_int(s: bytes) -> int:
    """``(long long)`` of a Lua number printed with %.17g (Redis's integer reply)."""
    f = float(s)
    if math.isnan(f) or not (-9.3e18 < f < 9.3e18):
        return I64_MIN
    n = int(f)
    return n if I64_MIN <= n <= I64_MAX else I64_MIN


def decode_reply(data: bytes) -> Any:
    """The reply a Lua value encoded by the prelude's ``enc`` stands for."""
    pos = 0
    stack: list = []  # [container, remaining, kind]
    result: Any = None
    n = len(data)
    while pos < n:
        t = data[pos : pos + 1]
        pos += 1
        val: Any
        if t in (b"$", b"-", b"+", b"(", b"="):
            c = data.index(b":", pos)
            ln = int(data[pos:c])
            s = data[c + 1 : c + 1 + ln + (3 if t == b"=" else 0)]
            pos = c + 1 + len(s)
            if t == b"$":
                val = s
            elif t == b"-":
                val = RError(s.decode("utf-8", "replace"))
            elif t == b"+":
                val = Status(s.replace(b"\r", b" ").replace(b"\n", b" ").decode("utf-8", "replace"))
            elif t == b"(":
                val = RBigNum(s.replace(b"\r", b" ").replace(b"\n", b" "))
            else:
                val = RVerbatim(s)
        elif t == b":" or t == b",":
            c = data.index(b";", pos)
            num = data[pos:c]
            pos = c + 1
            val = lua_number_to_int(num) if t == b":" else RDouble(float(num))
        elif t == b"#":
            val = RBool(data[pos : pos + 1] == b"t")
            pos += 1
        elif t == b"_":
            val = None
        elif t in (b"*", b"%", b"~"):
            c = data.index(b";", pos)
            cnt = int(data[pos:c])
            pos = c + 1
            cont: list = RMap() if t == b"%" else RSet() if t == b"~" else []
            want = cnt * 2 if t == b"%" else cnt
            if want:
                stack.append([cont, want, t])
                continue
            val = cont
        else:
            raise ValueError(f"bad script reply encoding at {pos}")
        # place val
        while True:
            if not stack:
                result = val
                break
            top = stack[-1]
            cont = top[0]
            if top[2] == b"%":
                if top[1] % 2 == 0:
                    cont.append([val, None])
                else:
                    cont[-1][1] = val
                    cont[-1] = tuple(cont[-1])
            else:
                cont.append(val)
            top[1] -= 1
            if top[1]:
                break
            stack.pop()
            val = cont
    return result


class LuaVM:
    """One Lua interpreter with Redis's scripting environment."""

    def __init__(self, max_memory: int = LUA_MAX_MEMORY) -> None:
        self.lua = _lupa.LuaRuntime(encoding=None, register_eval=False, register_builtins=False,
                                    unpack_returned_tuples=True,
                                    attribute_handlers=(_deny_get, _deny_set),
                                    max_memory=max_memory)
        self.run: Any = None  # the current run (scripting.Run) while a script executes
        self.rand_state = RAND48_INIT
        self.registering: Any = None  # FUNCTION LOAD: the library's function specs
        with open(_PRELUDE, "rb") as f:
            prelude = f.read()
        loader = self.lua.execute("return function(code) return loadstring(code, '=prelude') end")
        chunk = loader(prelude)
        self.api = chunk(self._cmd, self._sha1, self._log, self._hook, self._rand, self._seed,
                         self._setresp, self._repl, self._register, _bit, _struct_op, _msgnum,
                         _jnum, _source)
        self._compile = self.api.compile
        self._run_eval = self.api.run_eval
        self._run_function = self.api.run_function
        self.table_from = self.lua.table_from
        self.scripts: dict[bytes, Any] = {}  # sha -> (sha, compiled function, flags)
        self.by_body: dict[bytes, Any] = {}  # script body -> the same entry
        self.calls = 0

    # ------------------------------------------------------------------ callbacks
    def _cmd(self, *args: Any) -> Any:
        try:
            return self.run.call(args)
        except Exception as e:  # never into Lua as a Python object
            if self.run is None:
                return True, b"ERR redis.call/pcall can only be called inside a script invocation"
            return True, f"ERR internal error: {type(e).__name__}: {e}".encode()

    @staticmethod
    def _sha1(s: bytes) -> bytes:
        return hashlib.sha1(s).hexdigest().encode()

    def _log(self, level: Any, msg: bytes) -> None:
        import logging

        logging.getLogger("persimmon_redis").log(
            (logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING)[int(level)],
            "script: %s", msg.decode("utf-8", "replace"))

    def _hook(self) -> bool:
        run = self.run
        return run is not None and run.interrupt()

    def _rand(self) -> float:
        x = (_A * self.rand_state + _C) & _M
        self.rand_state = x
        r = x >> 17  # redisLrand48: 31 bits
        return (r % 0x7FFFFFFF) / 0x7FFFFFFF

    def _seed(self, s: Any) -> None:
        self.rand_state = srand48(int(s))

    def _setresp(self, r: Any) -> None:
        self.api.set_resp(int(r))
        if self.run is not None:
            self.run.resp = int(r)

    def _repl(self, f: Any) -> None:
        pass  # (no replication: accepted and ignored)

    def _register(self, name: bytes, desc: Any, flags: bytes) -> Any:
        reg = self.registering
        if reg is None:
            return b"ERR redis.register_function can only be called on FUNCTION LOAD command"
        if not name or not all(c == 0x5F or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A
                               or 0x61 <= c <= 0x7A for c in name):
            return b"ERR Function names can only contain letters, numbers, or underscores(_) and must be at least one character long"  # noqa: E501
        if name in reg:
            return b"ERR Function already exists in the library"
        reg[name] = (desc if isinstance(desc, bytes) else None,
                     [f for f in flags.split(b",") if f])
        return None

    # ------------------------------------------------------------------ conversions
    def to_lua(self, v: Any, resp: int) -> Any:
        """A command's reply as the Lua value redis.call returns (Redis's rules)."""
        t = type(v)
        if t is bytes or t is int:
            return v
        if v is None or v is NULL_ARRAY:
            return None if resp == 3 and v is None else False
        if t is list or t is tuple:
            return self.table_from([self.to_lua(x, resp) for x in v])
        if t is Status:
            return self.table_from({b"ok": v.encode()})
        if isinstance(v, RError):
            return self.table_from({b"err": v.msg.encode("utf-8", "replace")})
        if t is RDouble:
            if resp == 3:
                return self.table_from({b"double": float(v)})
            return fmt_double(v)
        if t is RMap:
            return self._map(v, resp) if resp == 3 else self._flat_pairs(v, resp)
        if t is RSet:
            if resp == 3:
                return self.table_from({b"set": self.table_from(
                    {self._key(a, resp): True for a in v})})
            return self.table_from([self.to_lua(x, resp) for x in v])
        if t is RPairs:
            return self._pairs(v, resp) if resp == 3 else self._flat_pairs(v, resp)
        if t is RPairMap:  # (XREAD, XREADGROUP: a map in RESP3, pairs in RESP2)
            return self._map(v, resp) if resp == 3 else self._pairs(v, resp)
        if t is bool:
            return v if resp == 3 else int(v)
        if t is RBool:
            return bool(v) if resp == 3 else int(v)
        if t is float:
            return fmt_double(v)
        if t is str:
            return v.encode()
        if isinstance(v, bytes):
            return bytes(v)
        if isinstance(v, int):
            return int(v)
        return None

    # (key, value) replies as Lua tables: a RESP3 map, 2-element arrays, or one flat array
    def _map(self, v: Any, resp: int) -> Any:
        return self.table_from({b"map": self.table_from(
            {self._key(a, resp): self.to_lua(b, resp) for a, b in v})})

    def _pairs(self, v: Any, resp: int) -> Any:
        return self.table_from([self.table_from([self.to_lua(a, resp), self.to_lua(b, resp)])
                                for a, b in v])

    def _flat_pairs(self, v: Any, resp: int) -> Any:
        flat: list = []
        for a, b in v:
            flat += [self.to_lua(a, resp), self.to_lua(b, resp)]
        return self.table_from(flat)

    def _key(self, a: Any, resp: int) -> Any:
        k = self.to_lua(a, resp)
        return k if k is not None else False

    # ------------------------------------------------------------------ running
    def compile(self, body: bytes, name: bytes = b"@user_script") -> Any:
        """The compiled function, or an error message (bytes)."""
        res = self._compile(body, name)
        if isinstance(res, tuple):
            err = res[1]
            return err if isinstance(err, bytes) else str(err).encode()
        return res

    def call(self, fn: Any, function_mode: bool, hooked: bool, nkeys: int, args: list) -> Any:
        """Run; returns the reply value, or ("E", msg, source, line) on error."""
        runner = self._run_function if function_mode else self._run_eval
        self.calls += 1
        if self.calls % 50 == 0:  # (as Redis: a GC step every 50 calls, not a full cycle)
            self.api.gc_step()
        try:
            res = runner(fn, hooked, nkeys, *args)
        except _lupa.LuaMemoryError:
            self.api.reset()
            self.lua.execute("collectgarbage('collect')")
            return ("E", b"ERR Out of memory in the script's Lua VM", False, False)
        except _lupa.LuaError as e:
            self.api.reset()
            msg = str(e) or "execution failure"
            if self.run is not None and self.run.kill:
                msg = "Script killed by user with SCRIPT KILL..."
            return ("E", b"ERR " + msg.encode(), False, False)
        kind = res[0]
        if kind == b"s":
            return res[1]
        if kind == b"n":
            v = res[1]
            if isinstance(v, int):
                return v
            return lua_number_to_int(b"%.17g" % v)
        if kind == b"x":
            return decode_reply(res[1])
        return ("E", res[1], res[2], res[3])

    def load_library(self, body: bytes, budget: int) -> Any:
        """Run a library's code: ({name: callback}, {name: (desc, flags)}) or an error str."""
        self.registering = {}
        try:
            res = self.api.load_library(body, budget)
        except _lupa.LuaMemoryError:
            return "ERR Error registering functions: out of memory"
        finally:
            specs, self.registering = self.registering, None
        if isinstance(res, tuple):
            return "ERR " + res[1].decode("utf-8", "replace")
        if res is False or res is None:
            return "ERR Error registering functions"
        cbs = {k: res[k] for k in specs}
        return cbs, specs

    def collect(self) -> None:
        self.api.collect()

    def memory(self) -> int:
        return int(self.api.memory() * 1024)
