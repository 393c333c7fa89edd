"""Coordinator recovery with real replica processes: a client that dies right after its
Prepares reached the replicas (here: a raw UDP client that never sends Commit) leaves a
prepared transaction; the backup coordinator at its first participant shard finishes it."""

from __future__ import annotations

import socket
import time

from persimmon_tapir import Client
from persimmon_tapir.config import shard_of
from persimmon_tapir.wire import encode

from .procs import LocalCluster


def test_backup_coordinator_commits_the_transaction_of_a_dead_client():
    cl = LocalCluster(shards=2, persistence="persimmon")
    try:
        cl.start_all()
        cl.wait_serving()
        keys = [b"x0", b"x1", b"x4", b"x5"]
        shards = sorted({shard_of(k, 2) for k in keys})
        assert shards == [0, 1]
        cid, txn_id, ts = 77, (77 << 24) | 1, (int(time.time() * 1e6), 77)
        rids = tuple((s, 10 + s) for s in shards)
        op = ("prepare", txn_id, ts, (), tuple((k, b"from-a-dead-client") for k in keys), rids)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        for s, rid in rids:
            for addr in cl.cfg.shards[s]:
                sock.sendto(b"M" + encode(("PC", cid, rid, 0, op)), addr)
        sock.settimeout(5)
        replies = [sock.recvfrom(65536) for _ in range(6)]  # every replica prepared it ...
        sock.close()  # ... and the client is gone
        assert len(replies) == 6
        deadline = time.monotonic() + 30
        with Client(cl.config_path) as c:
            while True:
                t = c.begin()
                got = [t.get(k) for k in keys]
                if t.commit() and got == [b"from-a-dead-client"] * 4:
                    break
                assert time.monotonic() < deadline, got
                time.sleep(0.2)
    finally:
        cl.close()
