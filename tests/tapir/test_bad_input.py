"""Bad input: malformed datagrams, damaged or foreign pools, configs that do not match the
pool or are not configs.  Clear errors, no tracebacks, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import msgpack
import pytest

from persimmon_tapir import Client, store
from persimmon_tapir.protocol import REPLICA_MESSAGES, check_replica_message
from persimmon_tapir.wire import MessageError, decode

from .procs import SRC, LocalCluster

GARBAGE = [
    b"", b"M", b"\x00\x01\x02", b"M\xc1", b"M" + b"\xff" * 100, b"F", b"F" + b"\x00" * 16,
    b"F" + struct.pack(">QII", 1, 5, 3) + b"x", b"F" + struct.pack(">QII", 2, 0, 1 << 30),
    b"M" + msgpack.packb({"a": 1}), b"M" + msgpack.packb(["PC"]),
    b"M" + msgpack.packb(["PC", 1, 2, 0, ["prepare", "not-int", [1, 2], [], []]]),
    b"M" + msgpack.packb(["PI", 1, 2, 0, ["prepare", 1, [1, 2], [], []]]),
    b"M" + msgpack.packb(["FC", 1, 2, ["commit", 1, [1, 2], [], []], [9, None]]),
    b"M" + msgpack.packb(["SV", 5, [[1, 2, "X", "F", 0, ["get", b"k"], None]]]),
    b"M" + msgpack.packb(["DVC", 1, 0, 1, "x"]), b"M" + msgpack.packb(["RQ", 0]),
    b"M" + msgpack.packb(["U", 1, 2, ["get", "str-key"]]),
    b"M" + msgpack.packb(["EVIL", 1]), b"M" + b"\x92" * 70 + b"\xc0",
]


def test_decoder_rejects_each_malformed_message_with_a_clear_error():
    for data in GARBAGE:
        body = data[1:] if data[:1] == b"M" else data
        with pytest.raises(MessageError):
            check_replica_message(decode(body, REPLICA_MESSAGES))


def _stderr_of(p):
    p.wait(30)
    return p.stderr.read()


def test_replica_survives_malformed_datagrams_and_keeps_its_data():
    cl = LocalCluster(shards=1, persistence="persimmon")
    try:
        cl.start_all()
        cl.wait_serving()
        with Client(cl.config_path) as c:
            t = c.begin()
            t.put(b"kept", b"yes")
            assert t.commit()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):
            for addr in cl.cfg.shards[0]:
                for data in GARBAGE:
                    s.sendto(data, addr)
        s.close()
        time.sleep(0.3)
        with Client(cl.config_path) as c:
            t = c.begin()
            assert t.get(b"kept") == b"yes"
            t.put(b"after", b"ok")
            assert t.commit()
        for k, p in cl.procs.items():
            assert p.poll() is None, f"replica {k} died"
        cl.kill(0, 0, signal.SIGTERM)
        err = cl.procs[(0, 0)].stderr.read()
        assert "dropped a bad datagram" in err and "Traceback" not in err
    finally:
        cl.close()


def _replica(cfg_path, d, shard=0, replica=0):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    return subprocess.run([sys.executable, "-m", "persimmon_tapir", "replica", "--config",
                           cfg_path, "--shard", str(shard), "--replica", str(replica),
                           "--dir", d], capture_output=True, text=True, env=env, timeout=60)


def test_config_that_does_not_match_the_pool_is_refused(tmp_path):
    cl = LocalCluster(shards=1, persistence="persimmon")
    try:
        cl.start_all()
        cl.wait_serving()
        with Client(cl.config_path) as c:
            t = c.begin()
            t.put(b"kept", b"yes")
            assert t.commit()
        cl.kill_all(signal.SIGTERM)
        raw = json.load(open(cl.config_path))
        raw["cluster_id"] += 1  # another cluster's config pointed at this directory
        other = tmp_path / "other.json"
        other.write_text(json.dumps(raw))
        r = _replica(str(other), cl.dir)
        assert r.returncode == 2 and "holds replica" in r.stderr and "Traceback" not in r.stderr
        cl.start_all()  # the right config still finds everything
        cl.wait_serving()
        with Client(cl.config_path) as c:
            t = c.begin()
            assert t.get(b"kept") == b"yes"
            assert t.commit()
    finally:
        cl.close()


def test_damaged_pool_and_bad_configs_give_clear_errors(tmp_path):
    cl = LocalCluster(shards=1, persistence="persimmon")
    try:
        pool = os.path.join(cl.dir, "tapir-s0-r0.pool")
        with open(pool, "wb") as fh:
            fh.write(b"not a pool" * 1000)
        r = _replica(cl.config_path, cl.dir)
        assert r.returncode == 2 and "cannot open the pool" in r.stderr
        assert "Traceback" not in r.stderr
        assert open(pool, "rb").read() == b"not a pool" * 1000  # left as it was
        r = _replica(cl.config_path, cl.dir, shard=3)
        assert r.returncode == 2 and "no shard 3 replica 0" in r.stderr
        bad = tmp_path / "bad.json"
        for text, msg in (("{", "is not JSON"), ('{"f": 1}', "not a persimmon-tapir cluster"),
                          ('{"cluster_id": 1, "f": 1, "shards": [[["127.0.0.1", 1]]]}',
                           "2f+1 = 3 replicas")):
            bad.write_text(text)
            r = _replica(str(bad), cl.dir)
            assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
        r = _replica(str(tmp_path / "missing.json"), cl.dir)
        assert r.returncode == 2 and "cannot read the cluster config" in r.stderr
    finally:
        cl.close()


def test_cluster_command_runs_until_sigterm_and_refuses_a_different_shape(tmp_path):
    d = f"/dev/shm/tapir-cli-{os.getpid()}"
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC))
    cmd = [sys.executable, "-m", "persimmon_tapir", "cluster", "--shards", "1", "--replicas",
           "3", "--dir", d]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    try:
        cfg = os.path.join(d, "cluster.json")
        for _ in range(300):
            if os.path.exists(cfg):
                break
            time.sleep(0.05)
        with Client(cfg) as c:
            t = c.begin()
            t.put(b"a", b"1")
            t.put(b"b", b"2")
            assert t.commit()
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)  # the same cluster again: its data is there
        with Client(cfg) as c:
            # (a read is only vouched for by its commit: a replica restarted before the
            # Commit's finalize reached it serves the old value until its view change
            # syncs it, and the transaction that read it aborts)
            for _ in range(20):
                t = c.begin()
                got = (t.get(b"a"), t.get(b"b"))
                if t.commit():
                    break
            assert got == (b"1", b"2")
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        r = subprocess.run(cmd[:5] + ["3"] + cmd[6:], env=env, capture_output=True, text=True)
        assert r.returncode == 2 and "describes 1 shards of 3 replicas" in r.stderr
    finally:
        if p.poll() is None:  # (SIGTERM first: a killed `cluster` leaves its replicas running)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        import shutil
        time.sleep(0.1)
        shutil.rmtree(d, ignore_errors=True)


def test_well_formed_but_wrong_messages_are_rejected_before_the_state_machine():
    """A finalize of the wrong kind, a record entry whose kind does not match its operation,
    and view-change messages from something that is not a peer never reach the state."""
    from persimmon_tapir.ir_replica import IRReplica
    from persimmon_tapir.simnet import Durable, SimNet
    from persimmon_tapir.wire import encode
    net = SimNet(1)
    peers = [("r", 0, i) for i in range(3)]
    sm = Durable((1, 0, 0, 3, 1))
    rep = IRReplica(net.endpoint(peers[0], lambda s, d: None), peers, 0, sm)
    commit = ("commit", 1, (5, 1), (), ((b"k", b"v"),))
    prepare = ("prepare", 1, (5, 1), (), ((b"k", b"v"),), ((0, 1),))
    for msg in (("FC", 1, 1, commit, (0, None)), ("FI", 1, 1, prepare),
                ("SV", 9, ((1, 1, "C", "F", 0, commit, (0, None)),))):
        rep.receive(peers[1], encode(msg))
    for msg in (("SV", 9, ((1, 1, "I", "F", 0, commit, None),)), ("DVC", 5, 0, 1, None)):
        rep.receive(("c", 99), encode(msg))  # a client posing as a replica
    net.run_for(1.0)
    assert rep.bad_messages == 5
    assert sm.state.record == {} and sm.state.store == {} and sm.state.view == 0
    rep.receive(peers[1], encode(("SV", 10, ((1, 1, "I", "F", 0, commit, None),))))
    assert sm.state.view == 10 and store.get(sm.state, b"k")[0] == b"v"  # (from a peer: taken)
