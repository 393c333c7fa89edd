"""One replica process: load the config, open (recover) the state, serve UDP until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time

from .backup import BackupCoordinator
from .config import ClusterConfig, ConfigError
from .coordinator import TapirClient
from .ir_replica import IRReplica
from .persistence import PoolMismatchError, open_state
from .state import NORMAL
from .udp import open_endpoint, open_endpoint_nowait

__all__ = ["run_replica"]


def _event(**kw) -> None:
    print(json.dumps(kw), flush=True)


def run_replica(config_path: str, shard: int, replica: int, directory: str,
                persistence: str | None = None, backup_timeout: float = 2.0) -> int:
    t0 = time.monotonic()
    try:
        cfg = ClusterConfig.load(config_path)
    except ConfigError as e:
        print(f"persimmon-tapir: {e}", file=sys.stderr)
        return 2
    if not 0 <= shard < len(cfg.shards) or not 0 <= replica < cfg.n:
        print(f"persimmon-tapir: {config_path} has {len(cfg.shards)} shards of {cfg.n} "
              f"replicas: no shard {shard} replica {replica}", file=sys.stderr)
        return 2
    mode = persistence or cfg.persistence
    try:
        sm = open_state(cfg.ident(shard, replica), mode, directory)
    except (PoolMismatchError, ValueError) as e:
        print(f"persimmon-tapir: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    addr = cfg.shards[shard][replica]
    try:
        ep = loop.run_until_complete(open_endpoint(loop, addr))
    except OSError as e:
        print(f"persimmon-tapir: cannot bind {addr[0]}:{addr[1]}: {e.strerror}", file=sys.stderr)
        sm.close()
        return 2
    rep = IRReplica(ep, list(cfg.shards[shard]), replica, sm, cfg.f)
    ep.receiver = rep.receive
    rng = random.SystemRandom()

    def backup_client():
        bep = open_endpoint_nowait(loop, (addr[0], 0))
        c = TapirClient(bep, list(cfg.shards), cfg.f, rng.getrandbits(39) | 1,
                        lambda: int(time.time() * 1e6), first_rid=1 << 60)
        bep.receiver = c.receive
        return c, bep.close
    rep.backup = BackupCoordinator(rep, backup_client, timeout=backup_timeout)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    st = sm.state
    _event(event="ready", shard=shard, replica=replica, pid=os.getpid(), mode=sm.mode,
           recovered=bool(sm.recovered), status=st.status, view=st.view,
           keys=len(st.store), record=len(st.record),
           seconds=round(time.monotonic() - t0, 6),
           recovery_seconds=round(sm.recovery_seconds, 6),
           **{f"recovery_{k}": round(v, 6) for k, v in sm.recovery_times.items()
              if k in ("materialize", "replay", "replayed_ops")})
    rep.start()
    if sm.recovered and st.status == NORMAL and any(e[1] == "T" for _c, _r, e in st.entries()):
        # operations it had not seen finalized when it stopped: sync with its peers
        rep.request_view_change()

    def watch_serving():
        if sm.state.status == NORMAL:
            _event(event="serving", shard=shard, replica=replica, view=sm.state.view,
                   keys=len(sm.state.store), seconds=round(time.monotonic() - t0, 6))
        else:
            loop.call_later(0.002, watch_serving)
    watch_serving()
    try:
        loop.run_until_complete(stop)
    finally:
        rep.stop()
        ep.close()
        sm.close()
        loop.close()
    return 0

