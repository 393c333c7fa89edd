"""INFO, CONFIG, COMMAND and CLIENT: the server's introspection commands."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from . import datasettings as datacfg
from .config import ConfigError
from .keyspace import DIRTY, to_int
from .registry import COMMANDS, client_commands
from .replies import E_SYNTAX, NULL_ARRAY, OK, RError, RMap

REDIS_VERSION = "7.0.15"  # the Redis whose commands, replies and test suite we follow
VERSION = REDIS_VERSION  # (what HELLO and INFO's redis_version report)
PERSIMMON_REDIS_VERSION = "0.1.0"

_DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                     "cpu", "modules", "errorstats", "cluster", "keyspace", "persimmon")
_ALL_SECTIONS = _DEFAULT_SECTIONS + ("commandstats", "latencystats")


def _human(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.2f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return str(n)


def render_info(s: Any, sections: list[bytes]) -> bytes:
    """INFO [section ...]: Redis 7.0's sections and fields (``default``, ``all``,
    ``everything``, or names, case-insensitive), plus a ``persimmon`` section."""
    want = [x.decode("utf-8", "replace").lower() for x in sections] or ["default"]
    chosen: list[str] = []
    for w in want:
        names = {"default": _DEFAULT_SECTIONS, "all": _ALL_SECTIONS,
                 "everything": _ALL_SECTIONS}.get(w, (w,))
        for n in names:
            if n not in chosen:
                chosen.append(n)
    out: list[str] = []
    for name in (n for n in _ALL_SECTIONS if n in chosen):
        items = _SECTIONS[name](s)
        if items is None:
            continue
        out.append(f"# {name.capitalize() if name != 'cpu' else 'CPU'}"
                   if name not in ("commandstats", "errorstats", "latencystats")
                   else "# " + {"commandstats": "Commandstats", "errorstats": "Errorstats",
                                "latencystats": "Latencystats"}[name])
        out.extend(f"{k}:{v}" for k, v in items.items())
        out.append("")
    return "\r\n".join(out).encode()


def _server(s: Any) -> dict:
    up = int(time.time() - s.started)
    return {
        "redis_version": REDIS_VERSION, "redis_git_sha1": "00000000", "redis_git_dirty": 0,
        "redis_build_id": "0", "redis_mode": "standalone", "os": " ".join(os.uname()[::2]),
        "arch_bits": 64, "monotonic_clock": "POSIX clock_gettime",
        "multiplexing_api": "epoll", "atomicvar_api": "c11-builtin",
        "gcc_version": "0.0.0", "process_id": os.getpid(), "process_supervised": "no",
        "run_id": s.run_id, "tcp_port": s.cfg.port,
        "server_time_usec": int(time.time() * 1_000_000), "uptime_in_seconds": up,
        "uptime_in_days": up // 86400, "hz": s.cfg.hz, "configured_hz": s.cfg.hz,
        "lru_clock": int(time.time()) & ((1 << 24) - 1),
        "executable": "persimmon-redis", "config_file": s.cfg.config_file or "",
        "io_threads_active": 0, "persimmon_version": PERSIMMON_REDIS_VERSION,
    }


def _clients(s: Any) -> dict:
    return {
        "connected_clients": len(s.clients), "cluster_connections": 0,
        "maxclients": s.cfg.maxclients, "client_recent_max_input_buffer": 0,
        "client_recent_max_output_buffer": 0,
        "blocked_clients": sum(1 for c in s.clients.values() if c.blocked),
        "tracking_clients": 0, "clients_in_timeout_table": 0,
    }


def _memory(s: Any) -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    return {
        "used_memory": rss, "used_memory_human": _human(rss), "used_memory_rss": rss,
        "used_memory_rss_human": _human(rss), "used_memory_peak": rss,
        "used_memory_peak_human": _human(rss), **_scripting_memory(),
        "maxmemory": s.cfg.values["maxmemory"],
        "maxmemory_human": _human(int(s.cfg.values["maxmemory"])),
        "maxmemory_policy": s.cfg.values["maxmemory-policy"], "mem_fragmentation_ratio": 1.0,
        "mem_allocator": "libc", "lazyfree_pending_objects": 0, "lazyfreed_objects": 0,
    }


def _scripting_memory() -> dict:
    from . import scripting

    lua = scripting.vm_memory()
    return {"used_memory_lua": lua, "used_memory_lua_human": _human(lua),
            "used_memory_vm_eval": lua, "used_memory_scripts": 0,
            "number_of_cached_scripts": len(scripting.SCRIPTS),
            "number_of_functions": len(scripting._funcs)}


def _persistence(s: Any) -> dict:
    return {
        "loading": 0, "async_loading": 0, "current_cow_peak": 0, "current_cow_size": 0,
        "current_fork_perc": "0.00", "current_save_keys_processed": 0,
        "current_save_keys_total": 0, "rdb_changes_since_last_save": DIRTY[0],
        "rdb_bgsave_in_progress": 0, "rdb_last_save_time": s.last_save,
        "rdb_last_bgsave_status": "ok", "aof_enabled": 0, "aof_rewrite_in_progress": 0,
        "aof_rewrite_scheduled": 0, "aof_last_write_status": "ok",
        "persistence_mode": s.p.mode, "persimmon_pool": s.p.pool_path or "",
        "persimmon_recovered": int(s.p.recovered),
        "persimmon_recovery_seconds": f"{s.p.recovery_seconds:.3f}",
    }


def _stats(s: Any) -> dict:
    return {
        "total_connections_received": s.stats["connections"],
        "total_commands_processed": s.ncommands, "instantaneous_ops_per_sec": 0,
        "total_net_input_bytes": 0, "total_net_output_bytes": 0,
        "rejected_connections": s.stats["rejected"], "expired_keys": s.stats["expired"],
        "expired_stale_perc": "0.00", "expired_time_cap_reached_count": 0,
        "evicted_keys": 0, "keyspace_hits": 0, "keyspace_misses": 0,
        "pubsub_channels": len(s.channels), "pubsub_patterns": len(s.patterns),
        "latest_fork_usec": 0, "total_forks": 0, "migrate_cached_sockets": 0,
        "total_active_defrag_time": 0, "tracking_total_keys": 0,
        "unexpected_error_replies": 0, "total_error_replies": sum(s.errors.values()),
        "dump_payload_sanitizations": 0, "total_reads_processed": 0,
        "total_writes_processed": 0,
    }


def _replication(s: Any) -> dict:
    return {"role": "master", "connected_slaves": 0, "master_failover_state": "no-failover",
            "master_replid": s.run_id, "master_replid2": "0" * 40, "master_repl_offset": 0,
            "second_repl_offset": -1, "repl_backlog_active": 0}


def _cpu(s: Any) -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"used_cpu_sys": f"{me.ru_stime:.6f}", "used_cpu_user": f"{me.ru_utime:.6f}",
            "used_cpu_sys_children": f"{ch.ru_stime:.6f}",
            "used_cpu_user_children": f"{ch.ru_utime:.6f}"}


def _commandstats(s: Any) -> dict:
    out = {}
    for name, c in sorted(COMMANDS.items()):
        if c.calls or c.failed or c.rejected:
            if "internal" in c.flags:
                continue
            out[f"cmdstat_{name.decode()}"] = (
                f"calls={c.calls},usec=0,usec_per_call=0.00,rejected_calls={c.rejected},"
                f"failed_calls={c.failed}")
    return out


def _errorstats(s: Any) -> dict:
    return {f"errorstat_{k}": f"count={v}" for k, v in sorted(s.errors.items())}


def _keyspace(s: Any) -> dict:
    ks = {}
    now = s.now()
    for i, db in enumerate(s.state.dbs):
        n = len(db.data)
        if n:
            live_exp = sum(1 for e in db.expires.values() if e > now)
            ks[f"db{i}"] = f"keys={n},expires={live_exp},avg_ttl=0"
    return ks


def _persimmon(s: Any) -> dict | None:
    st = s.p.stats()
    if not st:
        return None
    out = {}
    for k, v in st.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}_{k2}"] = f"{v2:.6f}" if isinstance(v2, float) else v2
        elif isinstance(v, float):
            out[k] = f"{v:.6f}"
        else:
            out[k] = int(v) if isinstance(v, bool) else v
    # (--commit-overlap) replies of reads of durable data sent before the commits in
    # flight ended (docs/device.md, "Reads that wait for no commit")
    out["replies_before_commit"] = s.durable_replies
    return out


_SECTIONS = {
    "server": _server, "clients": _clients, "memory": _memory, "persistence": _persistence,
    "stats": _stats, "replication": _replication, "cpu": _cpu,
    "modules": lambda s: {}, "errorstats": _errorstats, "cluster": lambda s:
    {"cluster_enabled": 0}, "keyspace": _keyspace, "persimmon": _persimmon,
    "commandstats": _commandstats, "latencystats": lambda s: {},
}


def config_cmd(s: Any, a: list) -> Any:
    sub = a[1].upper()
    cfg = s.cfg
    if sub == b"GET" and len(a) >= 3:
        out: dict[str, str] = {}
        for pat in a[2:]:
            for k, v in cfg.get(pat.decode("utf-8", "replace")):
                out.setdefault(k, v)
        for k in out:  # (the settings the state machine keeps: their value is the state's)
            if k.encode() in datacfg.SETTINGS:
                out[k] = str(datacfg.get(s.state, k.encode()))
        return RMap([(k.encode(), v.encode()) for k, v in out.items()])
    if sub == b"SET" and len(a) >= 4:
        if len(a) % 2:
            return RError(E_SYNTAX)
        pairs = [(a[i].decode("utf-8", "replace"), a[i + 1].decode("utf-8", "replace"))
                 for i in range(2, len(a), 2)]
        try:
            cfg.set_many(pairs)
        except KeyError as e:
            return RError("ERR Unknown option or number of arguments for CONFIG SET - "
                          f"'{e.args[0]}'")
        except ConfigError as e:
            return RError(f"ERR CONFIG SET failed (possibly related to argument "
                          f"'{e.args[0]}') - {e.args[1]}")
        s.config_changed()
        for k, _ in pairs:  # stream/HLL settings change what writes store: a logged op
            name = k.lower().encode()
            if name in datacfg.SETTINGS:
                value = cfg.get(k.lower())[0][1]
                s.write(0, (b"\x00datacfg", name, value.encode()))
        return OK
    if sub == b"RESETSTAT" and len(a) == 2:
        for k in s.stats:
            s.stats[k] = 0
        s.errors.clear()
        for c in COMMANDS.values():
            c.calls = c.usec = c.failed = c.rejected = 0
        return OK
    if sub == b"REWRITE" and len(a) == 2:
        return RError("ERR The server is running without a config file")
    if sub == b"HELP" and len(a) == 2:
        return [b"CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"GET <pattern>", b"SET <directive> <value>", b"RESETSTAT", b"REWRITE",
                b"HELP"]
    if sub in (b"GET", b"SET", b"RESETSTAT", b"REWRITE", b"HELP"):
        return RError(f"ERR wrong number of arguments for 'config|{sub.lower().decode()}' "
                      "command")
    return RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. Try CONFIG "
                  "HELP.")


def _cmd_info(name: bytes) -> list:
    c = COMMANDS[name]
    return [name, c.arity, [x.encode() for x in c.flags if x != "internal"], c.first, c.last,
            c.step]


def _all_names() -> list[bytes]:
    return client_commands()


def command_cmd(s: Any, a: list) -> Any:
    if len(a) == 1:
        return [_cmd_info(n) for n in _all_names()]
    sub = a[1].upper()
    if sub == b"COUNT":
        return len(_all_names())
    if sub == b"INFO":
        names = [x.lower() for x in a[2:]] or _all_names()
        known = set(_all_names())
        return [_cmd_info(n) if n in known else None for n in names]
    if sub == b"LIST":
        return _all_names()
    if sub == b"DOCS":
        names = [x.lower() for x in a[2:]] or _all_names()
        out = []
        for n in names:
            if n in set(_all_names()):
                out.append((n, RMap([(b"summary", n.upper() + b" command")])))
        return RMap(out)
    if sub == b"GETKEYS" and len(a) > 2:
        c = COMMANDS.get(a[2].lower())
        if c is None or "internal" in c.flags:
            return RError("ERR Invalid command specified")
        return c.keys(list(a[2:]))
    return RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. Try COMMAND "
                  "HELP.")


NO_REPLY = object()  # a command that sends no reply (CLIENT REPLY OFF/SKIP)


def client_cmd(s: Any, c: Any, a: list) -> Any:
    sub = a[1].upper()
    if sub == b"ID":
        return c.id
    if sub == b"SETNAME" and len(a) == 3:
        if b" " in a[2] or b"\n" in a[2]:
            return RError("ERR Client names cannot contain spaces, newlines or special "
                          "characters.")
        c.name = a[2]
        return OK
    if sub == b"GETNAME":
        return c.name or None
    if sub in (b"LIST", b"INFO"):
        who = [c] if sub == b"INFO" else list(s.clients.values())
        lines = []
        mono = time.monotonic()
        for x in who:
            qbuf, qfree = x.query_buffer()
            lines.append(
                f"id={x.id} addr={x.addr} laddr=127.0.0.1:{s.cfg.port} fd=0 "
                f"name={x.name.decode('utf-8', 'replace')} age={int(time.time() - x.created)} "
                f"idle={int(mono - x.last_io)} flags={'b' if x.blocked else 'N'} db={x.db} "
                f"sub={len(x.channels)} psub={len(x.patterns)} "
                f"multi={-1 if x.multi is None else len(x.multi)} "
                f"qbuf={qbuf} qbuf-free={qfree} resp={3 if x.resp3 else 2} "
                f"cmd={x.last_cmd.decode('utf-8', 'replace')}"
            )
        return ("\n".join(lines) + "\n").encode()
    if sub == b"KILL" and len(a) >= 3:
        if len(a) == 3:
            targets = [x for x in s.clients.values() if x.addr == a[2].decode()]
            if not targets:
                return RError("ERR No such client")
        else:
            targets = []
            for i in range(2, len(a) - 1, 2):
                f, v = a[i].upper(), a[i + 1]
                if f == b"ID":
                    targets += [x for x in s.clients.values() if str(x.id).encode() == v]
                elif f == b"ADDR":
                    targets += [x for x in s.clients.values() if x.addr.encode() == v]
                else:
                    return RError(E_SYNTAX)
        for x in targets:
            x.close_after_reply()
            s.schedule(x)
        return OK if len(a) == 3 else len(targets)
    if sub == b"UNBLOCK" and len(a) in (3, 4):
        try:
            cid = to_int(a[2])
        except RError as e:
            return e
        how = a[3].upper() if len(a) == 4 else b"TIMEOUT"
        if how not in (b"TIMEOUT", b"ERROR"):
            return RError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
        target = s.clients.get(cid)
        if target is None or target.blocked is None:
            return 0
        s.unblock(target, NULL_ARRAY if how == b"TIMEOUT" else
                  RError("UNBLOCKED client unblocked via CLIENT UNBLOCK"))
        return 1
    if sub == b"REPLY" and len(a) == 3:
        mode = a[2].upper()
        if mode not in (b"ON", b"OFF", b"SKIP"):
            return RError(E_SYNTAX)
        if mode == b"ON":
            c.set_reply_mode(b"ON")
            return OK
        # OFF and SKIP are not answered; SKIP also drops the next command's reply
        if not (mode == b"SKIP" and c.reply_mode == b"OFF"):
            c.set_reply_mode(mode)
        return NO_REPLY
    if sub in (b"SETINFO", b"NO-EVICT", b"NO-TOUCH"):
        return OK
    return RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. Try CLIENT "
                  "HELP.")
