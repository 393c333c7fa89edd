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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hiredis

from . import notify, registry
from .cmds.transactions import NOT_QUEUED
from .commands import COMMANDS, Cmd, Ctx, execute_op
from .config import POOL_FILE, Config, pool_dir_to_open
from .info import VERSION
from .keyspace import DIRTY, lookup, reused_ctx
from .patterns import glob_match
from .persistence import PersistenceError, ShadowError
from .replies import (
    E_NOAUTH,
    NULL_ARRAY,
    OK,
    QUEUED,
    Push,
    RError,
    arity_error,
    encode,
)
from .resp import FAST as _RESP_FAST

log = logging.getLogger("persimmon_redis")
_BIGNUM = re.compile(rb"[*$](\d{9,})\r\n")
# digits -> '0', '*' and '$' -> '$', anything else -> 'x': a long length shows as _BIG_HINT
_LEN_CLASSES = bytes(
    0x30 if 0x30 <= i <= 0x39 else 0x24 if i in (0x24, 0x2A) else 0x78 for i in range(256))
_BIG_HINT = b"$000000000"
_TAIL = 24
_RESP_START = (0x2A, 0x24)  # '*' starts a command, '$' continues a split one
INLINE_MAX = 64 * 1024
IOBUF_LEN = 16 * 1024  # Redis's PROTO_IOBUF_LEN: a client's query buffer (CLIENT LIST)
RESIZE_THRESHOLD = 32 * 1024  # Redis's PROTO_RESIZE_THRESHOLD (and PROTO_MBULK_BIG_ARG)
_BULK_HEADER = re.compile(rb"\$[0-9]+\Z")
_PARSE = _RESP_FAST.parse_commands if _RESP_FAST is not None else None
_wire_size = _RESP_FAST.wire_size if _RESP_FAST is not None else None
_GET_REPLY = _RESP_FAST.get_reply if _RESP_FAST is not None else None
_SET_ARGS = _RESP_FAST.set_args if _RESP_FAST is not None else None
_time_ns = time.time_ns


DENIED = (
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no "
    b"password is set for the default user. In this mode connections are only accepted from "
    b"the loopback interface. If you want to connect from external computers to Redis you "
    b"may adopt one of the following solutions: 1) Just disable protected mode sending the "
    b"command 'CONFIG SET protected-mode no' from the loopback interface by connecting to "
    b"Redis from the same host the server is running, however MAKE SURE Redis is not "
    b"publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change "
    b"permanent. 2) Alternatively you can just disable the protected mode by editing the "
    b"Redis configuration file, and setting the protected mode option to 'no', and then "
    b"restarting the server. 3) If you started the server manually just for testing, "
    b"restart it with the '--protected-mode no' option. 4) Setup a an authentication "
    b"password for the default user. NOTE: You only need to do one of the above things in "
    b"order for the server to start accepting connections from the outside.\r\n")


def is_local_address(ip: str) -> bool:
    """Redis's islocalClient: only 127.0.0.1 and ::1 (and a Unix socket) are local; other
    loopback addresses such as 127.0.0.2 are not.  An IPv4 address mapped into IPv6 counts
    as the IPv4 address."""
    if ip.startswith("::ffff:"):
        ip = ip[7:]
    return ip in ("127.0.0.1", "::1")


def _now_ms() -> int:
    """The server's clock, in milliseconds since the epoch (what operations carry)."""
    return _time_ns() // 1_000_000


class Client(asyncio.Protocol):
    """One connection.

    uvloop reads every connection into one shared buffer and hands over the bytes read;
    what a connection holds between reads is only what the parser keeps of an incomplete
    command (CLIENT LIST's ``qbuf``).  CLIENT LIST's ``qbuf-free`` and the cron that resizes
    it follow Redis's query buffer, sized as Redis sizes it: 16 KiB (PROTO_IOBUF_LEN) from
    the first read, the whole of a big argument (32 KiB or more) while one arrives, given
    back by ``resize_query_buffer`` (Redis's clientsCronResizeQueryBuffer) when the client
    idles or its recent reads were much smaller.  (A real buffer per connection, read into
    with BufferedProtocol, was measured at 0.7 us more server CPU per GET, 6 %, for a
    figure nothing else reads: docs/redis.md.)"""

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
        self.watched_stale: set = set()  # watched keys already expired when watched
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
        self.qbuf_size = 0  # Redis's query buffer for this client (16 KiB from the first read)
        self.qb_peak = 0  # the largest read since the last resize_query_buffer (0: no read)
        self.last_io = time.monotonic()  # (brought up to date by the clients' cron)
        self.nocr = 0  # bytes at the end of what was read that follow its last '\r'
        self.crhead = b""  # the bytes before that '\r'
        self.inline = b""
        # bytes given to the hiredis reader that it has not returned as commands: the fast
        # path (whole commands read at once, resp.py) is taken only when it holds none
        self.held = 0
        self.last_cmd = b""
        self.paused = False
        self.in_exec = False
        self.block_timer: Any = None
        # CLIENT REPLY ON/OFF/SKIP: a muted client's commands go through _muted_dispatch
        self.dispatch_fn = server.safe_dispatch
        self.reply_mode = b"ON"
        self.switching = False
        self.pushed: list[int] = []
        # (disk pools with --commit-overlap) how many of the replies queued in ``out`` are
        # reads of durable data, counted only while all of them are (docs/device.md,
        # "Reads that wait for no commit"); anything that removes replies from ``out``
        # sets it to 0.  The window of commits (Server.window) those reads were made in.
        self.durable_reads = 0
        self.durable_window = 0

    def set_reply_mode(self, mode: bytes) -> None:
        self.reply_mode = mode
        fn = self.server.safe_dispatch if mode == b"ON" else _muted_dispatch
        if fn is not self.dispatch_fn and not self.closing:
            # the read loop holds the dispatch function in a local: "closing" makes it
            # look at the client after this command, "switching" says why
            self.closing = self.switching = True
        self.dispatch_fn = fn

    # -------------------------------------------------------------- transport
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        s = self.server
        if s.cfg.protected_mode and s.cfg.requirepass is None and peer \
                and not is_local_address(peer[0]):
            transport.write(DENIED)
            transport.close()
            self.closing = True
            s.stats["rejected"] += 1
            return
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

    def resize_query_buffer(self, now: float) -> None:
        """Redis's clientsCronResizeQueryBuffer, on the query buffer (only when it wastes
        more than 4 KiB): give it back when the client has been idle more than 2 s, or cut
        it down to the largest recent read when it is over 32 KiB and more than twice
        that.  Called for every client every 1/hz s, it also keeps the client's last I/O
        time (CLIENT LIST's ``idle``) to that precision: a read since the last call left
        ``qb_peak`` above 0 (the clock is not read for every request)."""
        if self.qb_peak:
            self.last_io = now
        size = self.qbuf_size
        if size > 4096:
            if now - self.last_io > 2:
                self.qbuf_size = 0
            elif size > RESIZE_THRESHOLD and size // 2 > self.qb_peak:
                self.qbuf_size = max(self.qb_peak, self.reader.len())
        self.qb_peak = 0

    def query_buffer(self) -> tuple[int, int]:
        """(bytes of an incomplete command held, size of the read buffer): CLIENT LIST's
        qbuf and qbuf-free."""
        # (hiredis keeps up to 1 KiB of what it parsed in its buffer: nothing is held
        # when it has no unread byte)
        held = self.reader.len() if self.reader.has_data() else 0
        return held + len(self.inline), self.qbuf_size

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        size = len(data)
        if size > self.qb_peak:
            self.qb_peak = size
            if self.qbuf_size < IOBUF_LEN:  # (the first read since it was given back)
                self.qbuf_size = IOBUF_LEN
        if not self.held and not self.tail and not self.inline and _PARSE is not None:
            # The fast path: a chunk of whole plain commands while the reader holds
            # nothing (every client sends those).  Anything else is declined (None) and
            # read the general way below, which says what is wrong with it.
            server = self.server
            max_bulk = server.cfg.proto_max_bulk_len
            # GET answered at once (no argument list, no dispatch, no handler call), and a
            # plain SET (no options) logged and applied at once, for a client that
            # safe_dispatch's fast path would serve (authenticated, outside MULTI and
            # pub/sub, not blocked, replies on).  (A command whose name starts with neither
            # 'g' nor 's', data[8] in "*2\r\n$3\r\nGET", goes on at once.)
            first = data[8] | 0x20 if size > 18 else 0
            if (first == 0x67 or first == 0x73) and self.authed and self.multi is None \
                    and self.blocked is None \
                    and not self.backlog and not self.channels and not self.patterns \
                    and self.reply_mode == b"ON":
                if first == 0x67:
                    # in a database where no key has a TTL; _GET_REPLY declines (None)
                    # anything but one plain GET of a missing key or a plain string
                    db = server.state.dbs[self.db]
                    if not db.expires:
                        reply = _GET_REPLY(data, max_bulk, db.data, self.resp3)
                        if reply is not None:
                            _GET.calls += 1
                            self.last_cmd = b"get"
                            out = self.out
                            if server.tracking and not out and not server.untracked_in_flight:
                                # (safe_dispatch's read of durable data, inlined for a
                                # client with no other reply queued; the key is what
                                # follows "*2\r\n$3\r\nGET\r\n$<length>\r\n")
                                written = server.written
                                if not written or written.get(
                                        (self.db, data[data.index(b"\n", 14) + 1 : -2]), -1) \
                                        < server.durable_below:
                                    self.durable_reads = 1
                                    self.durable_window = server.window
                            out.append(reply)
                            self._scheduled(data)
                            return
                elif not server.watchers and not server.blocked and not server.notify_on:
                    # (while nobody watches a key or waits on one, and keyspace
                    # notifications are off: safe_dispatch would not call write_and_touch)
                    argv = _SET_ARGS(data, max_bulk)
                    if argv is not None and server.p.log_write(
                            (self.db, _time_ns() // 1_000_000, argv)):
                        # Logged as execute_rw logs it; now what execute_op's plain SET
                        # does to the DRAM copy (keyspace.set_value, and the change
                        # counted), as the shadow's replay of the same operation does.
                        key = argv[1]
                        db = server.state.dbs[self.db]
                        db.data[key] = argv[2]
                        marks = db.raw
                        if marks and key in marks:
                            marks.discard(key)
                        expires = db.expires
                        if expires and key in expires:
                            del expires[key]
                        DIRTY[0] += 1
                        _SET.calls += 1
                        self.last_cmd = b"set"
                        if server.tracking:  # (safe_dispatch's tracking of a written key)
                            server.written[(self.db, key)] = server.window
                            server.window_writes += 1
                        self.out.append(b"+OK\r\n")
                        self._scheduled(data)
                        return
            commands = _PARSE(data, max_bulk)
            if commands is not None:
                if len(commands) == 1 and self.blocked is None and not self.backlog:
                    # (one command, the unpipelined client's case: _run's loop inlined)
                    self.dispatch_fn(self, commands[0])
                    if self.closing:
                        if not self.switching:
                            return
                        self.closing = self.switching = False
                elif not self._run(commands):
                    return
                self._scheduled(data)
                return
        reader = self.reader
        # A new command starting with anything but '*' is an inline command (telnet).  The
        # reader holds part of a command when it has unread bytes, or when a chunk ended
        # between two elements of an array, and then the next chunk starts with '$'.
        # (hiredis consumes a type byte that ends a chunk, so then has_data() is False too)
        if self.inline or (data[0] not in _RESP_START and not reader.has_data()
                           and not self.tail):
            data = self._inline(data)
            if data is None:
                return
        if self.tail:
            if self._too_big(self.tail + data):
                return
        elif self._too_big(data):
            return
        reader.feed(data)
        commands = []
        error = None
        while True:
            try:
                argv = reader.gets()
            except hiredis.ProtocolError as e:
                if data.startswith(b"*-") and b"\n" in data and "out of range" in str(e):
                    # Redis ignores a negative multibulk count ("*-10"): start afresh after
                    # it (hiredis only accepts -1)
                    self.reader = hiredis.Reader()
                    self.held = 0
                    rest = data[data.find(b"\n") + 1 :]
                    if rest:
                        self.data_received(rest)
                    return
                error = _protocol_message(str(e))
                break
            if argv is False:
                break
            # every element must be a bulk string: join() raises on anything else (C speed)
            if type(argv) is not list or not argv:
                if argv is None or argv == []:
                    if _PARSE is not None:
                        self.held -= _wire_size(argv)
                    continue  # "*-1", "*0": Redis ignores an empty multibulk
                error = "expected '$', got something else"
                break
            try:
                b"".join(argv)
            except TypeError:
                error = "expected '$', got something else"
                break
            if _PARSE is not None:
                self.held -= _wire_size(argv)
            commands.append(argv)
        if _PARSE is not None:
            self.held += len(data)
        if commands and not self._run(commands):
            return
        if error is not None:
            self.protocol_error(error)
            return
        # Redis refuses a '*' or '$' header line still without its '\r' after 64 KiB
        # (PROTO_INLINE_MAX_SIZE); hiredis would buffer it for ever.  More than 64 KiB are
        # waiting (hiredis's buffer keeps under 1 KiB of what it parsed) and none of it is a
        # '\r': that is such a line, unless the last '\r' ended the "$<length>" header of a
        # bulk string that is still arriving (a long payload has no '\r' to find).
        i = data.rfind(b"\r")
        if i >= 0:
            self.nocr = len(data) - 1 - i
            self.crhead = data[i - 21 : i] if i >= 21 else (self.tail + data[:i])[-21:]
            if self.nocr and reader.has_data():
                m = _BULK_HEADER.search(self.crhead)
                if m is not None:  # a bulk string arriving: big ones are read whole
                    n = int(self.crhead[m.start() + 1 :]) + 2
                    if RESIZE_THRESHOLD <= n <= self.server.cfg.proto_max_bulk_len + 2:
                        # Redis reads such a bulk whole into a buffer of its size, and
                        # counts that size as the read's (querybuf_peak): the cron does not
                        # cut the buffer before the next read
                        if n > self.qbuf_size:
                            self.qbuf_size = n
                        if n > self.qb_peak:
                            self.qb_peak = n
        else:
            self.nocr += len(data)
            if self.nocr > INLINE_MAX and reader.len() > INLINE_MAX \
                    and not _BULK_HEADER.search(self.crhead):
                self.protocol_error("too big mbulk count string")
                return
        # a length split across two chunks is checked with the end of the previous one
        self.tail = data[-_TAIL:] if reader.has_data() or data[-1] in _RESP_START else b""
        # Replies go out once per event-loop round, after the group commit: writing each at
        # once was measured slower (a wake-up of the client per reply instead of per round).
        self.server.schedule(self)

    def _scheduled(self, data: bytes) -> None:
        """After the fast path ran the whole commands of ``data``: the bookkeeping the
        general path leaves, and the replies scheduled (Server.schedule, inlined)."""
        self.nocr = 1
        self.crhead = data[-23:-2]
        server = self.server
        server.pending[self.id] = self
        if not server.flush_scheduled:
            server.flush_scheduled = True
            server.loop.call_soon(server.flush)

    def _run(self, commands: list) -> bool:
        """Dispatch ``commands`` in order (or keep them while the client is blocked);
        False when the client is closing (the rest are not run)."""
        dispatch = self.dispatch_fn
        for argv in commands:
            if self.blocked is not None or self.backlog:
                self.backlog.append(argv)
            else:
                dispatch(self, argv)
            if self.closing:
                if not self.switching:
                    return False
                # CLIENT REPLY changed how this client's commands are dispatched
                self.closing = self.switching = False
                dispatch = self.dispatch_fn
        return True

    def send_out(self, count: int | None = None) -> None:
        """Write the queued replies, or the first ``count`` of them (bounded by the client
        output buffer limit)."""
        out = self.out
        if count is not None and count < len(out):
            data = b"".join(out[:count])
            del out[:count]
        else:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
        self.durable_reads = 0
        t = self.transport
        t.write(data)
        if t.get_write_buffer_size() > self.server.cfg.client_output_limit:
            self.over_limit()

    def over_limit(self) -> None:
        """The replies waiting to be sent exceed the client output buffer limit: close."""
        log.warning("client %s exceeded the output buffer limit; closing", self.addr)
        self.transport.abort()
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
                    self.dispatch_fn(self, argv)
                if self.closing:
                    if not self.switching:
                        return None
                    self.closing = self.switching = False
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
            if t is RError:
                self.server.count_error(v.msg, self.last_cmd)
            elif t is Push and self.reply_mode != b"ON":
                self.pushed.append(len(self.out))  # (CLIENT REPLY OFF keeps pub/sub)
            self.out.append(encode(v, self.resp3))


class ShutdownInterrupt(BaseException):
    """Raised by the signal handler inside a read command to abandon it (not an Exception,
    so no handler's ``except Exception`` swallows it)."""


def _in_read_command(frame: Any) -> bool:
    """Whether the interrupted code runs a client's command and no write is being applied
    (nothing of the state machine's ``execute_op`` or of the persistence layer on the
    stack)."""
    in_dispatch = False
    f = frame
    while f is not None:
        code = f.f_code
        if code is _EXECUTE_OP_CODE or f.f_globals.get("__name__", "").startswith(
                ("persimmon.", "persimmon_redis.persistence")):
            return False
        if code is _SAFE_DISPATCH_CODE:
            in_dispatch = True
        f = f.f_back
    return in_dispatch


def _muted_dispatch(c: Client, argv: list) -> None:
    """A command of a client with CLIENT REPLY OFF or SKIP: its reply is dropped (pub/sub
    messages still arrive; CLIENT REPLY ON answers)."""
    mode = c.reply_mode
    mark = len(c.out)
    c.pushed = []
    c.server.safe_dispatch(c, argv)
    if c.reply_mode == b"ON":  # it was CLIENT REPLY ON: its OK is sent
        return
    keep = [c.out[i] for i in c.pushed if i >= mark]  # pub/sub messages still go out
    del c.out[mark:]
    c.out += keep
    c.durable_reads = 0
    if mode == b"SKIP" and c.reply_mode == b"SKIP":  # the one skipped reply is done
        c.set_reply_mode(b"ON")


def _protocol_message(msg: str) -> str:
    m = msg.lower()
    if "multi" in m or "aggregate" in m:
        return "invalid multibulk length"
    if "bulk" in m:
        return "invalid bulk length"
    if "type byte" in m:
        got = re.search(r'got "(.)"', msg)
        return f"expected '$', got '{got.group(1)}'" if got else \
            "expected '$', got something else"
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
        # (disk pools, --commit-overlap) the commits being written, oldest first, each with
        # the replies waiting for it: client id -> (client, how many of its queued replies
        # the commit covers: those queued when it began; later ones wait for a later one)
        self.commits: deque[tuple[Any, dict[int, tuple[Client, int]], tuple[int, bool]]] = \
            deque()
        self.held_next: list = []  # batches made while no more commits could begin
        # Reads that wait for no commit (docs/device.md).  A window is the writes logged
        # between two commit_begin, numbered from 0: ``window`` is the one being made,
        # every one below ``durable_below`` is durable.  ``written`` maps each (db, key)
        # the fast path wrote to the window of its last write (pruned of durable ones now
        # and then); ``window_writes`` counts those writes in this window, and the PSM's
        # count of logged operations, ``window_logged`` when it began, says whether any
        # other write was logged meanwhile (then any read may have seen it: none of this
        # window leaves early, nor while its commit is in flight: ``untracked_in_flight``).
        # Tracked on a disk pool, with or without --commit-overlap (only a disk pool
        # overlaps): its commit is a synced write, and the replies of such reads leave
        # before it ("Reads sent before the commit"); elsewhere (PM, tmpfs, none) a commit
        # costs no wait worth the tracking.
        self.tracking = bool(persistence.commit_waits)
        self.written: dict[tuple[int, bytes], int] = {}
        self.prune_at = 4096
        self.window = 0
        self.durable_below = 0
        self.window_writes = 0
        self.window_logged = persistence.logged_ops() if self.tracking else 0
        self.untracked_in_flight = 0
        self.durable_replies = 0  # (INFO: replies sent without waiting for a commit)
        self._committer: ThreadPoolExecutor | None = None
        self.loop: Any = None
        self.channels: dict[bytes, set] = {}
        self.patterns: dict[bytes, set] = {}
        self.watchers: dict[tuple, set] = {}
        self.blocked: dict[tuple, deque] = {}
        self.started = time.time()
        self.stats = {"connections": 0, "expired": 0, "rejected": 0}
        self.run_id = os.urandom(20).hex()
        self.errors: dict[str, int] = {}  # INFO errorstats: error code -> replies
        self.rejecting = False
        self.last_save = int(time.time())
        DIRTY[0] = 0  # (a recovery's replay is no change since the last save)
        self.shutdown_event: asyncio.Event | None = None
        self.servers: list = []
        self.closed = False
        self.exit_status = 0  # (1 after fail())
        self._interrupting = False
        self.signalled_at: float | None = None
        self.ready_keys: list[tuple[int, bytes]] = []
        self.notify_on = False
        self.serving = False
        self._exp_walk: dict[int, tuple] = {}

    @property
    def ncommands(self) -> int:
        """total_commands_processed: the sum of the table's call counts."""
        return sum(c.calls for c in COMMANDS.values())

    def count_error(self, msg: str, name: bytes = b"") -> None:
        """INFO errorstats, and the failed calls of the command that replied it (a command
        refused before it ran counts as rejected instead)."""
        cmd = COMMANDS.get(name)
        if cmd is not None and not self.rejecting:
            cmd.failed += 1
        code = msg.split(" ", 1)[0]
        if not code.isupper() or len(self.errors) >= 128 and code not in self.errors:
            code = "ERR"  # (Redis bounds the table too)
        self.errors[code] = self.errors.get(code, 0) + 1

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
        if self.p.overlapped and (self._send_durable_reads(pending) or self.commits
                                  or self.held_next):
            if len(self.commits) >= self.p.in_flight:
                # these replies may have seen the writes in flight (and made more, that
                # only a later commit makes durable): they wait for a commit to end
                self.held_next.append(pending)
            else:
                self._commit_overlapped([pending])
            return
        # (with --commit-overlap too, when no commit is in flight and no reply could
        # leave before this one ends: nothing would go on while it is written, and a
        # commit written here, with the loop waiting, costs less CPU than one overlapped)
        if self.tracking and not self.p.overlapped:
            # a disk pool: the replies of reads of durable data leave before the synced
            # write, and their clients' next requests are on their way while it is written
            self._send_durable_reads(pending)
        try:
            self.p.sync()  # group commit: the writes behind these replies are durable now
        except PersistenceError as e:
            self.fail(f"the operation log could not be made durable: {e}")
            return
        if self.tracking:
            self._all_durable()
        self._send(pending)
        self._close_finished()

    def fail(self, why: str) -> None:
        """Persistence failed for good (the log cannot be written, or the shadow keeps
        failing and the log is full): stop, with exit status 1, without sending the replies
        that wait for a commit (every write a client was told succeeded is in the log)."""
        if self.exit_status:
            return  # (said once: the commands read meanwhile are never acknowledged)
        log.critical("%s: stopping; the replies that depended on it are not sent", why)
        self.pending, self.held_next = {}, []
        self.commits.clear()
        self.exit_status = 1
        self.closed = True
        if self.shutdown_event is not None:
            self.shutdown_event.set()

    def _send(self, pending: dict) -> None:
        limit = self.cfg.client_output_limit
        for c in pending.values():
            out = c.out
            if out and (t := c.transport) is not None:
                # (Client.send_out, inlined: one call fewer per client and round)
                t.write(out[0] if len(out) == 1 else b"".join(out))
                out.clear()
                c.durable_reads = 0
                if t.get_write_buffer_size() > limit:
                    c.over_limit()

    def _close_finished(self) -> None:
        if not self.to_close:  # (called after every batch of replies)
            return
        # (a client whose last replies still wait for a commit is closed after they left)
        waiting = set()
        for c in self.to_close:
            if c.transport is not None:
                if c.out and not c.transport.is_closing():
                    waiting.add(c)
                else:
                    c.transport.close()
        self.to_close = waiting

    # A disk pool's group commit is a synced write (0.1-0.5 ms here): with --commit-overlap
    # it is written by another thread while the loop goes on reading and executing
    # requests, and up to p.in_flight of them at once (a disk serves several synced writes
    # together).  Every reply waits for the commit begun after it was made; the writes made
    # meanwhile are in a later commit.  Commits end in the order they began, so replies
    # leave in the order they were made, each after the writes it may depend on are durable.
    def _commit_overlapped(self, batches: list) -> None:
        commits = self.commits
        ticket = self.p.commit_begin()
        if ticket is None:  # nothing logged since the last commit began
            if not commits:  # (and it ended: what these replies saw is durable)
                for b in batches:
                    self._send(b)
                self._close_finished()
                return
            # they may have seen writes of the last commit in flight: they wait for it
            last = commits[-1][1]
            for b in batches:
                for c in b.values():
                    last[c.id] = (c, len(c.out))
            return
        # A client's replies queued now are what this commit covers (their writes were
        # logged before it began); replies it gets while the commit is written may depend
        # on writes only a later commit makes durable: they stay queued until then.
        commits.append((ticket, {c.id: (c, len(c.out)) for b in batches for c in b.values()},
                        self._close_window()))
        if self.p.commit_fd is not None:
            return  # (being written: _commit_ready is called when it is)
        if self._committer is None:
            self._committer = ThreadPoolExecutor(self.p.in_flight,
                                                 thread_name_prefix="log-commit")
        fut = self.loop.run_in_executor(self._committer, self.p.commit_write, ticket)
        fut.add_done_callback(lambda _f: self._commit_ready())

    def _close_window(self) -> tuple[int, bool]:
        """A commit began: the writes logged since the last one are its window.  Returns
        (its number, whether some of its writes went untracked) for :meth:`_durable`."""
        if not self.tracking:
            return (0, False)
        logged = self.p.logged_ops()
        untracked = self._untracked(logged)
        if untracked:
            self.untracked_in_flight += 1
        window = self.window
        self.window = window + 1
        self.window_writes = 0
        self.window_logged = logged
        return (window, untracked)

    def _untracked(self, logged: int) -> bool:
        """Whether a write other than the fast path's was logged in this window (the PSM
        counted ``logged`` operations in all)."""
        return logged - self.window_logged != self.window_writes

    def _all_durable(self) -> None:
        """Every write logged so far is durable (a sync returned)."""
        if self.written:
            self.written.clear()
        self.window += 1
        self.durable_below = self.window
        self.window_writes = 0
        self.window_logged = self.p.logged_ops()
        self.untracked_in_flight = 0

    def _durable(self, window: tuple[int, bool]) -> None:
        """A commit ended: its window's writes are durable (and every earlier one's)."""
        number, untracked = window
        self.durable_below = number + 1
        if untracked:
            self.untracked_in_flight -= 1
        written = self.written
        if len(written) > self.prune_at:  # (amortized: at most once per as many writes)
            self.written = written = {k: w for k, w in written.items() if w > number}
            self.prune_at = max(4096, 2 * len(written))

    def _send_durable_reads(self, pending: dict) -> int:
        """Send now the replies of clients whose queued replies are all reads of durable
        data made in this window, unless a write of this window went untracked; returns
        how many were sent."""
        if self._untracked(self.p.logged_ops()):
            return 0  # (a write other than the fast path's: they may have seen it)
        window = self.window
        ready = {}
        sent = 0
        for c in pending.values():
            n = c.durable_reads
            if n and n == len(c.out) and c.durable_window == window \
                    and c.transport is not None:
                sent += n
                ready[c.id] = c
        if ready:
            self._send(ready)
        self.durable_replies += sent
        return sent

    def _commit_ready(self) -> None:
        """A commit's writes are over (the background writers' descriptor is readable, or
        a Python thread's write returned): end, oldest first, those whose writes are over,
        and send the replies that waited for them."""
        if self.closed:
            return
        commits = self.commits
        if self.p.commit_fd is not None:
            self.p.clear_commit_signal()  # (a commit written after this signals again)
        ended = 0
        while commits and self.p.commit_written(commits[0][0]):
            ticket, held, window = commits.popleft()
            try:
                self.p.commit_end(ticket)
            except Exception as e:
                self.fail(f"the operation log could not be made durable: {e!r}")
                return
            ended += 1
            self._durable(window)
            for c, n in held.values():
                if n and c.transport is not None:
                    c.send_out(n)
                    # (a later commit's count for this client included these replies)
                    for _t, later, _w in commits:
                        if (h := later.get(c.id)) is not None:
                            later[c.id] = (c, max(0, h[1] - n))
        if not ended:
            return
        later, self.held_next = self.held_next, []
        if later:
            self._commit_overlapped(later)
        else:
            self._close_finished()

    def settle_commits(self) -> None:
        """End the commits in flight now and send the replies that waited for them (for
        code that must send replies at once: the replies to clients while a script is
        busy)."""
        if not self.commits and not self.held_next:
            return
        self.p.sync()  # (ends those in flight, and commits what was logged since)
        if self.tracking:
            self._all_durable()
        held = [{i: c for i, (c, _n) in h.items()} for _t, h, _w in self.commits]
        held += self.held_next
        self.commits.clear()
        self.held_next = []
        for b in held:
            self._send(b)  # (every reply: the sync made every logged write durable)
        self._close_finished()

    # -------------------------------------------------------------- dispatch
    def now(self) -> int:
        return _now_ms()

    def busy_threshold(self) -> float:
        """Seconds a script may run before other clients get BUSY (busy-reply-threshold,
        alias lua-time-limit; 0 = never)."""
        return int(self.cfg.values["busy-reply-threshold"]) / 1000

    def safe_dispatch(self, c: Client, argv: list) -> None:
        """:meth:`dispatch`, with any unexpected failure turned into an error reply for this
        client only (and logged): one bad command never takes the server down."""
        try:
            name = argv[0].lower()
            c.last_cmd = name
            cmd = _DATA.get(name)
            # the fast path: a plain data command outside MULTI, pub/sub and AUTH
            if cmd is not None and c.authed and c.multi is None and not c.channels \
                    and not c.patterns:
                n = len(argv)
                arity = cmd.arity
                if n == arity or (arity < 0 and n >= -arity):
                    cmd.calls += 1  # (INFO commandstats; the total is their sum)
                    durable = False
                    if cmd.write:
                        if self.watchers or self.blocked:
                            self.write_and_touch(c, cmd, argv)
                            return
                        res = self.p.execute_rw((c.db, _time_ns() // 1_000_000, tuple(argv)))
                        if self.tracking and cmd in _ONE_KEY:
                            self.written[(c.db, argv[1])] = self.window
                            self.window_writes += 1
                    else:
                        try:
                            res = cmd.fn(reused_ctx(self.state, c.db,
                                                    _time_ns() // 1_000_000), argv)
                        except RError as e:
                            res = e
                        if self.tracking and cmd in _ONE_KEY:
                            # a read of a key no write in flight touched, by a client whose
                            # queued replies are all such reads of this window, may leave
                            # before the commits in flight end
                            reads = c.durable_reads
                            durable = reads == len(c.out) and not self.untracked_in_flight \
                                and (not reads or c.durable_window == self.window) \
                                and self.written.get((c.db, argv[1]), -1) < self.durable_below
                    if type(res) is bytes:
                        c.out.append(b"$%d\r\n%b\r\n" % (len(res), res))
                    elif res is OK:
                        c.out.append(b"+OK\r\n")
                    else:
                        c.reply(res)  # (an error reply counts as a failed call there)
                    if durable:
                        c.durable_reads += 1
                        c.durable_window = self.window
                    return
            self.dispatch(c, argv, name)
        except ShutdownInterrupt:
            log.warning("%r interrupted by the shutdown", argv[:1])
            c.reply(RError("ERR interrupted: the server is shutting down"))
            c.closing = True  # the rest of this client's pipeline is not run
        except Exception as e:
            if isinstance(e, ShadowError):  # (the log is full and cannot drain)
                self.fail(f"{argv[:1]!r} cannot be logged: {e}")
            elif isinstance(e, PersistenceError):
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
        cmd = registry.lookup(name)
        if cmd is None:
            args = "".join(f"'{a[:128].decode('utf-8', 'replace')}' " for a in argv[1:])
            err = RError(f"ERR unknown command '{argv[0][:128].decode('utf-8', 'replace')}', "
                         f"with args beginning with: {args}")
            if c.multi is not None:
                c.multi_error = True
            c.reply(err)
            return
        if not cmd.arity_ok(len(argv)):
            if c.multi is not None:
                c.multi_error = True
            cmd.rejected += 1
            self.rejecting = True
            c.reply(arity_error(name.decode("utf-8", "replace")))
            self.rejecting = False
            return
        if c.multi is not None and name not in NOT_QUEUED:
            if cmd.has("no-multi"):
                c.multi_error = True
                c.reply(RError("ERR Command not allowed inside a transaction"))
                return
            c.multi.append(argv)
            c.reply(QUEUED)
            return
        cmd.calls += 1
        if cmd.server:
            cmd.fn(self, c, argv)
            return
        self.run(c, cmd, argv)

    def write_and_touch(self, c: Client, cmd: Cmd, argv: list) -> None:
        """A write while some client watches a key or is blocked, or while keyspace
        notifications are on: tell them."""
        pre = cmd.touches(self, c.db, argv) if cmd.touches is not None else None
        keys = cmd.keys(argv)
        existed = self.existing(c.db, keys) if self.notify_on or self.watchers else None
        shapes = self.stream_shapes(c.db, argv, keys) if self.notify_on else None
        res = self.p.execute_rw((c.db, self.now(), tuple(argv)))
        if existed is not None and self.notify_on:  # (before blocked clients are served)
            self.notify_write(c.db, argv, res, existed, shapes)
        if pre is not None:
            self.touched_pairs(pre)
        else:
            if existed is not None:  # a key missing before and after was not modified
                now = self.existing(c.db, keys)
                keys = [k for k in keys if existed.get(k) or now.get(k)]
            self.touched(c.db, keys)
        c.reply(res)

    # -------------------------------------------------------------- notifications
    def config_changed(self) -> None:
        """After CONFIG SET: keyspace notifications on or off.  While they are on, writes
        leave the fast path (which never pays for them)."""
        flags = self.cfg.notify
        on = "K" in flags or "E" in flags
        if on != self.notify_on:
            self.notify_on = on
            for n, cmd in COMMANDS.items():
                if cmd.write and n in _DATA_ALL:
                    if on:
                        _DATA.pop(n, None)
                    else:
                        _DATA[n] = cmd

    def existing(self, db: int, keys: list) -> dict:
        ctx = Ctx(self.state, db, self.now())
        return {k: lookup(ctx, k) is not None for k in keys}

    def stream_shapes(self, db: int, argv: list, keys: list) -> dict | None:
        """Before a stream write, with notifications on: the shapes its events are derived
        from (``notify.stream_events``); None for other commands."""
        if argv[0].lower() not in notify.STREAM_WRITES:
            return None
        ctx = Ctx(self.state, db, self.now())
        return {k: notify.stream_shape(lookup(ctx, k)) for k in keys}

    def notify_write(self, db: int, argv: list, res: Any, existed: dict,
                     shapes: dict | None = None, shapes_after: dict | None = None) -> None:
        ctx = Ctx(self.state, db, self.now())
        name = argv[0].lower()

        def before(k: bytes) -> bool:
            return existed.get(k, False)

        def after(k: bytes) -> bool:
            return lookup(ctx, k) is not None

        evs = notify.new_keys(list(existed), before, after)
        evs += notify.events(name, argv, res, before, after)
        if shapes is not None:
            if shapes_after is None:
                shapes_after = {k: notify.stream_shape(lookup(ctx, k)) for k in shapes}
            evs += notify.stream_events(name, argv, res, shapes, shapes_after)
        for cls, ev, key in evs:
            self.notify(cls, ev, key, db)

    def notify(self, cls: str, event: str, key: bytes, db: int) -> None:
        """Publish one keyspace event if its class is enabled (Redis's
        notifyKeyspaceEvent)."""
        flags = self.cfg.notify
        if not self.notify_on or (cls not in flags and not (
                flags.startswith("A") and cls in "g$lshzxetd")):
            return
        if "K" in flags:
            self.publish(b"__keyspace@%d__:%b" % (db, key), event.encode())
        if "E" in flags:
            self.publish(b"__keyevent@%d__:%b" % (db, event.encode()), key)

    def touched_pairs(self, pairs: list) -> None:
        by_db: dict[int, list] = {}
        for db, k in pairs:
            by_db.setdefault(db, []).append(k)
        for db, keys in by_db.items():
            self.touched(db, keys)

    def run(self, c: Client, cmd: Cmd, argv: list) -> None:
        if cmd.precheck is not None:
            err = cmd.precheck(self, c.db, argv)
            if err is not None:
                c.reply(err)
                return
        if cmd.write:
            if self.watchers or self.blocked or self.notify_on:
                self.write_and_touch(c, cmd, argv)
                return
            res = self.p.execute_rw((c.db, self.now(), tuple(argv)))
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
            ready = self.ready_keys
            for k in keys:
                if (db, k) in self.blocked:
                    ready.append((db, k))
            if ready and not self.serving:
                self.serve_ready()

    def serve_ready(self) -> None:
        """Serve the clients blocked on keys that became ready, as Redis does after a
        command (or a whole transaction): in order, each pop seeing the state the previous
        ones left, never re-entered (a served BLMOVE that readies its target key appends to
        the queue this loop works through)."""
        self.serving = True
        try:
            ready = self.ready_keys
            while ready:
                db, k = ready.pop(0)
                self.serve_blocked(db, k)
        finally:
            self.serving = False

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
        c.watched_stale.clear()
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
        while c.backlog and c.blocked is None:
            if c.closing:
                if not c.switching:
                    break
                c.closing = c.switching = False
            c.dispatch_fn(c, c.backlog.popleft())

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
                self.clients_cron()
            except Exception:  # never let the cycle die
                log.exception("active expiry cycle failed")

    def clients_cron(self) -> None:
        """Resize the clients' query buffers as CLIENT LIST reports them, and bring their
        last I/O times up to date (Redis's clientsCron looks at every client about once a
        second; here every client every 1/hz s)."""
        now = time.monotonic()
        for c in self.clients.values():
            c.resize_query_buffer(now)

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
                    if self.notify_on:
                        for k in dead:
                            self.notify("x", "expired", k, dbi)
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
    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: shut down.  The event loop's own handler only runs once the
        loop gets control back, which a long command (KEYS over millions of keys, DEBUG
        SLEEP) would delay indefinitely; this one runs inside the command, and abandons it
        if it only reads (a write that is being applied is let finish, so the DRAM copy
        and the log never disagree about an operation)."""
        if self.shutdown_event is None or self.closed:
            return
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
        self.loop.call_soon_threadsafe(self.shutdown_event.set)
        if not self._interrupting and _in_read_command(frame):
            self._interrupting = True
            log.info("received %s during a command: abandoning it to shut down",
                     signal.Signals(signum).name)
            raise ShutdownInterrupt()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.p.overlapped and self.p.commit_fd is not None:
            self.loop.add_reader(self.p.commit_fd, self._commit_ready)
        self.shutdown_event = asyncio.Event()
        for host in self.cfg.bind:
            srv = await self.loop.create_server(lambda: Client(self), host, self.cfg.port,
                                                reuse_address=True, backlog=1024)
            self.servers.append(srv)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                # the loop's handler wakes it when idle; ours runs between two bytecodes
                # of a long command as well (see _on_signal)
                self.loop.add_signal_handler(sig, self.shutdown_event.set)
                signal.signal(sig, self._on_signal)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        self.config_changed()  # (notify-keyspace-events from redis.conf)
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
        if self.p.overlapped and self.p.commit_fd is not None:
            self.loop.remove_reader(self.p.commit_fd)
        if self.p.close() is not None:  # (it kept the log: the next start replays it)
            self.exit_status = 1
        if self.signalled_at is not None:
            log.info("pool closed %.3f s after the signal",
                     time.monotonic() - self.signalled_at)
        log.info("persimmon-redis is now ready to exit, bye bye...")


# Data commands a client may call (the fast path of safe_dispatch looks here first).
_DATA: dict[bytes, Cmd] = {n: c for n, c in COMMANDS.items()
                           if not c.server and "internal" not in c.flags
                           and c.precheck is None}
_DATA_ALL = dict(_DATA)
_GET = COMMANDS[b"get"]  # (answered in Client.data_received: its calls counted there)
_SET = COMMANDS[b"set"]  # (a plain SET too)
# The data commands whose only key is their first argument, that read or write nothing
# else (the reads that may leave before the commits in flight end, and the writes whose
# key is tracked for them; any other write makes every read of its window wait).
_ONE_KEY = {c for c in _DATA.values()
            if c.first == 1 and c.last == 1 and c.getkeys is None and c.touches is None
            and not c.has("touches-arbitrary-keys") and c.name not in ("sort", "sort_ro")}
_SAFE_DISPATCH_CODE = Server.safe_dispatch.__code__
_EXECUTE_OP_CODE = execute_op.__code__
_PUBSUB_OK = {b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"ping",
              b"quit", b"reset"}


def run_server(cfg: Config) -> int:
    """Start the server; returns the exit status."""
    from .persistence import NoPersistence, PersimmonPersistence

    logging.basicConfig(level=logging.INFO, format="%(process)d:M %(asctime)s %(message)s",
                        datefmt="%d %b %Y %H:%M:%S", stream=sys.stderr)
    if cfg.port == 0:  # (Redis: no TCP listener; and there is no unix socket to serve)
        log.error("Configured to not listen anywhere, exiting.")
        return 1
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
        pool_dir, former = pool_dir_to_open(cfg)
        if former:
            default = cfg.dir_abs()
            log.warning("no --dir given and no pool in the default directory %s: serving the "
                        "pool at the former default %s, which is on tmpfs and LOST AT REBOOT; "
                        "to keep it across power loss, stop the server and move %s into %s",
                        default, pool_dir, os.path.join(pool_dir, POOL_FILE), default)
            cfg.dir = pool_dir  # (CONFIG GET dir: the directory served)
        try:
            p = PersimmonPersistence(cfg.databases, pool_dir, cfg.log_size, cfg.device,
                                     cfg.verify, cfg.shadow_priority == "idle",
                                     cfg.commit_overlap)
        except PersistenceError as e:
            log.error("cannot open the persistent pool: %s", e)
            return 1
        except OSError as e:  # (the directory cannot be made, or the pool file written)
            log.error("cannot open the persistent pool in %s: %s (choose a writable "
                      "directory with --dir)", pool_dir, e.strerror or e)
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
        log.error("cannot listen on %s port %d: %s", " ".join(cfg.bind), cfg.port,
                  e.strerror or e)
        p.close()
        return 1
    return server.exit_status
