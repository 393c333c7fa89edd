"""Bad input: malformed RESP, oversized lengths, inline commands, random bytes.  The server
answers with Redis's error replies, closes only the offending connection, never crashes, and
other clients are unaffected."""

from __future__ import annotations

import socket
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def raw(server, payload: bytes | list[bytes], timeout: float = 2.0) -> bytes:
    """Send ``payload`` and read the replies until the server goes quiet or closes.  A list
    is sent as separate writes with a pause between (separate reads on the server)."""
    parts = payload if isinstance(payload, list) else [payload]
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i, p in enumerate(parts):
            if i:
                time.sleep(0.05)
            s.sendall(p)
        chunks = []
        while True:
            try:
                d = s.recv(65536)
            except TimeoutError:
                break
            if not d:
                break
            chunks.append(d)
            if b"".join(chunks).endswith(b"\r\n") and not parts[-1].endswith(b"QUIT\r\n"):
                s.settimeout(0.3)
        return b"".join(chunks)
    finally:
        s.close()


def alive(server) -> None:
    c = server.client()
    assert c.ping()
    c.close()


def test_inline_commands(server):
    out = raw(server, b"SET inl \"a b\\x41\"\r\nGET inl\r\nPING\r\n\r\nQUIT\r\n")
    assert out == b"+OK\r\n$4\r\na bA\r\n+PONG\r\n+OK\r\n"


def test_malformed_resp_gets_protocol_errors(server):
    assert raw(server, b"*1\r\n$-5\r\n").startswith(b"-ERR Protocol error: invalid bulk length")
    assert raw(server, b"*abc\r\n").startswith(b"-ERR Protocol error")
    assert raw(server, b"SET \"unbalanced\r\n") == \
        b"-ERR Protocol error: unbalanced quotes in request\r\n"
    alive(server)


def test_absurd_lengths_are_refused_before_allocation(server):
    assert raw(server, b"*2000000000\r\n").startswith(
        b"-ERR Protocol error: invalid multibulk length")
    assert raw(server, b"*2\r\n$3\r\nGET\r\n$99999999999\r\n").startswith(
        b"-ERR Protocol error: invalid bulk length")
    assert raw(server, b"x" * (70 * 1024)).startswith(
        b"-ERR Protocol error: too big inline request")
    alive(server)


def test_errors_do_not_disconnect(server):
    out = raw(server, b"*1\r\n$3\r\nFOO\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nQUIT\r\n")
    assert out.startswith(b"-ERR unknown command 'FOO', with args beginning with: \r\n")
    assert out.endswith(b"$-1\r\n+OK\r\n")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"*", b"$", b"\r\n", b"*3\r\n", b"$5\r\n", b"-1", b":", b"PING\r\n",
                     b"*1\r\n$4\r\nPING\r\n", b"\x00", b"\"", b"'"]),
), max_size=12))
def test_random_bytes_never_crash_the_server(server, parts):
    try:
        raw(server, b"".join(parts), timeout=0.15)
    except OSError:
        pass
    alive(server)


def test_commands_split_anywhere_across_reads(server):
    cmd = b"*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$5\r\nvalue\r\n"
    # between two elements of the array (the next read starts with '$'), inside a length,
    # inside a bulk payload, and an inline command after a split one
    out = raw(server, [cmd[:13], cmd[13:], cmd[:15], cmd[15:30], cmd[30:],
                          b"*2\r\n$3\r\nGET\r\n", b"$5\r\nsplit\r\n", b"PING\r\n"])
    assert out == b"+OK\r\n+OK\r\n$5\r\nvalue\r\n+PONG\r\n"


def test_absurd_length_split_across_reads_is_refused(server):
    out = raw(server, [b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$1234", b"5678901\r\n"])
    assert out.startswith(b"-ERR Protocol error: invalid bulk length")
    out = raw(server, [b"*2000", b"000000\r\n"])
    assert out.startswith(b"-ERR Protocol error: invalid multibulk length")
    alive(server)


def _flood_until_closed(port: int, first: bytes) -> bytes:
    """Redis's desync regression tests: ``first`` then 1 KiB chunks with no '\\r' at all,
    until the server answers and closes (at most 1 MiB)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(first)
        for _ in range(1024):
            try:
                s.sendall(b"A" * 1024)
            except OSError:
                break
            s.settimeout(0.0)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                s.settimeout(5)
        out = b""
        while not out.endswith(b"\r\n"):
            d = s.recv(4096)
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


def test_an_unterminated_header_line_is_refused_after_64_kib_as_redis_does(server, real_redis):
    # "*" and "$" followed by 64 KiB without '\r': Redis gives up (PROTO_INLINE_MAX_SIZE)
    # instead of buffering for ever; so does persimmon-redis (the "*" case with Redis's words)
    rport = real_redis.connection_pool.connection_kwargs["port"]
    for first in (b"*\x00", b"$\x00", b"*1\r\n$\x00", b"\x00"):
        want = _flood_until_closed(rport, first)
        got = _flood_until_closed(server.port, first)
        assert want.startswith(b"-ERR Protocol error: too big"), want
        assert got.startswith(b"-ERR Protocol error: too big"), (first, got)
    assert _flood_until_closed(server.port, b"*\x00") == \
        b"-ERR Protocol error: too big mbulk count string\r\n"
    # a bulk value far above 64 KiB (no '\r' in it) is still fine
    c = server.client()
    c.set("big", b"A" * 400_000)
    assert c.strlen("big") == 400_000
    alive(server)


def _qbuf(c, name: str) -> tuple[int, int, int]:
    for x in c.client_list():
        if x["name"] == name:
            return int(x["qbuf"]), int(x["qbuf-free"]), int(x["idle"])
    raise AssertionError(f"no client {name}")


def _query_buffer_story(port: int, admin) -> list:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"*3\r\n$6\r\nclient\r\n$7\r\nsetname\r\n$2\r\nqb\r\n")
        assert s.recv(100) == b"+OK\r\n"
        qbuf, free, _ = _qbuf(admin, "qb")
        out = [qbuf, 16384 <= qbuf + free < 32768]
        big = b"*3\r\n$3\r\nset\r\n$1\r\nx\r\n$400000\r\n" + b"A" * 400_000 + b"\r\n"
        s.sendall(big[:20_000])  # half-way through the big argument: it is held
        time.sleep(0.2)
        qbuf, free, _ = _qbuf(admin, "qb")
        out += [qbuf > 0, qbuf + free > 32768]
        peak = qbuf + free
        s.sendall(big[20_000:])
        assert s.recv(100) == b"+OK\r\n"
        for _ in range(30):  # small commands: the buffer shrinks back (not to nothing)
            s.sendall(b"*3\r\n$3\r\nset\r\n$1\r\nx\r\n$3\r\nabc\r\n")
            assert s.recv(100) == b"+OK\r\n"
            time.sleep(0.05)
        qbuf, free, _ = _qbuf(admin, "qb")
        out += [qbuf, 0 < qbuf + free < peak]
        time.sleep(3.3)  # idle more than 2 s: given back
        qbuf, free, idle = _qbuf(admin, "qb")
        out += [qbuf + free, idle >= 3]
        return out
    finally:
        s.close()


def test_client_list_reports_the_query_buffer_as_redis_sizes_it(server, real_redis):
    want = _query_buffer_story(real_redis.connection_pool.connection_kwargs["port"],
                               real_redis)
    assert want == [0, True, True, True, 0, True, 0, True]
    assert _query_buffer_story(server.port, server.client()) == want
