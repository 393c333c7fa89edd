"""The port: a replica's state machine under a real PSM (determinism of every operation a
replica runs, recovery from the pool) and the pool checks (foreign, damaged, mismatched)."""

from __future__ import annotations

import os
import random
import uuid

import pytest

from persimmon import PSM
from persimmon_tapir import state as state_module
from persimmon_tapir import store
from persimmon_tapir.persistence import Persistent, PoolMismatchError
from persimmon_tapir.simnet import Durable, SimCluster
from persimmon_tapir.state import ReplicaState
from persimmon_tapir.tasks import spawn


@pytest.fixture
def pooldir():
    d = f"/dev/shm/tapir-ptest-{uuid.uuid4().hex[:10]}"
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


class Recorder(Durable):
    def __init__(self, ident):
        super().__init__(ident)
        self.ops = []
        inner = self.state.apply

        def rw(op):
            self.ops.append(op)
            return inner(op)
        self.rw = rw


def _recorded_ops(seed=3):
    """Every operation replica (0, 0) ran in a faulty simulated run with view changes."""
    cluster = SimCluster(seed, shards=1, drop=0.05, dup=0.05)
    rec = Recorder(cluster.config.ident(0, 0))
    cluster.sms[(0, 0)] = rec
    cluster.crash(0, 0)
    cluster.sms[(0, 0)] = rec
    cluster.restart(0, 0)
    rng = random.Random(seed)
    clients = [cluster.client() for _ in range(2)]

    async def work(c):
        for n in range(20):
            t = c.begin()
            for k in rng.sample([b"a", b"b", b"c", b"d"], 2):
                await t.get(k)
            t.put(rng.choice([b"a", b"b", b"c", b"d"]), b"v%d-%d" % (c.cid, n))
            await t.commit()
            if n % 10 == 5:
                cluster.replicas[(0, rng.randrange(3))].request_view_change()
    tasks = [spawn(work(c)) for c in clients]
    cluster.net.run_until(lambda: all(t.done for t in tasks))
    cluster.net.run_for(2.0)
    kinds = {op[0] for op in rec.ops}
    assert {b"pc4", b"fc4", b"pi4", b"fi4", "merge", "install", "vc"} <= kinds, kinds
    return cluster.config.ident(0, 0), rec.ops, rec.state


def _digest(s: ReplicaState):
    return (s.view, s.status, s.latest_normal_view,
            dict(s.record), dict(s.store), dict(s.reads),
            dict(s.prepared), dict(s.decided), dict(s.prepared_reads), dict(s.prepared_writes))


def test_every_replica_operation_is_deterministic_on_the_persistent_copy(pooldir):
    ident, ops, final = _recorded_ops()
    os.makedirs(pooldir)
    path = os.path.join(pooldir, "verify.pool")
    psm = PSM(lambda: ReplicaState(ident), path, verify=True, log_size=16 << 20)
    for op in ops:
        psm.invoke_rw(op)
    psm.verify()  # DRAM and PM copies agree, and no operation diverged on the way
    assert _digest(psm.state) == _digest(final)
    psm.close(drain=False)
    psm = PSM(lambda: ReplicaState(ident), path, log_size=16 << 20)
    assert psm.recovered and _digest(psm.state) == _digest(final)
    psm.close()


def test_replica_state_survives_close_and_reopen(pooldir):
    ident = (7, 0, 1, 3, 1)
    p = Persistent(ident, pooldir, log_size=4 << 20)
    assert not p.recovered
    p.rw((b"pc4", 1, 1, 5, (10, 1), (), ((b"k", b"v"),), ((0, 1),)))
    p.rw((b"fi4", 1, 2, b"commit", 5, (10, 1), (), ((b"k", b"v"),)))
    p.commit()
    p.close()
    p = Persistent(ident, pooldir, log_size=4 << 20)
    assert p.recovered and store.get(p.state, b"k")[0] == b"v"
    assert store.decision(p.state, 5) == (10, 1)
    p.close()


class Counter:
    def __init__(self):
        self.n = 0

    def apply(self, op):
        self.n += op


def test_foreign_pool_is_refused_and_kept(pooldir):
    ident = (7, 0, 0, 3, 1)
    os.makedirs(pooldir)
    path = os.path.join(pooldir, "tapir-s0-r0.pool")
    psm = PSM(Counter, path, log_size=1 << 20)
    psm.invoke_rw(41)
    psm.close()
    with pytest.raises(PoolMismatchError, match="holds a Counter state machine"):
        Persistent(ident, pooldir)
    psm = PSM(Counter, path, log_size=1 << 20)  # untouched
    assert psm.state.n == 41
    psm.close()


def test_damaged_pool_is_refused_and_kept(pooldir):
    os.makedirs(pooldir)
    path = os.path.join(pooldir, "tapir-s0-r0.pool")
    junk = os.urandom(1 << 16)
    with open(path, "wb") as fh:
        fh.write(junk)
    with pytest.raises(PoolMismatchError, match="cannot open the pool"):
        Persistent((7, 0, 0, 3, 1), pooldir)
    with open(path, "rb") as fh:
        assert fh.read() == junk


def test_pool_of_another_cluster_or_replica_is_refused(pooldir):
    p = Persistent((7, 0, 0, 3, 1), pooldir, log_size=4 << 20)
    p.rw((b"fi4", 1, 1, b"commit", 5, (10, 1), (), ((b"k", b"v"),)))
    p.commit()
    p.close()
    for other in ((8, 0, 0, 3, 1), (7, 0, 0, 3, 2), (7, 0, 0, 5, 1)):
        with pytest.raises(PoolMismatchError, match=r"holds replica \(7, 0, 0, 3, 1\)"):
            Persistent(other, pooldir)
    p = Persistent((7, 0, 0, 3, 1), pooldir, log_size=4 << 20)
    assert store.get(p.state, b"k")[0] == b"v"
    p.close()


def test_pool_with_an_older_state_layout_is_refused_and_left_alone(pooldir):
    def old_replica():  # what an older persimmon-tapir wrote: no layout number
        s = ReplicaState((7, 0, 0, 3, 1))
        del s.format
        s.store[b"k"] = [[(10, 1), b"v"]]
        return s
    path = os.path.join(pooldir, "tapir-s0-r0.pool")
    PSM(old_replica, path, log_size=4 << 20).close()
    with pytest.raises(PoolMismatchError, match=r"another version of persimmon-tapir "
                       r"\(state layout 1, this one reads 4\)"):
        Persistent((7, 0, 0, 3, 1), pooldir)
    psm = PSM(lambda: None, path)
    assert not hasattr(psm.state, "format") and psm.state.store[b"k"] == [[(10, 1), b"v"]]
    psm.close()


def test_pool_of_layout_2_with_operations_in_its_log_is_refused_before_anything_runs(
        pooldir, monkeypatch):
    # A replica of layout 2 killed with operations in its log (not applied to the PM copy
    # yet): this version must not replay them (its operations have another shape) nor let
    # its shadow apply them; the pool is refused and stays as the older version left it.
    ident = (7, 0, 0, 3, 1)
    path = os.path.join(pooldir, "tapir-s0-r0.pool")
    monkeypatch.setattr(state_module, "FORMAT", 2)  # (a state and an apply of layout 2)
    psm = PSM(lambda: ReplicaState(ident), path, log_size=4 << 20)
    psm._stop_shadow()  # the log keeps what follows
    psm.invoke_rw(("vc", 4, "view-change", 3))
    psm.close(drain=False)
    monkeypatch.undo()
    with pytest.raises(PoolMismatchError, match=r"another version of persimmon-tapir "
                       r"\(state layout 2, this one reads 4\)"):
        Persistent(ident, pooldir)
    monkeypatch.setattr(state_module, "FORMAT", 2)  # the older version opens it again
    psm = PSM(lambda: None, path)
    assert psm.recovery_times["replayed_ops"] == 1  # still in the log: nobody applied it
    assert psm.state.format == 2 and psm.state.view == 4
    psm.close()


def test_pool_of_layout_3_with_a_transaction_in_its_log_is_refused_before_anything_runs(
        pooldir, monkeypatch):
    # A replica of layout 3 killed with a Prepare and a commit in its log: layout 3 logged
    # them as b"pc"/b"fi" on a state of lists and tuples; this version must not apply them
    # (its layout-4 code would misread that state), and the pool is left as it was.
    ident = (7, 0, 0, 3, 1)
    path = os.path.join(pooldir, "tapir-s0-r0.pool")

    def layout3():
        s = ReplicaState(ident)
        s.format = 3
        s.store[b"k"] = [10, 1, b"v"]  # (layout 3's flat versions)
        return s
    psm = PSM(layout3, path, log_size=4 << 20)
    psm._stop_shadow()  # the log keeps what follows
    monkeypatch.setattr(ReplicaState, "apply", lambda self, op: None)  # (layout 3 ran it)
    psm.invoke_rw((b"pc", 1, 1, 5, (10, 1), (), ((b"k", b"w"),), ((0, 1),)))
    psm.invoke_rw((b"fi", 1, 2, b"commit", 5, (10, 1), (), ((b"k", b"w"),)))
    psm.close(drain=False)
    monkeypatch.undo()
    with open(path, "rb") as fh:
        before = fh.read()
    with pytest.raises(PoolMismatchError, match=r"another version of persimmon-tapir "
                       r"\(state layout 3, this one reads 4\)"):
        Persistent(ident, pooldir)
    with open(path, "rb") as fh:
        assert fh.read() == before  # untouched: nothing applied, rolled back or committed


def test_transaction_operations_are_logged_in_the_compiled_packed_form():
    # str in an operation sends it through pickle (the Python path, 2-3 us); the replica's
    # transaction operations are built of tuples, bytes and ints only (opcodec.pack: the
    # packed form the compiled grouper writes; None for anything it hands to pickle)
    from persimmon.opcodec import pack
    from persimmon_tapir.state import logged_op
    prepare = ("prepare", 5, (10, 1), ((b"r", (1, 1)),), ((b"k", b"v"),), ((0, 1),))
    commit = ("commit", 5, (10, 1), ((b"r", (1, 1)),), ((b"k", b"v"),))
    for msg in (("PC", 1, 2, 0, prepare), ("FC", 1, 2, prepare, (0, None)),
                ("PI", 1, 3, 0, commit), ("FI", 1, 3, commit)):
        op = logged_op(msg)
        assert len(op) != 4 and pack(op) is not None, msg  # (4 items: maybe a method call)
