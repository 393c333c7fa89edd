"""``persimmon crashtest``: crash a user's state machine on purpose and check what recovers.

    persimmon crashtest MODULE:FACTORY --ops MODULE:GENERATOR [--seconds N] [--seed S]

``FACTORY()`` builds the initial state (a class works), as for ``persimmon.open``;
``GENERATOR(rng)`` (``rng`` a seeded ``random.Random``) yields operations: what ``apply(op)``
takes, or, for the decorator form, ``("method", *args)`` tuples naming an ``@persimmon.rw``
method.  With one seed everything replays.  The checks, in order:

1. **Determinism**: the operations applied to two fresh states, one after the other in this
   process, give the same result and state after each (an operation that reads the clock,
   random numbers or outside state does not).
2. **Hash order**: the same in two processes with different ``PYTHONHASHSEED``: an operation
   whose effect depends on the iteration order of a set (or on ``hash()`` of a str) differs,
   and the PM copy, whose sets iterate in insertion order, would differ from the DRAM copy.
3. **Verify mode**: ``PSM(verify=True)`` runs the workload; the shadow compares every
   operation's result and state digest on the PM copy with the DRAM copy's.
4. **Simulated power failures**: the workload runs on the crash simulator with the shadow
   interleaved; at sampled fences a crash image (both crash models) is recovered, and for
   about a third of them the recovery (and the new shadow's first commit) is crashed in
   turn and recovered again.
5. **SIGKILLs**: a forked process runs the workload through ``PSM``; it, its shadow or both are
   SIGKILLed at random moments, and the pool is recovered.

After every crash the recovered state must equal replaying a prefix of the operations on a
fresh state, a prefix that contains every acknowledged operation.  The first failure is
reported with the operation's number, what it is, the seed and the phase; exit status 0 when
all passes, 1 on a failure, 2 on bad usage.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .calls import CALL, apply_op
from .digest import digest
from .errors import DivergenceError, PersimmonError

MIN_POWER_FAILURES = 20  # crash images recovered per run, whatever the time budget
MIN_SIGKILLS = 3  # SIGKILL rounds per run, likewise


class UsageError(PersimmonError):
    """The command line names something that cannot be used."""


@dataclass
class Failure:
    phase: str
    op_index: int | None  # 0-based
    message: str

    def describe(self, ops: list[Any], seed: int) -> str:
        where = ""
        if self.op_index is not None and self.op_index < len(ops):
            where = (f"operation {self.op_index + 1:,} ({_short(ops[self.op_index])}): ")
        return (f"FAIL [{self.phase}] {where}{self.message}\n"
                f"  replay with --seed {seed}")


def _short(x: Any) -> str:
    if type(x) is tuple and len(x) == 4 and x[0] == CALL and not x[3]:
        x = (x[1], *x[2])  # a method call as the generator yielded it
    r = repr(x)
    return r if len(r) <= 120 else r[:117] + "..."


def load(spec: str, what: str) -> Any:
    """``module:name`` -> the object (the current directory is importable)."""
    if ":" not in spec:
        raise UsageError(f"{what} must be MODULE:NAME, got {spec!r}")
    mod, _, name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        m = importlib.import_module(mod)
    except ImportError as e:
        raise UsageError(f"cannot import {mod!r} for {what}: {e}") from e
    obj = m
    for part in name.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{mod!r} has no {name!r} ({what})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{spec} is not callable ({what})")
    return obj


def to_op(state_type: type, op: Any) -> Any:
    """A generator's operation as logged: ``("method", *args)`` naming an ``@rw`` method of
    the decorator form becomes a method-call operation."""
    if type(op) is tuple and op and type(op[0]) is str:
        attr = getattr(state_type, op[0], None)
        if getattr(attr, "_persimmon_kind", None) == "rw":
            return (CALL, op[0], tuple(op[1:]), {})
    return op


def make_ops(factory: Callable[[], Any], generator: Callable[..., Iterable[Any]],
             seed: int, limit: int) -> list[Any]:
    st = type(factory())
    try:
        produced = generator(random.Random(seed))
        return [to_op(st, o) for o in itertools.islice(produced, limit)]
    except Exception as e:
        raise UsageError(f"the generator raised {type(e).__name__}: {e}") from e


def _apply(state: Any, op: Any) -> Any:
    try:
        return apply_op(state, op)
    except Exception as e:  # an operation that raises is still an operation
        return e


def _result_digest(r: Any) -> int:
    if isinstance(r, BaseException):
        return digest(("exception", type(r).__qualname__, repr(r.args)))
    try:
        return digest(r)
    except Exception:
        return digest(repr(r))


def trace(factory: Callable[[], Any], ops: list[Any]) -> list[tuple[int, int]]:
    """``[(0, digest of the fresh state)]`` then ``(result digest, state digest)`` after each
    operation applied to a fresh state: entry ``k`` is the state after the first ``k``."""
    s = factory()
    out = [(0, digest(s))]
    for op in ops:
        r = _apply(s, op)
        out.append((_result_digest(r), digest(s)))
    return out


# ---------------------------------------------------------------------------- the phases
def check_determinism(factory: Callable[[], Any], ops: list[Any]) -> Failure | None:
    a = trace(factory, ops)
    b = trace(factory, ops)
    for i in range(1, len(a)):
        if a[i] != b[i]:
            what = "its result" if a[i][0] != b[i][0] else "the state after it"
            return Failure("determinism", i - 1,
                           f"{what} differs between two runs on the same state: the "
                           "operation is not deterministic (does it read the clock, random "
                           "numbers, a file or other outside state?); pass such values in "
                           "the operation instead")
    return None


_HASH_CHILD = r"""
import json, pickle, sys
sys.path[:0] = {paths!r}
from persimmon.crashtest import load, trace
factory = load({factory!r}, "FACTORY")
ops = pickle.loads(sys.stdin.buffer.read())
print(json.dumps(trace(factory, ops)))
"""


def check_hash_order(factory_spec: str, ops: list[Any]) -> Failure | None:
    try:
        blob = pickle.dumps(ops)
    except Exception:
        return None  # (operations that cannot be pickled cannot be logged either)
    code = _HASH_CHILD.format(paths=[os.getcwd(), *sys.path], factory=factory_spec)
    runs = []
    for hs in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hs)
        r = subprocess.run([sys.executable, "-c", code], input=blob, env=env,
                           capture_output=True, timeout=600)
        if r.returncode != 0:
            raise UsageError("the hash-order check could not run the state machine in a "
                             "new process: " + r.stderr.decode(errors="replace")[-800:])
        runs.append(json.loads(r.stdout))
    a, b = runs
    for i in range(1, len(a)):
        if a[i] != b[i]:
            return Failure("hash order", i - 1,
                           "its effect depends on the iteration order of a set (or on "
                           "hash() of a str): it differs between two processes with "
                           "different hash seeds, and the PM copy iterates sets in "
                           "insertion order, so the PM copy's order differs; iterate "
                           "sorted(the_set) instead, and do not use set.pop()")
    return None


def _op_index_of(position: int, ends: list[int]) -> int:
    """Index of the operation whose log entry ends at or after ``position``."""
    import bisect

    return min(bisect.bisect_left(ends, position), len(ends) - 1)


def check_verify_mode(factory: Callable[[], Any], ops: list[Any], workdir: str
                      ) -> Failure | None:
    from .psm import PSM

    path = os.path.join(workdir, f"verify-{uuid.uuid4().hex}.pool")
    psm = PSM(factory, path, verify=True, log_size=16 << 20, shadow_idle=False)
    ends: list[int] = []
    try:
        for op in ops:
            try:
                psm.invoke_rw(op)
            except Exception:
                pass
            ends.append(psm.log_position)
        try:
            psm.verify()
        except DivergenceError as e:
            msg = str(e)
            idx = None
            pos = psm.diverged_position
            if pos:
                # the shadow reports the position before the diverging entry
                import bisect

                idx = min(bisect.bisect_right(ends, pos), len(ends) - 1)
            return Failure("verify mode", idx,
                           "its effect on the PM copy differs from its effect on the DRAM "
                           "copy: test types with isinstance(x, dict), not type(x) is dict "
                           "(the PM copy's containers are proxies), and keep state in the "
                           "types the PM copy stores (README) (" + msg + ")")
    finally:
        psm.close()
        if os.path.exists(path):
            os.unlink(path)
    return None


def _match_prefix(state: Any, expected: list[tuple[int, int]], lo: int, hi: int
                  ) -> int | None:
    d = digest(state)
    for k in range(hi, lo - 1, -1):
        if expected[k][1] == d:
            return k
    return None


def power_failures(factory: Callable[[], Any], ops: list[Any],
                   expected: list[tuple[int, int]], seed: int, budget: float,
                   tick: Callable[[int], None], minimum: int = MIN_POWER_FAILURES
                   ) -> Failure | None:
    """The workload on the crash simulator, foreground and shadow interleaved; crash images
    at sampled fences (both models) recovered and matched against the prefixes."""
    from .heap import Heap
    from .opcodec import encode
    from .oplog import OpLog
    from .recovery import recover_state
    from .shadow import Applier
    from .simdevice import CRASH_MODELS, SimDevice

    rng = random.Random(seed)
    deadline = time.monotonic() + budget

    class Probe(SimDevice):
        check: Any = None

        def drain(self) -> None:
            if self.check is not None:
                self.check(self)
            super().drain()

    dev = Probe(1 << 20)
    heap = Heap.create(dev, factory(), log_size=256 << 10, undo_size=256 << 10,
                       initial_size=512 << 10)
    pool = heap.pool
    OpLog.format(dev, pool.oplog_off, pool.oplog_size)
    fg = OpLog(dev, pool.oplog_off, pool.oplog_size)
    ap = Applier(heap, OpLog(dev, pool.oplog_off, pool.oplog_size), max_batch=13)
    prog = {"acked": 0, "submitted": 0, "fences": 0, "checks": 0}
    found: list[Failure] = []

    def over() -> bool:  # (the time budget, but never fewer than MIN_POWER_FAILURES)
        return time.monotonic() > deadline and prog["checks"] >= minimum

    def check(d: SimDevice) -> None:
        prog["fences"] += 1
        if found or rng.random() > 0.15 or over():
            return
        prog["checks"] += 1
        model = CRASH_MODELS[prog["fences"] % 2]
        img = d.crash_image(rng.randrange(1 << 30), model)
        try:
            state, _ = recover_state(SimDevice.from_image(img))
        except PersimmonError as e:
            found.append(Failure("power failure", prog["acked"],
                                 f"recovery failed after a power failure at fence "
                                 f"{prog['fences']} ({model} model): {e}"))
            return
        k = _match_prefix(state, expected, prog["acked"], prog["submitted"])
        if k is None:
            found.append(Failure(
                "power failure", prog["submitted"] - 1,
                f"after a power failure at fence {prog['fences']} ({model} model) the "
                f"recovered state is not the state after any prefix of the operations "
                f"from {prog['acked']:,} (all acknowledged) to {prog['submitted']:,}"))
        elif rng.random() < 0.3:
            again = _crash_the_recovery(img, model, rng, expected, k, prog["fences"])
            if again is not None:
                found.append(again)
        tick(1)

    def drive() -> None:
        if not ap.step():
            ap.commit()

    dev.check = check
    for i, op in enumerate(ops):
        if found or over():
            break
        try:
            payload = encode(op)
        except Exception:
            continue
        prog["submitted"] = i + 1
        fg.append(payload, wait=drive)
        fg.commit()
        prog["acked"] = i + 1
        for _ in range(rng.randrange(3)):
            drive()
    dev.check = None
    return found[0] if found else None


def _crash_the_recovery(img: bytes, model: str, rng: random.Random,
                        expected: list[tuple[int, int]], k: int, fence: int
                        ) -> Failure | None:
    """Recover ``img`` again, now on the simulator: the foreground's recovery, then a new
    shadow's open, replay of the tail and first commit; a power failure at one of those
    fences (chosen at random) must recover to the same ``k`` operations."""
    from .heap import Heap
    from .oplog import OpLog
    from .recovery import recover_state
    from .shadow import Applier
    from .simdevice import SimDevice

    shots: list[bytes] = []

    class Probe(SimDevice):
        def drain(self) -> None:
            if rng.random() < 0.3 or not shots:
                shots.append(self.crash_image(rng.randrange(1 << 30), model))
            super().drain()

    dev = Probe(img)
    recover_state(dev)
    heap = Heap.open(dev, lock=False)
    ap = Applier(heap, OpLog(dev, heap.pool.oplog_off, heap.pool.oplog_size))
    while ap.step():
        pass
    ap.commit()
    heap.close()
    for shot in shots[-3:] + shots[:2]:
        try:
            state, _ = recover_state(SimDevice.from_image(shot))
        except PersimmonError as e:
            return Failure("power failure during recovery", k - 1 if k else None,
                           f"a power failure during the recovery from the power failure at "
                           f"fence {fence} ({model} model) left a pool that cannot be "
                           f"recovered: {e}")
        if _match_prefix(state, expected, k, k) is None:
            return Failure("power failure during recovery", k - 1 if k else None,
                           f"a power failure during the recovery from the power failure at "
                           f"fence {fence} ({model} model) changed the recovered state "
                           f"(the first recovery had {k:,} operations)")
    return None


def _sigkill_child(factory: Callable[[], Any], ops: list[Any], path: str, w: int) -> None:
    from .psm import PSM

    try:
        psm = PSM(factory, path, log_size=4 << 20, lock_timeout=10)
    except Exception as e:
        os.write(w, b"error " + f"{type(e).__name__}: {e}".encode(errors="replace") + b"\n")
        return
    os.write(w, b"shadow %d\n" % psm.shadow_pid)
    for i, op in enumerate(ops):
        try:
            psm.invoke_rw(op)
        except Exception:
            pass
        os.write(w, b"ack %d\n" % (i + 1))
    psm.close()
    os.write(w, b"done 0\n")


def sigkills(factory: Callable[[], Any], ops: list[Any], expected: list[tuple[int, int]],
             seed: int, budget: float, workdir: str, tick: Callable[[int], None]
             ) -> Failure | None:
    """Real SIGKILLs of the foreground, its shadow or both, at random moments."""
    from .recovery import recover_state

    rng = random.Random(seed ^ 0x5A5A)
    deadline = time.monotonic() + budget
    rounds = 0
    while time.monotonic() < deadline or rounds < MIN_SIGKILLS:
        mode = ("foreground", "shadow", "both")[rounds % 3]
        path = os.path.join(workdir, f"kill-{uuid.uuid4().hex}.pool")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            try:
                _sigkill_child(factory, ops, path, w)
            finally:
                os._exit(0)
        os.close(w)
        f = os.fdopen(r, "rb", buffering=0)
        lines = []
        first = f.readline().split()
        shadow = int(first[1]) if first and first[0] == b"shadow" else None
        stop = time.monotonic() + rng.uniform(0.02, 0.4)
        os.set_blocking(r, False)
        while time.monotonic() < stop:
            try:
                b = f.read(65536)
            except BlockingIOError:
                b = None
            if b:
                lines.append(b)
            elif b == b"":
                break
            time.sleep(0.002)
        if mode in ("shadow", "both") and shadow:
            _kill(shadow)
            if mode == "shadow":
                time.sleep(rng.uniform(0.02, 0.2))
        _kill(pid)
        os.waitpid(pid, 0)
        if shadow:
            _kill(shadow)
        os.set_blocking(r, True)
        lines.append(f.read() or b"")
        f.close()
        acked = 0
        if first and first[0] == b"error":
            return Failure("SIGKILL", None, "the state machine could not start under PSM: "
                           + b" ".join(first[1:]).decode(errors="replace"))
        for line in b"".join(lines).split(b"\n"):
            p = line.split()
            if len(p) == 2 and p[0] == b"ack":
                acked = int(p[1])
        lock = _wait_unlocked(path)  # (a shadow the watchdog restarted may still be exiting)
        try:
            state, _ = recover_state(path)
        except (PersimmonError, OSError) as e:
            return Failure("SIGKILL", acked,
                           f"recovery failed after a SIGKILL of the {mode}: {e}")
        finally:
            if lock is not None:
                os.close(lock)
            if os.path.exists(path):
                os.unlink(path)
        if _match_prefix(state, expected, acked, len(ops)) is None:
            return Failure("SIGKILL", acked,
                           f"after a SIGKILL of the {mode} the recovered state is not the "
                           f"state after any prefix of the operations containing the "
                           f"{acked:,} acknowledged")
        rounds += 1
        tick(1)
    return None


def _wait_unlocked(path: str, timeout: float = 10.0) -> int | None:
    """Take the pool file's lock (every process of the crashed run has let it go); the
    descriptor, or None when there is no file."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                return fd  # (recover anyway; a failure will say what it found)
            time.sleep(0.01)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------- the driver
@dataclass
class Report:
    failure: Failure | None
    ops: list[Any]
    seed: int
    counts: dict[str, int]

    def text(self) -> str:
        c = ", ".join(f"{k} {v:,}" for k, v in self.counts.items())
        if self.failure is None:
            return f"ok: {len(self.ops):,} operations, seed {self.seed} ({c})"
        return self.failure.describe(self.ops, self.seed) + f"\n  ({c})"


def run(factory_spec: str, ops_spec: str, *, seconds: float = 30.0, seed: int | None = None,
        n_ops: int = 500, progress: bool | None = None, workdir: str | None = None,
        min_power_failures: int = MIN_POWER_FAILURES) -> Report:
    """Run every check on the state machine ``factory_spec`` under the workload ``ops_spec``
    (both ``module:name``) for about ``seconds``; the first failure ends it."""
    factory = load(factory_spec, "FACTORY")
    generator = load(ops_spec, "--ops GENERATOR")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    ops = make_ops(factory, generator, seed, n_ops)
    if not ops:
        raise UsageError(f"{ops_spec} yielded no operations")
    workdir = workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    counts = {"power failures": 0, "SIGKILLs": 0}
    bar = None
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=5, desc="crashtest", unit="phase", file=sys.stderr)
    start = time.monotonic()

    def step(name: str) -> None:
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(1)

    def ticker(key: str) -> Callable[[int], None]:
        def tick(n: int) -> None:
            counts[key] += n
            if bar is not None:
                bar.set_postfix_str(f"{key} {counts[key]}")
        return tick

    def phase(name: str, fn: Callable[[], Failure | None]) -> Failure | None:
        try:
            return fn()
        except UsageError:
            raise
        except Exception as e:  # (the state machine's own error, named, not a traceback)
            return Failure(name, None, f"the run stopped with {type(e).__name__}: {e}")
        finally:
            step(name)

    try:
        expected = trace(factory, ops)
        failure = phase("determinism", lambda: check_determinism(factory, ops))
        if failure is None:
            failure = phase("hash order", lambda: check_hash_order(factory_spec, ops))
        if failure is None:
            failure = phase("verify mode", lambda: check_verify_mode(factory, ops, workdir))
        left = max(1.0, seconds - (time.monotonic() - start))
        if failure is None:
            failure = phase("power failures", lambda: power_failures(
                factory, ops, expected, seed, left / 2, ticker("power failures"),
                min_power_failures))
        if failure is None:
            left = max(0.5, seconds - (time.monotonic() - start))
            failure = phase("SIGKILLs", lambda: sigkills(
                factory, ops, expected, seed, left, workdir, ticker("SIGKILLs")))
    finally:
        if bar is not None:
            bar.close()
    return Report(failure, ops, seed, counts)


def main(args: Any) -> int:
    """The ``persimmon crashtest`` command (``args`` from the CLI's parser)."""
    try:
        rep = run(args.factory, args.ops, seconds=args.seconds, seed=args.seed,
                  n_ops=args.n_ops, progress=None if not args.no_progress else False,
                  min_power_failures=args.power_failures)
    except UsageError as e:
        print(f"persimmon crashtest: {e}", file=sys.stderr)
        return 2
    print(rep.text())
    return 0 if rep.failure is None else 1
