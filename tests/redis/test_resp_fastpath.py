"""The fast path of reading requests (``persimmon_redis.resp``, ``_resp.c``): a chunk of
whole plain commands is read at once, anything else the general way (hiredis).

The compiled parser is held to its pure-Python twin, and both to hiredis: where they
answer, they answer what hiredis would; and the server takes the fast path only while its
hiredis reader holds nothing, so a command cut anywhere reads the same either way."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persimmon_redis import resp
from persimmon_redis.config import Config
from persimmon_redis.persistence import NoPersistence
from persimmon_redis.server import Client, Server

COMPILED = resp.FAST
needs_compiled = pytest.mark.skipif(
    COMPILED is None, reason="the compiled twin is not built (PERSIMMON_PURE_PYTHON or no "
    "compiler): the server reads every chunk the general way")
PARSERS = [pytest.param(resp.parse_commands, id="python"),
           pytest.param(COMPILED.parse_commands if COMPILED else None, id="compiled",
                        marks=needs_compiled)]
MAX_BULK = 512 * 1024 * 1024


def encode(commands: list[list[bytes]]) -> bytes:
    out = []
    for argv in commands:
        out.append(b"*%d\r\n" % len(argv))
        for a in argv:
            out.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(out)


def hiredis_reads(data: bytes) -> tuple[list, bool]:
    """(what hiredis returns for ``data``, whether it then holds nothing of it)."""
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    try:
        while (item := reader.gets()) is not False:
            out.append(item)
    except hiredis.ProtocolError:
        return out, False
    consumed = sum(resp.wire_size(x) for x in out
                   if x is None or (type(x) is list and all(type(a) is bytes for a in x)))
    return out, consumed == len(data) and not reader.has_data()


args = st.lists(st.binary(max_size=40) | st.sampled_from([b"", b"\r\n", b"*1\r\n", b"$3"]),
                min_size=1, max_size=6)
commands = st.lists(args, min_size=1, max_size=5)


@pytest.mark.parametrize("parse", PARSERS)
def test_whole_commands_are_read_as_hiredis_reads_them(parse):
    data = encode([[b"SET", b"k", b"v\r\nx"], [b"GET", b""], [b"PING"]])
    assert parse(data, MAX_BULK) == [[b"SET", b"k", b"v\r\nx"], [b"GET", b""], [b"PING"]]
    assert parse(data, MAX_BULK) == hiredis_reads(data)[0]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("data", [
    b"*2\r\n$3\r\nGET\r\n",  # cut between two elements
    b"*2\r\n$3\r\nGET\r\n$5\r\nke",  # cut inside a payload
    b"*1\r\n$4\r\nPING\r\n*1\r\n$4",  # a whole command, then a cut one
    b"PING\r\n",  # inline
    b"*0\r\n", b"*-1\r\n", b"*-10\r\n",  # empty and negative arrays
    b"*1\r\n:5\r\n",  # not a bulk string
    b"*1\r\n$04\r\nPING\r\n",  # a leading zero (hiredis reads it; the fast path declines)
    b"*1\r\n$123456789\r\n",  # 9 digits: the general path's checks
    b"*1\r\n$4\r\nPINGxx",  # no CRLF after the payload
    b"*1\n$4\r\nPING\r\n",  # a bare LF
    b"*2\r\n$3\r\nGET\r\n*1\r\n$4\r\nPING\r\n",  # an array inside an array
    b"", b"*", b"*1\r\n",
])
def test_anything_but_whole_plain_commands_is_declined(parse, data):
    assert parse(data, MAX_BULK) is None


@pytest.mark.parametrize("parse", PARSERS)
def test_a_length_over_the_bulk_limit_is_declined(parse):
    data = encode([[b"SET", b"k", b"x" * 100]])
    assert parse(data, 100) == [[b"SET", b"k", b"x" * 100]]
    assert parse(data, 99) is None


@settings(max_examples=300, deadline=None)
@given(commands, st.data())
def test_the_twins_agree_with_each_other_and_with_hiredis(cmds, draw):
    data = encode(cmds)
    assert resp.parse_commands(data, MAX_BULK) == cmds == hiredis_reads(data)[0]
    if COMPILED is not None:
        assert COMPILED.parse_commands(data, MAX_BULK) == cmds
    # any prefix, and any byte changed: both twins answer alike, and where they read
    # something it is what hiredis reads, hiredis then holding nothing
    cut = draw.draw(st.integers(0, len(data)))
    at = draw.draw(st.integers(0, len(data) - 1))
    mutated = data[:at] + bytes([draw.draw(st.integers(0, 255))]) + data[at + 1 :]
    for chunk in (data[:cut], mutated):
        mine = resp.parse_commands(chunk, MAX_BULK)
        if COMPILED is not None:
            assert COMPILED.parse_commands(chunk, MAX_BULK) == mine
        if mine is not None:
            assert (mine, True) == hiredis_reads(chunk)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=12) | st.none())
def test_wire_size_is_the_shortest_encoding(argv):
    expected = 5 if argv is None else len(encode([argv]))
    assert resp.wire_size(argv) == expected
    if COMPILED is not None:
        assert COMPILED.wire_size(argv) == expected


def test_wire_size_refuses_what_is_not_a_command():
    with pytest.raises(TypeError):
        resp.wire_size([b"a", 5])
    if COMPILED is not None:
        with pytest.raises(TypeError):
            COMPILED.wire_size([b"a", 5])
        with pytest.raises(TypeError):
            COMPILED.wire_size(b"abc")
        with pytest.raises(TypeError):
            COMPILED.parse_commands(bytearray(b"*1\r\n$4\r\nPING\r\n"), MAX_BULK)


# ------------------------------------------------------------------ the server's reading
class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> tuple:
        return ("127.0.0.1", 5000)


class _Loop:
    def __init__(self) -> None:
        self.callbacks: list = []

    def call_soon(self, fn, *a) -> None:
        self.callbacks.append(fn)


def _client() -> tuple[Server, Client, _Transport]:
    server = Server(Config(), NoPersistence(16))
    server.loop = _Loop()
    c = Client(server)
    t = _Transport()
    c.connection_made(t)
    return server, c, t


def _feed(server: Server, c: Client, t: _Transport, chunks: list[bytes]) -> bytes:
    for chunk in chunks:
        c.data_received(chunk)
        while server.loop.callbacks:
            server.loop.callbacks.pop(0)()
    out = b"".join(t.sent)
    t.sent.clear()
    return out


def test_the_fast_path_is_taken_again_once_a_cut_command_is_read():
    server, c, t = _client()
    cmd = encode([[b"SET", b"cut", b"value"]])
    assert _feed(server, c, t, [cmd[:13]]) == b""
    # (the count is kept only when there is a fast path to take)
    assert c.held == (13 if COMPILED else 0)  # the reader holds an array cut between elements
    assert _feed(server, c, t, [cmd[13:]]) == b"+OK\r\n"
    assert c.held == 0
    calls = []
    if COMPILED is not None:
        import persimmon_redis.server as srv

        real = srv._PARSE
        srv._PARSE = lambda data, limit: calls.append(data) or real(data, limit)
        try:
            assert _feed(server, c, t, [encode([[b"STRLEN", b"cut"]])]) == b":5\r\n"
        finally:
            srv._PARSE = real
        assert calls == [encode([[b"STRLEN", b"cut"]])]


def test_an_array_cut_between_elements_is_never_read_as_a_new_command():
    # hiredis holds "*2 GET" with nothing unread: the next chunk is its second element,
    # here an array, which Redis refuses (a fast path reading it afresh would run PING)
    server, c, t = _client()
    out = _feed(server, c, t, [b"*2\r\n$3\r\nGET\r\n", b"*1\r\n$4\r\nPING\r\n"])
    assert out == b"-ERR Protocol error: expected '$', got something else\r\n"
    assert t.closed


def test_a_length_with_a_leading_zero_is_refused_as_redis_refuses_it():
    # the fast path declines it, and hiredis refuses it as Redis's string2ll does
    server, c, t = _client()
    out = _feed(server, c, t, [b"*1\r\n$04\r\nPING\r\n"])
    assert out.startswith(b"-ERR Protocol error: invalid bulk length")
    assert t.closed


def test_what_hiredis_reads_the_reader_is_counted_exactly():
    # hiredis consumes the two bytes after a payload whatever they are: the count of what
    # it holds still comes back to 0, and the next whole chunk takes the fast path
    server, c, t = _client()
    assert _feed(server, c, t, [b"*1\r\n$4\r\nPINGxy", encode([[b"PING"]])[:5]]) \
        == b"+PONG\r\n"
    assert c.held == (5 if COMPILED else 0)
    assert _feed(server, c, t, [encode([[b"PING"]])[5:], encode([[b"PING"]])]) \
        == b"+PONG\r\n+PONG\r\n"
    assert c.held == 0


def test_pipelines_and_commands_after_a_blocking_one_keep_their_order():
    server, c, t = _client()
    data = encode([[b"RPUSH", b"l", b"a"], [b"LPOP", b"l"], [b"LPOP", b"l"], [b"PING"]])
    assert _feed(server, c, t, [data]) == b":1\r\n$1\r\na\r\n$-1\r\n+PONG\r\n"
    # a client blocked keeps what it sent next until it is served
    data = encode([[b"BLPOP", b"q", b"0"], [b"GET", b"after"]])
    assert _feed(server, c, t, [data]) == b""
    assert [list(x) for x in c.backlog] == [[b"GET", b"after"]]


# ------------------------------------------------------------ GET answered at once
GETTERS = [pytest.param(resp.get_reply, id="python"),
           pytest.param(COMPILED.get_reply if COMPILED else None, id="compiled",
                        marks=needs_compiled)]
_VALUES = st.none() | st.binary(max_size=60) | st.sampled_from([5, {b"f": b"v"}, [b"x"]])


@pytest.mark.parametrize("get", GETTERS)
def test_one_plain_get_is_answered_and_anything_else_declined(get):
    table = {b"k": b"value", b"": b"empty key", b"h": {b"f": b"v"}, b"n": 12}
    assert get(encode([[b"GET", b"k"]]), MAX_BULK, table, False) == b"$5\r\nvalue\r\n"
    assert get(encode([[b"gEt", b""]]), MAX_BULK, table, False) == b"$9\r\nempty key\r\n"
    assert get(encode([[b"GET", b"nope"]]), MAX_BULK, table, False) == b"$-1\r\n"
    assert get(encode([[b"GET", b"nope"]]), MAX_BULK, table, True) == b"_\r\n"
    for declined in (
        encode([[b"GET", b"h"]]), encode([[b"GET", b"n"]]),  # not a plain string
        encode([[b"GET", b"k"], [b"GET", b"k"]]),  # more than one command
        encode([[b"GET", b"k", b"x"]]), encode([[b"GET"]]),  # wrong arity
        encode([[b"GETEX", b"k"]]), encode([[b"GEX", b"k"]]),
        encode([[b"GET", b"k"]])[:-1],  # cut
        b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",  # a leading zero
        b"GET k\r\n",  # inline
    ):
        assert get(declined, MAX_BULK, table, False) is None, declined
    assert get(encode([[b"GET", b"k"]]), 0, table, False) is None  # key over the limit
    assert get(encode([[b"GET", b"k"]]), MAX_BULK, _NotADict(table), False) is None


class _NotADict(dict):
    """A mapping of another type: the fast path leaves it to the handler."""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=30), st.sampled_from([b"GET", b"get", b"Get", b"gET", b"SET"]),
       _VALUES, st.booleans(), st.data())
def test_the_get_twins_agree_and_answer_as_the_handler_does(key, name, value, resp3, draw):
    from persimmon_redis.replies import encode as encode_reply

    table = {} if value is None else {key: value}
    data = encode([[name, key]])
    mine = resp.get_reply(data, MAX_BULK, table, resp3)
    if name.lower() == b"get" and (value is None or type(value) is bytes):
        assert mine == encode_reply(table.get(key), resp3)  # what cmd_get's reply is
    else:
        assert mine is None
    at = draw.draw(st.integers(0, len(data) - 1))
    mutated = data[:at] + bytes([draw.draw(st.integers(0, 255))]) + data[at + 1:]
    cut = data[:draw.draw(st.integers(0, len(data)))]
    if COMPILED is not None:
        for chunk in (data, mutated, cut):
            assert COMPILED.get_reply(chunk, MAX_BULK, table, resp3) \
                == resp.get_reply(chunk, MAX_BULK, table, resp3), chunk


def _general_and_fast(chunks: list[bytes]) -> tuple[bytes, bytes]:
    """What one client is sent for ``chunks`` with GET answered at once and without."""
    import persimmon_redis.server as srv

    outs = []
    for fast in (True, False):
        real = srv._GET_REPLY
        if not fast:
            srv._GET_REPLY = lambda *a: None
        try:
            server, c, t = _client()
            outs.append(b"".join(_feed(server, c, t, [chunk]) for chunk in chunks))
        finally:
            srv._GET_REPLY = real
    return outs[0], outs[1]


@needs_compiled
def test_get_answered_at_once_sends_what_dispatch_sends():
    import persimmon_redis.server as srv

    before = srv._GET.calls
    chunks = [encode([c]) for c in (
        [b"SET", b"s", b"v"], [b"GET", b"s"], [b"GET", b"missing"], [b"HSET", b"h", b"f", b"v"],
        [b"GET", b"h"],  # WRONGTYPE: the handler answers
        [b"SET", b"n", b"12"], [b"INCR", b"n"], [b"GET", b"n"],
        [b"MULTI"], [b"GET", b"s"], [b"EXEC"],  # queued inside MULTI
        [b"SELECT", b"3"], [b"GET", b"s"], [b"SET", b"s", b"three"], [b"GET", b"s"],
        [b"SET", b"t", b"ttl", b"PX", b"100000"], [b"GET", b"t"], [b"GET", b"missing"],
        [b"SET", b"gone", b"soon", b"PX", b"1"], [b"DEBUG", b"SLEEP", b"0.01"],
        [b"GET", b"gone"],  # expired: nil, though its value is still held
        [b"HELLO", b"3"], [b"SELECT", b"0"], [b"GET", b"missing"], [b"GET", b"s"],
        [b"CLIENT", b"REPLY", b"OFF"], [b"GET", b"s"], [b"CLIENT", b"REPLY", b"ON"],
        [b"HELLO", b"2"], [b"SUBSCRIBE", b"ch"], [b"GET", b"s"],  # refused when subscribed
    )]
    fast, general = _general_and_fast(chunks)
    assert fast == general
    assert b"$5\r\nthree\r\n" in fast and b"WRONGTYPE" in fast and b"_\r\n" in fast
    assert b"$4\r\nsoon\r\n" not in fast
    assert fast.endswith(b"only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                         b"are allowed in this context\r\n")
    # the fast path ran (its calls counted as the dispatcher counts them)
    assert srv._GET.calls - before >= 2 * 6


@needs_compiled
def test_get_answered_at_once_is_counted_and_named_like_any_command():
    server, c, t = _client()
    _feed(server, c, t, [encode([[b"SET", b"k", b"v"]])])
    calls = srv_get_calls()
    assert _feed(server, c, t, [encode([[b"GET", b"k"]])]) == b"$1\r\nv\r\n"
    assert srv_get_calls() == calls + 1
    assert c.last_cmd == b"get"
    info = _feed(server, c, t, [encode([[b"INFO", b"commandstats"]])])
    assert b"cmdstat_get:calls=%d," % srv_get_calls() in info


def srv_get_calls() -> int:
    import persimmon_redis.server as srv

    return srv._GET.calls


@needs_compiled
def test_get_before_auth_is_refused_on_the_fast_path_too():
    cfg = Config()
    cfg.requirepass = "secret"
    server = Server(cfg, NoPersistence(16))
    server.loop = _Loop()
    server.state.dbs[0].data[b"k"] = b"hidden"
    c = Client(server)
    t = _Transport()
    c.connection_made(t)
    out = _feed(server, c, t, [encode([[b"GET", b"k"]])])
    assert out.startswith(b"-NOAUTH")
    assert _feed(server, c, t, [encode([[b"AUTH", b"secret"]]),
                                encode([[b"GET", b"k"]])]) == b"+OK\r\n$6\r\nhidden\r\n"


# ------------------------------------------------------------ plain SET applied at once
SETTERS = [pytest.param(resp.set_args, id="python"),
           pytest.param(COMPILED.set_args if COMPILED else None, id="compiled",
                        marks=needs_compiled)]


@pytest.mark.parametrize("set_args", SETTERS)
def test_one_plain_set_is_read_and_anything_else_declined(set_args):
    assert set_args(encode([[b"SET", b"k", b"value"]]), MAX_BULK) == (b"SET", b"k", b"value")
    assert set_args(encode([[b"sEt", b"", b""]]), MAX_BULK) == (b"sEt", b"", b"")
    assert set_args(encode([[b"set", b"\r\n$3", b"*1\r\n"]]), MAX_BULK) \
        == (b"set", b"\r\n$3", b"*1\r\n")
    for declined in (
        encode([[b"SET", b"k", b"v", b"NX"]]), encode([[b"SET", b"k", b"v", b"EX", b"10"]]),
        encode([[b"SET", b"k"]]), encode([[b"SET"]]),  # options, or the wrong arity
        encode([[b"SET", b"k", b"v"], [b"SET", b"k", b"v"]]),  # more than one command
        encode([[b"SET", b"k", b"v"], [b"GET", b"k"]]),
        encode([[b"SETEX", b"k", b"1", b"v"]]), encode([[b"SAT", b"k", b"v"]]),
        encode([[b"GET", b"k"]]), encode([[b"SET", b"k", b"v"]])[:-1],  # cut
        encode([[b"SET", b"k", b"v"]]) + b"*",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$01\r\nv\r\n",  # a leading zero
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv\r\n",  # a length that is wrong
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n+v\r\n",  # not a bulk string
        b"SET k v\r\n",  # inline
    ):
        assert set_args(declined, MAX_BULK) is None, declined
    assert set_args(encode([[b"SET", b"k", b"v"]]), 0) is None  # over the limit
    assert set_args(encode([[b"SET", b"", b"vv"]]), 1) is None
    assert set_args(encode([[b"SET", b"kk", b""]]), 1) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=30), st.binary(max_size=30),
       st.sampled_from([b"SET", b"set", b"sEt", b"GET", b"SETNX"]), st.data())
def test_the_set_twins_agree_and_read_as_the_parser_reads(key, value, name, draw):
    data = encode([[name, key, value]])
    mine = resp.set_args(data, MAX_BULK)
    assert mine == ((name, key, value) if name.lower() == b"set" else None)
    at = draw.draw(st.integers(0, len(data) - 1))
    mutated = data[:at] + bytes([draw.draw(st.integers(0, 255))]) + data[at + 1:]
    cut = data[:draw.draw(st.integers(0, len(data)))]
    for chunk in (data, mutated, cut):
        got = resp.set_args(chunk, MAX_BULK)
        if got is not None:  # only what the parser reads as one plain SET
            assert resp.parse_commands(chunk, MAX_BULK) == [list(got)]
        if COMPILED is not None:
            assert COMPILED.set_args(chunk, MAX_BULK) == got, chunk


# Commands around plain SETs that the fast path must leave as the dispatcher leaves them:
# a TTL dropped, a raw string's encoding, another type replaced, the database selected, the
# change counted, SET inside MULTI (queued) and under WATCH (EXEC fails), with keyspace
# notifications on (the subscriber told), from a client that has not authenticated.
_SET_SESSION = [
    [b"SET", b"s", b"v"], [b"GET", b"s"],
    [b"SET", b"t", b"ttl", b"EX", b"1000"], [b"TTL", b"t"], [b"SET", b"t", b"plain"],
    [b"TTL", b"t"], [b"GET", b"t"],
    [b"SETRANGE", b"r", b"0", b"abc"], [b"OBJECT", b"ENCODING", b"r"], [b"SET", b"r", b"x"],
    [b"OBJECT", b"ENCODING", b"r"],
    [b"HSET", b"h", b"f", b"v"], [b"SET", b"h", b"now a string"], [b"TYPE", b"h"],
    [b"SELECT", b"3"], [b"SET", b"s", b"three"], [b"GET", b"s"], [b"SELECT", b"0"],
    [b"MULTI"], [b"SET", b"m", b"1"], [b"EXEC"],
    [b"WATCH", b"s"], [b"SET", b"s", b"changed"], [b"MULTI"], [b"GET", b"s"], [b"EXEC"],
    [b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA"], [b"SET", b"n", b"1"],
    [b"CONFIG", b"SET", b"notify-keyspace-events", b""],
    [b"INFO", b"persistence"], [b"DBSIZE"], [b"GET", b"s"], [b"GET", b"m"],
]


def _set_session(fast: bool, p: object = None) -> tuple[bytes, bytes, list, object]:
    """What a client and a keyspace subscriber are sent for _SET_SESSION (with the plain
    SET fast path or without), the dataset after it, and the server."""
    import persimmon_redis.server as srv
    from persimmon_redis.state import dump

    real = srv._SET_ARGS
    if not fast:
        srv._SET_ARGS = lambda *a: None
    try:
        server = Server(Config(), p if p is not None else NoPersistence(16))
        server.loop = _Loop()
        c, t, sub, st_ = Client(server), _Transport(), Client(server), _Transport()
        c.connection_made(t)
        sub.connection_made(st_)
        _feed(server, sub, st_, [encode([[b"PSUBSCRIBE", b"__key*__:*"]])])
        out = b"".join(_feed(server, c, t, [encode([argv])]) for argv in _SET_SESSION)
        told = b"".join(st_.sent)
        return out.replace(b"\r\n", b"\n"), told, dump(server.state), server
    finally:
        srv._SET_ARGS = real


@needs_compiled
def test_plain_set_applied_at_once_does_what_dispatch_does():
    import persimmon_redis.server as srv

    logged = []
    p = NoPersistence(16)
    p.log_write = lambda op: logged.append(op) or True  # (counts the fast path's writes)
    before = srv._SET.calls
    fast_out, fast_told, fast_state, _ = _set_session(True, p)
    fast_calls = srv._SET.calls - before
    general_out, general_told, general_state, _ = _set_session(False)
    assert srv._SET.calls - before - fast_calls == fast_calls  # counted as the dispatcher does
    # INFO's lines other than the changes counted are the clock's
    changes = [ln for ln in fast_out.split(b"\n") if b"rdb_changes_since_last_save" in ln]
    assert changes == [ln for ln in general_out.split(b"\n")
                       if b"rdb_changes_since_last_save" in ln]
    assert changes and changes[0] != b"rdb_changes_since_last_save:0"

    def stable(out: bytes) -> list[bytes]:
        return [ln for ln in out.split(b"\n") if b":" not in ln or ln.startswith(b":")]

    assert stable(fast_out) == stable(general_out)
    assert fast_told == general_told and b"__keyspace@0__:n" in fast_told
    assert fast_state == general_state
    assert b"$5\nplain\n" in fast_out and b":-1\n" in fast_out  # the TTL went
    assert b"$3\nraw\n+OK\n$6\nembstr\n" in fast_out  # SET over a raw string: embstr
    assert b"+string\n" in fast_out and b"$5\nthree\n" in fast_out
    assert b"*-1\n" in fast_out  # the watched key was changed: EXEC failed
    # the plain SETs outside MULTI, WATCH and notifications took the fast path, each
    # logged as (database, clock, the arguments as sent)
    assert [(db, argv) for db, _now, argv in logged] == [
        (0, (b"SET", b"s", b"v")), (0, (b"SET", b"t", b"plain")), (0, (b"SET", b"r", b"x")),
        (0, (b"SET", b"h", b"now a string")), (3, (b"SET", b"s", b"three"))]


def test_plain_set_before_auth_is_refused_on_the_fast_path_too():
    cfg = Config()
    cfg.requirepass = "secret"
    server = Server(cfg, NoPersistence(16))
    server.loop = _Loop()
    c = Client(server)
    t = _Transport()
    c.connection_made(t)
    assert _feed(server, c, t, [encode([[b"SET", b"k", b"v"]])]).startswith(b"-NOAUTH")
    assert b"k" not in server.state.dbs[0].data
    assert _feed(server, c, t, [encode([[b"AUTH", b"secret"]]),
                                encode([[b"SET", b"k", b"v"]])]) == b"+OK\r\n+OK\r\n"
    assert server.state.dbs[0].data[b"k"] == b"v"


@needs_compiled
def test_plain_set_over_a_stream_a_client_waits_on_unblocks_it_and_names_the_command():
    # (while a client is blocked, a write goes through the dispatcher, which tells it)
    server, c, t = _client()
    waiter, wt = Client(server), _Transport()
    waiter.connection_made(wt)
    _feed(server, c, t, [encode([[b"XGROUP", b"CREATE", b"s", b"g", b"$", b"MKSTREAM"]])])
    _feed(server, waiter, wt, [encode([[b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"0",
                                        b"STREAMS", b"s", b">"]])])
    assert server.blocked and wt.sent == []
    assert _feed(server, c, t, [encode([[b"SET", b"s", b"v"]])]) == b"+OK\r\n"
    assert b"".join(wt.sent) == b"-UNBLOCKED the stream key no longer exists\r\n"
    assert c.last_cmd == b"set"
    _feed(server, c, t, [encode([[b"GET", b"s"]])])
    assert c.last_cmd == b"get"
    _feed(server, c, t, [encode([[b"SET", b"s", b"again"]])])  # (nobody waits: the fast path)
    assert c.last_cmd == b"set" and server.state.dbs[0].data[b"s"] == b"again"


@needs_compiled
@pytest.mark.parametrize("where", ["shm", "disk"])
def test_plain_sets_applied_at_once_are_what_the_pool_recovers(where):
    # The fast path logs the operation and changes the DRAM copy itself; the shadow (the
    # PM copy) and a recovery replay the same operation with execute_op: all three agree.
    import shutil
    import tempfile

    from test_disk_pool import _disk_dir

    from persimmon_redis.persistence import PersimmonPersistence
    from persimmon_redis.state import dump

    root = tempfile.mkdtemp(prefix="fast-set-", dir="/dev/shm" if where == "shm" else _disk_dir())
    try:
        p = PersimmonPersistence(16, root, 8 << 20, "auto", False, True, 0)
        taken = []
        real_log = p.log_write
        p.log_write = lambda op: taken.append(real_log(op)) or taken[-1]
        _out, _told, state, _server = _set_session(True, p)
        assert taken == [True] * 5  # (logged by the fast path, not handed back)
        # closing drains the log: the shadow applies every operation to the PM copy, and
        # the reopened pool's state is that copy
        p.close()
        again = PersimmonPersistence(16, root, 8 << 20, "auto", False, True, 0)
        try:
            assert dump(again.state) == state
            assert again.state.dbs[0].data[b"s"] == b"changed"
            assert again.state.dbs[3].data[b"s"] == b"three"
        finally:
            again.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_big_bulk_read_in_small_chunks_keeps_its_query_buffer_past_the_next_cron():
    # Redis reads an argument of 32 KiB or more whole into a buffer of its size and counts
    # that as the read's peak, so the cron tick right after the command leaves the buffer
    # (Redis's unit/querybuf, "query buffer resized correctly when not idle", reads
    # CLIENT LIST right after such a SET). Chunks of 8 KiB, as a slow sender's arrive.
    server, c, t = _client()
    data = encode([[b"SET", b"x", b"A" * 400_000]])
    for at in range(0, len(data), 8192):
        c.data_received(data[at : at + 8192])
    while server.loop.callbacks:
        server.loop.callbacks.pop(0)()
    assert b"".join(t.sent) == b"+OK\r\n"
    assert c.query_buffer()[1] >= 400_002
    c.resize_query_buffer(c.last_io + 0.1)  # the next cron tick, the client not idle
    assert c.query_buffer()[1] > 32768
