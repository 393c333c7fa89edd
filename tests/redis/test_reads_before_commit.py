"""On a disk pool, the replies of reads of durable data leave before the batch's synced
write, and no other reply does (docs/device.md, "Reads sent before the commit").

A real server object on a real disk pool, driven in-process: each client's bytes are handed
to ``data_received`` as a socket read would, then ``Server.flush`` runs the group commit.
What every client had been sent when the commit's synced write began is recorded: a reply
that left by then may depend only on writes that were already durable."""

from __future__ import annotations

import asyncio
import shutil
import tempfile

import pytest
from test_disk_pool import _disk_dir
from test_resp_fastpath import _Transport, encode

from persimmon_redis.config import Config
from persimmon_redis.persistence import PersimmonPersistence
from persimmon_redis.server import Client, Server


class _Harness:
    """A server on a disk pool whose commits are not overlapped, with named clients; it
    records what each client had been sent when a commit's synced write began."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.clients: dict[str, Client] = {}
        self.transports: dict[str, _Transport] = {}
        self.at_sync: list[dict[str, bytes]] = []
        real_sync = server.p.sync

        def recording_sync() -> None:
            self.at_sync.append(self.sent())
            real_sync()

        server.p.sync = recording_sync

    def connect(self, *names: str) -> None:
        for name in names:
            c = Client(self.server)
            t = _Transport()
            c.connection_made(t)
            self.clients[name], self.transports[name] = c, t

    def sent(self) -> dict[str, bytes]:
        return {name: b"".join(t.sent) for name, t in self.transports.items()}

    def round(self, chunks: list[tuple[str, list[list[bytes]]]]) -> dict[str, bytes]:
        """Each (client, commands) chunk read in order, then the batch's flush; returns
        what each client had been sent when the commit's synced write began."""
        for name, commands in chunks:
            self.clients[name].data_received(encode(commands))
        self.at_sync.clear()
        self.server.flush_scheduled = False  # (no event loop runs: flushed by hand)
        self.server.flush()
        assert len(self.at_sync) == 1
        return self.at_sync[0]


@pytest.fixture(params=["fast-get", "dispatched-get"])
def disk(request):
    """Keys a and b durable.  With "dispatched-get" a key with a TTL sits in the database,
    so GET goes through the dispatcher instead of the fast path in data_received."""
    root = tempfile.mkdtemp(prefix="reads-before-commit-", dir=_disk_dir())
    p = PersimmonPersistence(16, root, 8 << 20, "auto", False, True, 0)
    loop = asyncio.new_event_loop()
    server = Server(Config(), p)
    server.loop = loop
    writes = [[b"SET", b"a", b"1"], [b"SET", b"b", b"1"]]
    if request.param == "dispatched-get":
        writes.append([b"SET", b"ttl", b"1", b"EX", b"1000"])
    for argv in writes:
        p.execute_rw((0, 0, tuple(argv)))
    p.sync()
    server._all_durable()
    assert server.tracking and not p.overlapped
    try:
        yield _Harness(server)
    finally:
        p.close()
        loop.close()
        shutil.rmtree(root, ignore_errors=True)


def test_reads_of_durable_data_leave_before_the_commit(disk):
    disk.connect("early", "writer", "late", "other", "missing", "piped", "split")
    sent = disk.round([
        ("early", [[b"GET", b"a"]]),             # a read before a's write: durable
        ("writer", [[b"SET", b"a", b"2"]]),
        ("late", [[b"GET", b"a"]]),              # saw the write: waits for its commit
        ("other", [[b"GET", b"b"]]),             # no write touched b: durable
        ("missing", [[b"GET", b"nokey"]]),       # a durable absence
        ("piped", [[b"SET", b"c", b"1"], [b"GET", b"b"]]),  # queued behind its own write
        ("split", [[b"SET", b"d", b"1"]]),       # the same, in two reads
        ("split", [[b"GET", b"b"]]),
    ])
    assert sent == {"early": b"$1\r\n1\r\n", "writer": b"", "late": b"",
                    "other": b"$1\r\n1\r\n", "missing": b"$-1\r\n", "piped": b"", "split": b""}
    assert disk.sent() == {"early": b"$1\r\n1\r\n", "writer": b"+OK\r\n", "late": b"$1\r\n2\r\n",
                     "other": b"$1\r\n1\r\n", "missing": b"$-1\r\n",
                     "piped": b"+OK\r\n$1\r\n1\r\n", "split": b"+OK\r\n$1\r\n1\r\n"}
    assert disk.server.durable_replies == 3


def test_a_write_of_the_last_batch_is_durable_for_the_next(disk):
    disk.connect("writer", "reader")
    disk.round([("writer", [[b"SET", b"a", b"2"]])])
    sent = disk.round([("reader", [[b"GET", b"a"]])])
    assert sent["reader"] == b"$1\r\n2\r\n"  # (the last flush's commit made it durable)


def test_no_read_leaves_early_beside_a_write_the_tracking_does_not_see(disk):
    disk.connect("mset", "reader", "writer")
    # MSET (several keys) and a transaction are logged without the per-key record: any
    # read of their batch may have seen them, so none leaves before the commit
    sent = disk.round([("mset", [[b"MSET", b"x", b"1", b"b", b"2"]]),
                           ("reader", [[b"GET", b"b"]])])
    assert sent == {"mset": b"", "reader": b"", "writer": b""}
    assert disk.sent()["reader"] == b"$1\r\n2\r\n"
    sent = disk.round([("writer", [[b"MULTI"], [b"SET", b"b", b"3"], [b"EXEC"]]),
                           ("reader", [[b"GET", b"b"]])])
    assert sent["reader"] == b"$1\r\n2\r\n"  # (MULTI's QUEUED replies are not reads)
    assert disk.sent()["reader"].endswith(b"$1\r\n3\r\n")
