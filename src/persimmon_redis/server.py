"""The network server: RESP2/RESP3 over asyncio, connections, transactions, pub/sub,
blocking commands, expiry, and the server/connection commands.

Every write command becomes one operation ``(db, now_ms, argv)`` executed through the
persistence layer; a command whose effect depends on chance (SPOP, SRANDMEMBER with a
negative count is a read, ZRANDMEMBER is a read) is turned into an explicit internal
operation first.  Replies of all commands read in one event-loop round are written after a
single ``persistence.sync()`` (group commit), so no reply leaves before the writes executed
before it are durable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import sys
import time
from collections import deque
from typing import Any

import hiredis

from . import chance
from .commands import COMMANDS, Cmd, Ctx, glob_match, to_int
from .replies import (
    E_DB,
    E_NOAUTH,
    E_SYNTAX,
    E_WRONGPASS,
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    Push,
    RError,
    RMap,
    Status,
    arity_error,
    encode,
)

log = logging.getLogger("persimmon_redis")
VERSION = "7.0.0-persimmon"
_BIGNUM = re.compile(rb"[*$](\d{9,})\r\n")
# digits -> '0', '*' and '$' -> '$', anything else -> 'x': a long length shows as _BIG_HINT
_LEN_CLASSES = bytes(
    0x30 if 0x30 <= i <= 0x39 else 0x24 if i in (0x24, 0x2A) else 0x78 for i in range(256))
_BIG_HINT = b"$000000000"
_TAIL = 24
_RESP_START = (0x2A, 0x24)  # '*' starts a command, '$' continues a split one
INLINE_MAX = 64 * 1024
_time_ns = time.time_ns


def _now_ms() -> int:
    """The server's clock, in milliseconds since the epoch (what operations carry)."""
    return _time_ns() // 1_000_000


class Config:
    """Server settings (command line or redis.conf)."""

    def __init__(self) -> None:
        self.port = 6379
        self.bind = ["127.0.0.1"]
        self.dir = "/dev/shm/persimmon-redis"
        self.persistence = "persimmon"
        self.requirepass: str | None = None
        self.maxclients = 10000
        self.databases = 16
        self.log_size = 64 << 20
        self.proto_max_bulk_len = 512 * 1024 * 1024
        self.client_output_limit = 256 * 1024 * 1024
        self.device = "auto"
        self.shadow_priority = "idle"
        self.hz = 10
        self.verify = False


class Client(asyncio.Protocol):
    """One connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: Any = None
        self.reader = hiredis.Reader()
        self.out: list[bytes] = []
        self.db = 0
        self.resp3 = False
        self.authed = server.cfg.requirepass is None
        self.multi: list | None = None
        self.multi_error = False
        self.watched: set = set()
        self.dirty = False
        self.name = b""
        self.id = server.next_id()
        self.addr = ""
        self.created = time.time()
        self.channels: set = set()
        self.patterns: set = set()
        self.blocked: Any = None
        self.backlog: deque = deque()
        self.closing = False
        self.tail = b""
        self.inline = b""
        self.last_cmd = b""
        self.paused = False
        self.in_exec = False
        self.block_timer: Any = None

    # -------------------------------------------------------------- transport
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        s = self.server
        if len(s.clients) >= s.cfg.maxclients:
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self.closing = True
            return
        s.clients[self.id] = self

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        s = self.server
        s.clients.pop(self.id, None)
        s.unwatch_all(self)
        s.unsubscribe_all(self)
        if self.blocked is not None:
            s.cancel_block(self)

    def pause_writing(self) -> None:
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        reader = self.reader
        # A new command starting with anything but '*' is an inline command (telnet).  The
        # reader holds part of a command when it has unread bytes, or when a chunk ended
        # between two elements of an array, and then the next chunk starts with '$'.
        if self.inline or (data[0] not in _RESP_START and not reader.has_data()):
            data = self._inline(data)
            if data is None:
                return
        if self.tail:
            if self._too_big(self.tail + data):
                return
        elif self._too_big(data):
            return
        reader.feed(data)
        dispatch = self.server.safe_dispatch
        while True:
            try:
                argv = reader.gets()
            except hiredis.ProtocolError as e:
                self.protocol_error(_protocol_message(str(e)))
                return
            if argv is False:
                break
            # every element must be a bulk string: join() raises on anything else (C speed)
            if type(argv) is not list or not argv:
                self.protocol_error("expected '$', got something else")
                return
            try:
                b"".join(argv)
            except TypeError:
                self.protocol_error("expected '$', got something else")
                return
            if self.blocked is not None or self.backlog:
                self.backlog.append(argv)
            else:
                dispatch(self, argv)
            if self.closing:
                return
        # a length split across two chunks is checked with the end of the previous one
        self.tail = data[-_TAIL:] if reader.has_data() else b""
        # Replies go out once per event-loop round, after the group commit: writing each at
        # once was measured slower (a wake-up of the client per reply instead of per round).
        self.server.schedule(self)

    def send_out(self) -> None:
        """Write the queued replies (bounded by the client output buffer limit)."""
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        t = self.transport
        t.write(data)
        if t.get_write_buffer_size() > self.server.cfg.client_output_limit:
            log.warning("client %s exceeded the output buffer limit; closing", self.addr)
            t.abort()
            self.closing = True

    def _too_big(self, data: bytes) -> bool:
        # Lengths of 9 digits or more are checked before hiredis sees them (it would
        # allocate a list of that many elements at once).  A translate and a substring
        # search find candidates; the regex looks only where one is.
        if _BIG_HINT not in data.translate(_LEN_CLASSES):
            return False
        if _BIGNUM.search(data) is None:
            return False
        limit = self.server.cfg.proto_max_bulk_len
        for m in _BIGNUM.finditer(data):
            n = int(m.group(1))
            if data[m.start()] == 0x2A and n > 1024 * 1024 * 1024 // 8:
                self.protocol_error("invalid multibulk length")
                return True
            if data[m.start()] == 0x24 and n > limit:
                self.protocol_error("invalid bulk length")
                return True
        return False

    def _inline(self, data: bytes) -> bytes | None:
        buf = self.inline + data
        while True:
            if buf[:1] == b"*":
                self.inline = b""
                return buf
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > INLINE_MAX:
                    self.protocol_error("too big inline request")
                    return None
                self.inline = buf
                self.server.schedule(self)
                return None
            line, buf = buf[:nl].rstrip(b"\r"), buf[nl + 1 :]
            try:
                argv = split_inline(line)
            except ValueError:
                self.protocol_error("unbalanced quotes in request")
                return None
            if argv:
                if self.blocked is not None or self.backlog:
                    self.backlog.append(argv)
                else:
                    self.server.safe_dispatch(self, argv)
                if self.closing:
                    return None
            if not buf:
                self.inline = b""
                self.server.schedule(self)
                return None

    def protocol_error(self, msg: str) -> None:
        self.out.append(b"-ERR Protocol error: %b\r\n" % msg.encode())
        self.server.schedule(self)
        self.close_after_reply()

    def close_after_reply(self) -> None:
        self.closing = True
        self.server.to_close.add(self)
        self.server.schedule(self)

    def reply(self, v: Any) -> None:
        t = type(v)
        if t is bytes:
            self.out.append(b"$%d\r\n%b\r\n" % (len(v), v))
        elif v is OK:
            self.out.append(b"+OK\r\n")
        elif t is int:
            self.out.append(b":%d\r\n" % v)
        elif v is None and not self.resp3:
            self.out.append(b"$-1\r\n")
        else:
            self.out.append(encode(v, self.resp3))


def _protocol_message(msg: str) -> str:
    m = msg.lower()
    if "multi" in m or "aggregate" in m:
        return "invalid multibulk length"
    if "bulk" in m:
        return "invalid bulk length"
    if "type byte" in m:
        return "expected '$', got something else"
    return msg


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command like redis-cli does (quotes and escapes)."""
    out: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i : i + 1].isspace():
            i += 1
        if i >= n:
            return out
        cur = bytearray()
        if line[i : i + 1] in (b'"', b"'"):
            q = line[i : i + 1]
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unbalanced quotes")
                c = line[i : i + 1]
                if q == b'"' and c == b"\\" and i + 1 < n:
                    nx = line[i + 1 : i + 2]
                    if nx == b"x" and i + 3 < n:
                        try:
                            cur.append(int(line[i + 2 : i + 4], 16))
                            i += 4
                            continue
                        except ValueError:
                            pass
                    cur += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b",
                            b"a": b"\a"}.get(nx, nx)
                    i += 2
                    continue
                if q == b"'" and c == b"\\" and line[i + 1 : i + 2] == b"'":
                    cur += b"'"
                    i += 2
                    continue
                if c == q:
                    i += 1
                    if i < n and not line[i : i + 1].isspace():
                        raise ValueError("closing quote must be followed by a space")
                    break
                cur += c
                i += 1
        else:
            while i < n and not line[i : i + 1].isspace():
                cur += line[i : i + 1]
                i += 1
        out.append(bytes(cur))


class Server:
    """The Redis-compatible server around a persistence layer."""

    def __init__(self, cfg: Config, persistence: Any) -> None:
        self.cfg = cfg
        self.p = persistence
        self.state = persistence.state
        self.clients: dict[int, Client] = {}
        self._next_id = 0
        self.pending: dict[int, Client] = {}
        self.to_close: set = set()
        self.flush_scheduled = False
        self.loop: Any = None
        self.channels: dict[bytes, set] = {}
        self.patterns: dict[bytes, set] = {}
        self.watchers: dict[tuple, set] = {}
        self.blocked: dict[tuple, deque] = {}
        self.started = time.time()
        self.stats = {"connections": 0, "expired": 0, "rejected": 0}
        self.ncommands = 0
        self.last_save = int(time.time())
        self.shutdown_event: asyncio.Event | None = None
        self.servers: list = []
        self.closed = False
        self._exp_walk: dict[int, tuple] = {}

    def next_id(self) -> int:
        self._next_id += 1
        self.stats["connections"] += 1
        return self._next_id

    # -------------------------------------------------------------- batching
    def schedule(self, c: Client) -> None:
        self.pending[c.id] = c
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.closed:
            return
        pending = self.pending
        self.pending = {}
        self.p.sync()  # group commit: the writes behind these replies are durable now
        for c in pending.values():
            if c.out and c.transport is not None:
                c.send_out()
        for c in list(self.to_close):
            if c.transport is not None:
                c.transport.close()
        self.to_close.clear()

    # -------------------------------------------------------------- dispatch
    def now(self) -> int:
        return _now_ms()

    def safe_dispatch(self, c: Client, argv: list) -> None:
        """:meth:`dispatch`, with any unexpected failure turned into an error reply for this
        client only (and logged): one bad command never takes the server down."""
        try:
            name = argv[0].lower()
            self.ncommands += 1
            c.last_cmd = name
            cmd = _DATA.get(name)
            # the fast path: a plain data command outside MULTI, pub/sub and AUTH
            if cmd is not None and c.authed and c.multi is None and not c.channels \
                    and not c.patterns:
                n = len(argv)
                arity = cmd.arity
                if n == arity or (arity < 0 and n >= -arity):
                    if cmd.write:
                        res = self.p.execute_rw((c.db, _now_ms(), tuple(argv)))
                        if self.watchers or self.blocked:
                            self.touched(c.db, cmd.keys(argv))
                    else:
                        try:
                            res = cmd.fn(Ctx(self.state, c.db, _now_ms()), argv)
                        except RError as e:
                            res = e
                    if type(res) is bytes:
                        c.out.append(b"$%d\r\n%b\r\n" % (len(res), res))
                    elif res is OK:
                        c.out.append(b"+OK\r\n")
                    else:
                        c.reply(res)
                    return
            self.dispatch(c, argv, name)
        except Exception as e:
            from .persistence import PersistenceError

            if isinstance(e, PersistenceError):
                log.error("persistence failure on %r: %s", argv[:1], e)
                c.reply(RError(f"ERR persistence failure: {e}"))
            else:
                log.exception("internal error while executing %r", argv[:1])
                c.reply(RError(f"ERR internal error: {type(e).__name__}: {e}"))

    def dispatch(self, c: Client, argv: list, name: bytes) -> None:
        """Everything but the fast path of :meth:`safe_dispatch` (``name``: lower-cased)."""
        if not c.authed and name not in (b"auth", b"hello", b"quit", b"reset"):
            c.reply(RError(E_NOAUTH))
            return
        if c.channels or c.patterns:
            if not c.resp3 and name not in _PUBSUB_OK:
                c.reply(RError(
                    f"ERR Can't execute '{name.decode('utf-8', 'replace')}': only (P|S)"
                    "SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this "
                    "context"))
                return
        special = _SPECIAL.get(name)
        cmd = COMMANDS.get(name) if name[:1] != b"\x00" else None
        if special is None and cmd is None:
            args = "".join(f"'{a[:128].decode('utf-8', 'replace')}' " for a in argv[1:])
            err = RError(f"ERR unknown command '{argv[0][:128].decode('utf-8', 'replace')}', "
                         f"with args beginning with: {args}")
            if c.multi is not None:
                c.multi_error = True
            c.reply(err)
            return
        arity = special[1] if special is not None else cmd.arity
        if (arity > 0 and len(argv) != arity) or (arity < 0 and len(argv) < -arity):
            if c.multi is not None:
                c.multi_error = True
            c.reply(arity_error(name.decode("utf-8", "replace")))
            return
        if c.multi is not None and name not in (b"exec", b"discard", b"multi", b"watch",
                                                b"reset", b"quit"):
            if name in _NO_MULTI:
                c.multi_error = True
                c.reply(RError("ERR Command not allowed inside a transaction"))
                return
            c.multi.append(argv)
            c.reply(QUEUED)
            return
        if special is not None:
            special[0](self, c, argv)
            return
        self.run(c, cmd, argv)

    def run(self, c: Client, cmd: Cmd, argv: list) -> None:
        if cmd.write:
            res = self.p.execute_rw((c.db, self.now(), tuple(argv)))
            if self.watchers or self.blocked:
                self.touched(c.db, cmd.keys(argv))
        else:
            try:
                res = cmd.fn(Ctx(self.state, c.db, self.now()), argv)
            except RError as e:
                res = e
        c.reply(res)

    def write(self, db: int, argv: tuple) -> Any:
        """Execute an internal write operation (expiry, resolved random choices)."""
        return self.p.execute_rw((db, self.now(), argv))

    # -------------------------------------------------------------- watch / blocking
    def touched(self, db: int, keys: list) -> None:
        if self.watchers:
            for k in keys:
                for w in self.watchers.get((db, k), ()):
                    w.dirty = True
        if self.blocked:
            for k in keys:
                if (db, k) in self.blocked:
                    self.serve_blocked(db, k)

    def touched_all(self) -> None:
        for w in (x for s in self.watchers.values() for x in s):
            w.dirty = True

    def unwatch_all(self, c: Client) -> None:
        for key in c.watched:
            s = self.watchers.get(key)
            if s is not None:
                s.discard(c)
                if not s:
                    del self.watchers[key]
        c.watched.clear()
        c.dirty = False

    def block(self, c: Client, keys: list, timeout: float, retry: Any) -> None:
        """Park ``c`` until one of ``keys`` can serve it (``retry() -> reply or None``)."""
        entry = (c, keys, retry)
        c.blocked = entry
        for k in keys:
            self.blocked.setdefault((c.db, k), deque()).append(entry)
        if timeout > 0:
            c.block_timer = self.loop.call_later(timeout, self.unblock, c, NULL_ARRAY)

    def cancel_block(self, c: Client) -> None:
        entry = c.blocked
        if entry is None:
            return
        c.blocked = None
        t = c.block_timer
        if t is not None:
            t.cancel()
            c.block_timer = None
        for k in entry[1]:
            q = self.blocked.get((c.db, k))
            if q is not None:
                try:
                    q.remove(entry)
                except ValueError:
                    pass
                if not q:
                    del self.blocked[(c.db, k)]

    def unblock(self, c: Client, reply: Any) -> None:
        self.cancel_block(c)
        c.reply(reply)
        self.schedule(c)
        while c.backlog and c.blocked is None and not c.closing:
            self.safe_dispatch(c, c.backlog.popleft())

    def serve_blocked(self, db: int, key: bytes) -> None:
        q = self.blocked.get((db, key))
        while q:
            c, _keys, retry = q[0]
            res = retry()
            if res is None:
                return
            self.unblock(c, res)
            q = self.blocked.get((db, key))

    # -------------------------------------------------------------- pub/sub
    def publish(self, channel: bytes, message: bytes) -> int:
        n = 0
        for c in list(self.channels.get(channel, ())):
            c.reply(Push([b"message", channel, message]))
            self.schedule(c)
            n += 1
        for pat, subs in list(self.patterns.items()):
            if glob_match(pat, channel):
                for c in list(subs):
                    c.reply(Push([b"pmessage", pat, channel, message]))
                    self.schedule(c)
                    n += 1
        return n

    def unsubscribe_all(self, c: Client) -> None:
        for ch in c.channels:
            s = self.channels.get(ch)
            if s:
                s.discard(c)
                if not s:
                    del self.channels[ch]
        for p in c.patterns:
            s = self.patterns.get(p)
            if s:
                s.discard(c)
                if not s:
                    del self.patterns[p]
        c.channels.clear()
        c.patterns.clear()

    # -------------------------------------------------------------- expiry
    async def active_expiry(self) -> None:
        """Like Redis's active expire cycle: look at keys with a deadline, 20 at a time, and
        delete the expired ones through a logged operation; repeat while many expired."""
        while True:
            await asyncio.sleep(1 / self.cfg.hz)
            try:
                self.expire_cycle()
            except Exception:  # never let the cycle die
                log.exception("active expiry cycle failed")

    def expire_cycle(self) -> None:
        now = self.now()
        wrote = False
        for dbi, db in enumerate(self.state.dbs):
            exp = db.expires
            if not exp:
                continue
            for _ in range(16):
                sample = self._next_expiry_sample(dbi, exp)
                dead = [k for k in sample if exp.get(k, now + 1) <= now]
                if dead:
                    self.write(dbi, (b"\x00expired", *dead))
                    self.touched(dbi, dead)
                    self.stats["expired"] += len(dead)
                    wrote = True
                if len(dead) < 5:
                    break
        if wrote:
            self.p.sync()

    def _next_expiry_sample(self, dbi: int, exp: dict) -> list:
        # Walk a snapshot of the keys with a deadline with a cursor (refreshed when used
        # up), so that every key is looked at in turn without copying the dict every time.
        keys, pos = self._exp_walk.get(dbi, ((), 0))
        if pos >= len(keys):
            keys = list(exp.keys())
            random.shuffle(keys)
            pos = 0
        sample = keys[pos : pos + 20]
        self._exp_walk[dbi] = (keys, pos + 20)
        return sample

    # -------------------------------------------------------------- lifecycle
    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.shutdown_event = asyncio.Event()
        for host in self.cfg.bind:
            srv = await self.loop.create_server(lambda: Client(self), host, self.cfg.port,
                                                reuse_address=True, backlog=1024)
            self.servers.append(srv)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, self.shutdown_event.set)
            except (NotImplementedError, RuntimeError):
                pass
        expiry = asyncio.ensure_future(self.active_expiry())
        log.info("Ready to accept connections on %s port %d",
                 ",".join(self.cfg.bind), self.cfg.port)
        await self.shutdown_event.wait()
        expiry.cancel()
        for srv in self.servers:
            srv.close()
        for c in list(self.clients.values()):
            if c.transport is not None:
                c.transport.close()
        log.info("Shutting down: making the PM copy catch up and closing the pool")
        self.flush()
        self.closed = True
        self.p.close()
        log.info("persimmon-redis is now ready to exit, bye bye...")


_DATA: dict[bytes, Cmd] = {n: c for n, c in COMMANDS.items() if n[:1] != b"\x00"}
_PUBSUB_OK = {b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"ping",
              b"quit", b"reset"}


# ------------------------------------------------------------------ special commands
def _ping(s: Server, c: Client, a: list) -> None:
    if len(a) > 2:
        c.reply(arity_error("ping"))
    elif (c.channels or c.patterns) and not c.resp3:
        c.reply([b"pong", a[1] if len(a) == 2 else b""])
    else:
        c.reply(a[1] if len(a) == 2 else PONG)


def _echo(s: Server, c: Client, a: list) -> None:
    c.reply(a[1])


def _quit(s: Server, c: Client, a: list) -> None:
    c.reply(OK)
    c.close_after_reply()


def _select(s: Server, c: Client, a: list) -> None:
    try:
        i = to_int(a[1])
    except RError as e:
        c.reply(e)
        return
    if not 0 <= i < len(s.state.dbs):
        c.reply(RError(E_DB))
        return
    c.db = i
    c.reply(OK)


def _auth(s: Server, c: Client, a: list) -> None:
    if len(a) > 3:
        c.reply(RError(E_SYNTAX))
        return
    pw = s.cfg.requirepass
    if pw is None:
        c.reply(RError("ERR AUTH <password> called without any password configured for the "
                       "default user. Are you sure your configuration is correct?"))
        return
    user = a[1] if len(a) == 3 else b"default"
    if user == b"default" and a[-1] == pw.encode():
        c.authed = True
        c.reply(OK)
    else:
        c.reply(RError(E_WRONGPASS))


def _hello(s: Server, c: Client, a: list) -> None:
    proto = None
    i = 1
    if len(a) > 1:
        try:
            proto = to_int(a[1])
        except RError:
            c.reply(RError("ERR Protocol version is not an integer or out of range"))
            return
        if proto not in (2, 3):
            c.reply(RError("NOPROTO unsupported protocol version"))
            return
        i = 2
    while i < len(a):
        opt = a[i].upper()
        if opt == b"AUTH" and i + 2 < len(a):
            if s.cfg.requirepass is None or a[i + 2] != s.cfg.requirepass.encode():
                c.reply(RError(E_WRONGPASS))
                return
            c.authed = True
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(a):
            c.name = a[i + 1]
            i += 2
        else:
            c.reply(RError(f"ERR Syntax error in HELLO option '{a[i].decode('utf-8', 'replace')}'"))
            return
    if not c.authed:
        c.reply(RError("NOAUTH HELLO must be called with the client already authenticated, "
                       "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                       "authenticate the client and select the RESP protocol version at the "
                       "same time"))
        return
    if proto is not None:
        c.resp3 = proto == 3
    c.reply(RMap([(b"server", b"redis"), (b"version", VERSION.encode()),
                  (b"proto", 3 if c.resp3 else 2), (b"id", c.id), (b"mode", b"standalone"),
                  (b"role", b"master"), (b"modules", [])]))


def _reset(s: Server, c: Client, a: list) -> None:
    c.multi = None
    c.multi_error = False
    s.unwatch_all(c)
    s.unsubscribe_all(c)
    c.db = 0
    c.resp3 = False
    c.name = b""
    c.authed = s.cfg.requirepass is None
    c.reply(Status("RESET"))


def _multi(s: Server, c: Client, a: list) -> None:
    if c.multi is not None:
        c.reply(RError("ERR MULTI calls can not be nested"))
        return
    c.multi = []
    c.multi_error = False
    c.reply(OK)


def _discard(s: Server, c: Client, a: list) -> None:
    if c.multi is None:
        c.reply(RError("ERR DISCARD without MULTI"))
        return
    c.multi = None
    s.unwatch_all(c)
    c.reply(OK)


def _exec(s: Server, c: Client, a: list) -> None:
    if c.multi is None:
        c.reply(RError("ERR EXEC without MULTI"))
        return
    queued, c.multi = c.multi, None
    if c.multi_error:
        c.multi_error = False
        s.unwatch_all(c)
        c.reply(RError("EXECABORT Transaction discarded because of previous errors."))
        return
    if c.dirty:
        s.unwatch_all(c)
        c.reply(NULL_ARRAY)
        return
    s.unwatch_all(c)
    # Reads and writes of the transaction run as one operation (atomic and durable as one).
    # Commands that do not touch the dataset (PING, TIME, PUBLISH, AUTH, SUBSCRIBE, ...) are
    # answered by the server around it, in their place in the reply; random commands and
    # blocking pops run inside it in their deterministic forms (chance.py).  SAVE and
    # SHUTDOWN are refused at MULTI time, as by Redis.  A transaction without a write needs
    # no operation and runs command by command.
    names = [q[0].lower() for q in queued]
    has_write = any(n == b"select" or n == b"spop" or n in chance.BLOCKING
                    or (n in COMMANDS and COMMANDS[n].write) for n in names)
    if not has_write:
        out = []
        c.in_exec = True
        try:
            for q, name in zip(queued, names, strict=True):
                mark = len(c.out)
                if name in _SPECIAL:
                    _SPECIAL[name][0](s, c, q)
                else:
                    s.run(c, COMMANDS[name], q)
                out.append(_decode_last(c, mark))
        finally:
            c.in_exec = False
        c.out.append(b"*%d\r\n" % len(out) + b"".join(out))
        return
    inside = []
    for q, n in zip(queued, names, strict=True):
        if n in chance.RANDOM:
            inside.append((b"\x00rand", b"%d" % _rng.getrandbits(63), *q))
        elif n in chance.BLOCKING:
            inside.append((b"\x00bpop", *q))
        elif n not in _OUTSIDE:
            inside.append(tuple(q))
    res = s.p.execute_rw((c.db, s.now(), (b"exec", *inside)))
    db = c.db
    for q, name in zip(queued, names, strict=True):
        if name == b"select":
            try:
                db = int(q[1])
            except ValueError:
                pass
            continue
        cmd = COMMANDS.get(name)
        if cmd is not None and cmd.write:
            s.touched(db, cmd.keys(q))
        elif name == b"spop":
            s.touched(db, [q[1]])
        elif name in chance.BLOCKING:
            try:
                keys = chance.bpop_keys(q)[0]
            except RError:
                keys = []
            s.touched(db, keys + ([q[2]] if name in (b"brpoplpush", b"blmove") else []))
    if 0 <= db < len(s.state.dbs):
        c.db = db
    if len(inside) == len(queued):
        c.reply(res)
        return
    parts = []
    results = iter(res)
    c.in_exec = True
    try:
        for q, name in zip(queued, names, strict=True):
            if name in _OUTSIDE:
                mark = len(c.out)
                _SPECIAL[name][0](s, c, q)
                parts.append(_decode_last(c, mark))
            else:
                parts.append(encode(next(results), c.resp3))
    finally:
        c.in_exec = False
    c.out.append(b"*%d\r\n" % len(parts) + b"".join(parts))


def _decode_last(c: Client, mark: int) -> bytes:
    data = b"".join(c.out[mark:])
    del c.out[mark:]
    return data


def _watch(s: Server, c: Client, a: list) -> None:
    if c.multi is not None:
        c.reply(RError("ERR WATCH inside MULTI is not allowed"))
        return
    for k in a[1:]:
        key = (c.db, k)
        s.watchers.setdefault(key, set()).add(c)
        c.watched.add(key)
    c.reply(OK)


def _unwatch(s: Server, c: Client, a: list) -> None:
    s.unwatch_all(c)
    c.reply(OK)


def _subscribe(s: Server, c: Client, a: list, pattern: bool = False) -> None:
    kind = b"psubscribe" if pattern else b"subscribe"
    target = s.patterns if pattern else s.channels
    mine = c.patterns if pattern else c.channels
    for ch in a[1:]:
        target.setdefault(ch, set()).add(c)
        mine.add(ch)
        c.reply(Push([kind, ch, len(c.channels) + len(c.patterns)]))


def _psubscribe(s: Server, c: Client, a: list) -> None:
    _subscribe(s, c, a, pattern=True)


def _unsubscribe(s: Server, c: Client, a: list, pattern: bool = False) -> None:
    kind = b"punsubscribe" if pattern else b"unsubscribe"
    target = s.patterns if pattern else s.channels
    mine = c.patterns if pattern else c.channels
    names = a[1:] or sorted(mine)
    if not names:
        c.reply(Push([kind, None, len(c.channels) + len(c.patterns)]))
        return
    for ch in names:
        subs = target.get(ch)
        if subs is not None:
            subs.discard(c)
            if not subs:
                del target[ch]
        mine.discard(ch)
        c.reply(Push([kind, ch, len(c.channels) + len(c.patterns)]))


def _punsubscribe(s: Server, c: Client, a: list) -> None:
    _unsubscribe(s, c, a, pattern=True)


def _publish(s: Server, c: Client, a: list) -> None:
    c.reply(s.publish(a[1], a[2]))


def _pubsub(s: Server, c: Client, a: list) -> None:
    sub = a[1].upper()
    if sub == b"CHANNELS":
        pat = a[2] if len(a) > 2 else None
        c.reply([ch for ch in s.channels if pat is None or glob_match(pat, ch)])
    elif sub == b"NUMSUB":
        out: list = []
        for ch in a[2:]:
            out += [ch, len(s.channels.get(ch, ()))]
        c.reply(out)
    elif sub == b"NUMPAT":
        c.reply(len(s.patterns))
    else:
        c.reply(RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. "
                       "Try PUBSUB HELP."))


def _random(s: Server, c: Client, a: list) -> None:
    """SPOP, SRANDMEMBER, ZRANDMEMBER, HRANDFIELD, RANDOMKEY: chosen here, at random, from
    the DRAM copy; SPOP's members are then removed by a logged ``\x00spop`` operation."""
    try:
        reply, write = chance.resolve(Ctx(s.state, c.db, s.now()), a, _rng, canonical=False)
    except RError as e:
        c.reply(e)
        return
    if write is not None:
        reply = s.write(c.db, write)
        s.touched(c.db, [a[1]])
    c.reply(reply)


_rng = random.Random()


def _blocking_pop(s: Server, c: Client, a: list) -> None:
    """BLPOP / BRPOP / BLMOVE / BRPOPLPUSH / BLMPOP / BZPOPMIN / BZPOPMAX / BZMPOP."""
    try:
        keys, t = chance.bpop_keys(a)
        timeout = chance.timeout_arg(t)
    except RError as e:
        c.reply(e)
        return

    def attempt() -> Any:
        ready = chance.bpop_ready(Ctx(s.state, c.db, s.now()), a)
        if ready is None or isinstance(ready, RError):
            return ready
        out = s.write(c.db, (b"\x00bpop", *a))
        name = a[0].lower()
        s.touched(c.db, [ready] + ([a[2]] if name in (b"brpoplpush", b"blmove") else []))
        return out

    if c.multi is None and not c.in_exec:
        res = attempt()
        if res is not None:
            c.reply(res)
            return
        s.block(c, keys, timeout, attempt)
    else:
        res = attempt()
        c.reply(res if res is not None else NULL_ARRAY)


def _info(s: Server, c: Client, a: list) -> None:
    from .info import render_info

    c.reply(render_info(s, [x.lower() for x in a[1:]]))


def _config(s: Server, c: Client, a: list) -> None:
    from .info import config_cmd

    c.reply(config_cmd(s, a))


def _command(s: Server, c: Client, a: list) -> None:
    from .info import command_cmd

    c.reply(command_cmd(s, a))


def _client(s: Server, c: Client, a: list) -> None:
    from .info import client_cmd

    c.reply(client_cmd(s, c, a))


def _time(s: Server, c: Client, a: list) -> None:
    t = time.time()
    c.reply([b"%d" % int(t), b"%d" % int((t % 1) * 1_000_000)])


def _save(s: Server, c: Client, a: list) -> None:
    s.p.checkpoint(wait=True)
    s.last_save = int(time.time())
    c.reply(OK)


def _bgsave(s: Server, c: Client, a: list) -> None:
    s.p.checkpoint(wait=False)
    s.last_save = int(time.time())
    c.reply(Status("Background saving started"))


def _lastsave(s: Server, c: Client, a: list) -> None:
    c.reply(s.last_save)


def _shutdown(s: Server, c: Client, a: list) -> None:
    s.shutdown_event.set()


def _debug(s: Server, c: Client, a: list) -> None:
    sub = a[1].upper()
    if sub == b"SLEEP" and len(a) == 3:
        time.sleep(float(a[2]))
        c.reply(OK)
    elif sub == b"JMAP":
        c.reply(OK)
    else:
        c.reply(RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'"))


_SPECIAL: dict[bytes, tuple] = {
    b"ping": (_ping, -1), b"echo": (_echo, 2), b"quit": (_quit, -1), b"select": (_select, 2),
    b"auth": (_auth, -2), b"hello": (_hello, -1), b"reset": (_reset, 1),
    b"multi": (_multi, 1), b"exec": (_exec, 1), b"discard": (_discard, 1),
    b"watch": (_watch, -2), b"unwatch": (_unwatch, 1),
    b"subscribe": (_subscribe, -2), b"psubscribe": (_psubscribe, -2),
    b"unsubscribe": (_unsubscribe, -1), b"punsubscribe": (_punsubscribe, -1),
    b"publish": (_publish, 3), b"pubsub": (_pubsub, -2),
    b"spop": (_random, -2), b"srandmember": (_random, -2),
    b"zrandmember": (_random, -2), b"hrandfield": (_random, -2),
    b"randomkey": (_random, 1),
    b"blpop": (_blocking_pop, -3), b"brpop": (_blocking_pop, -3),
    b"brpoplpush": (_blocking_pop, 4), b"blmove": (_blocking_pop, 6),
    b"blmpop": (_blocking_pop, -5), b"bzpopmin": (_blocking_pop, -3),
    b"bzpopmax": (_blocking_pop, -3), b"bzmpop": (_blocking_pop, -5),
    b"info": (_info, -1), b"config": (_config, -2), b"command": (_command, -1),
    b"client": (_client, -2), b"time": (_time, 1), b"save": (_save, -1),
    b"bgsave": (_bgsave, -1), b"lastsave": (_lastsave, 1), b"shutdown": (_shutdown, -1),
    b"debug": (_debug, -2),
}


# Connection and server commands that neither read nor write the dataset: inside MULTI they
# are answered around the transaction's one operation (see _exec).
_OUTSIDE = frozenset({b"ping", b"echo", b"time", b"lastsave", b"command", b"config",
                      b"client", b"info", b"debug", b"publish", b"pubsub", b"auth", b"hello",
                      b"bgsave", b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe",
                      b"unwatch"})
# Commands Redis 7 flags no-multi (that we have): refused while a transaction is queued.
_NO_MULTI = frozenset({b"save", b"shutdown"})


def run_server(cfg: Config) -> int:
    """Start the server; returns the exit status."""
    from .persistence import NoPersistence, PersimmonPersistence

    logging.basicConfig(level=logging.INFO, format="%(process)d:M %(asctime)s %(message)s",
                        datefmt="%d %b %Y %H:%M:%S", stream=sys.stderr)
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        loop_name = "asyncio"
    t0 = time.time()
    if cfg.persistence == "none":
        p: Any = NoPersistence(cfg.databases)
    else:
        from .persistence import PersistenceError

        try:
            p = PersimmonPersistence(cfg.databases, cfg.dir, cfg.log_size, cfg.device,
                                     cfg.verify, cfg.shadow_priority == "idle")
        except PersistenceError as e:
            log.error("cannot open the persistent pool: %s", e)
            return 1
    keys = sum(len(db.data) for db in p.state.dbs)
    log.info("persimmon-redis %s (pid %d), mode %s, event loop %s", VERSION, os.getpid(),
             p.mode, loop_name)
    if p.mode != "none":
        log.info("pool %s, device %s, %s in %.3f s, %d keys", p.pool_path, p.device,
                 "recovered" if p.recovered else "created", time.time() - t0, keys)
        survives = p.psm.survives
        log.info("the pool survives %s%s", survives,
                 "; it is on tmpfs (RAM) and is LOST AT REBOOT or power loss: --dir on a disk "
                 "file system survives power loss" if survives == "process crashes" else "")
    server = Server(cfg, p)
    try:
        asyncio.run(server.serve())
    except OSError as e:
        log.error("cannot listen on port %d: %s", cfg.port, e)
        p.close()
        return 1
    return 0
