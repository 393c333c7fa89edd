"""INFO, CONFIG, COMMAND and CLIENT: the server's introspection commands."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from .keyspace import to_int
from .patterns import glob_match
from .registry import COMMANDS, client_commands
from .replies import E_SYNTAX, OK, RError, RMap

VERSION = "7.0.0-persimmon"


def render_info(s: Any, sections: list[bytes]) -> bytes:
    want = {x.decode("utf-8", "replace") for x in sections} or {"default"}
    everything = bool(want & {"all", "everything"})
    out: list[str] = []

    def section(name: str, items: dict) -> None:
        if everything or "default" in want or name.lower() in want:
            out.append(f"# {name}")
            out.extend(f"{k}:{v}" for k, v in items.items())
            out.append("")

    up = int(time.time() - s.started)
    section("Server", {
        "redis_version": VERSION, "redis_mode": "standalone", "os": os.uname().sysname,
        "process_id": os.getpid(), "tcp_port": s.cfg.port, "uptime_in_seconds": up,
        "uptime_in_days": up // 86400, "executable": "persimmon-redis",
    })
    section("Clients", {"connected_clients": len(s.clients),
                        "blocked_clients": sum(1 for c in s.clients.values() if c.blocked),
                        "maxclients": s.cfg.maxclients})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    section("Memory", {"used_memory": rss, "used_memory_human": f"{rss / 1048576:.2f}M",
                       "maxmemory": 0, "maxmemory_policy": "noeviction",
                       **_scripting_memory()})
    section("Persistence", {
        "loading": 0, "persistence_mode": s.p.mode, "rdb_changes_since_last_save": 0,
        "rdb_last_save_time": s.last_save, "aof_enabled": 0,
        "persimmon_pool": s.p.pool_path or "", "persimmon_recovered": int(s.p.recovered),
        "persimmon_recovery_seconds": f"{s.p.recovery_seconds:.3f}",
    })
    section("Stats", {
        "total_connections_received": s.stats["connections"],
        "total_commands_processed": s.ncommands, "expired_keys": s.stats["expired"],
        "rejected_connections": s.stats["rejected"],
        "pubsub_channels": len(s.channels), "pubsub_patterns": len(s.patterns),
    })
    ks = {}
    now = s.now()
    for i, db in enumerate(s.state.dbs):
        n = len(db.data)
        if n:
            live_exp = sum(1 for e in db.expires.values() if e > now)
            ks[f"db{i}"] = f"keys={n},expires={live_exp},avg_ttl=0"
    section("Keyspace", ks)
    st = s.p.stats()
    if st and (everything or "default" in want or "persimmon" in want):
        out.append("# Persimmon")
        for k, v in st.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    out.append(f"{k}_{k2}:{v2:.6f}" if isinstance(v2, float) else
                               f"{k}_{k2}:{v2}")
            elif isinstance(v, float):
                out.append(f"{k}:{v:.6f}")
            else:
                out.append(f"{k}:{int(v) if isinstance(v, bool) else v}")
        out.append("")
    return "\r\n".join(out).encode()


_CONFIG_KEYS = {
    "port": lambda c: c.port, "bind": lambda c: " ".join(c.bind), "dir": lambda c: c.dir,
    "requirepass": lambda c: c.requirepass or "", "maxclients": lambda c: c.maxclients,
    "databases": lambda c: c.databases, "proto-max-bulk-len": lambda c: c.proto_max_bulk_len,
    "appendonly": lambda c: "no", "save": lambda c: "", "hz": lambda c: c.hz,
    "maxmemory": lambda c: 0, "timeout": lambda c: 0,
    "busy-reply-threshold": lambda c: c.busy_reply_threshold,
    "lua-time-limit": lambda c: c.busy_reply_threshold,
}


def _scripting_memory() -> dict:
    from . import scripting

    lua = scripting._vm.memory() if scripting._vm is not None else 0
    return {"used_memory_lua": lua, "used_memory_vm_eval": lua,
            "number_of_cached_scripts": len(scripting.SCRIPTS),
            "number_of_functions": len(scripting._funcs)}


def config_cmd(s: Any, a: list) -> Any:
    sub = a[1].upper()
    cfg = s.cfg
    if sub == b"GET" and len(a) >= 3:
        out = []
        for pat in a[2:]:
            for k, fn in _CONFIG_KEYS.items():
                if glob_match(pat.lower(), k.encode()) and k.encode() not in out:
                    out += [k.encode(), str(fn(cfg)).encode()]
        return RMap(list(zip(out[::2], out[1::2], strict=True)))
    if sub == b"SET" and len(a) >= 4 and len(a) % 2 == 0:
        for i in range(2, len(a), 2):
            k, v = a[i].lower().decode("utf-8", "replace"), a[i + 1]
            if k == "requirepass":
                cfg.requirepass = v.decode() or None
            elif k == "maxclients":
                cfg.maxclients = to_int(v)
            elif k == "proto-max-bulk-len":
                cfg.proto_max_bulk_len = to_int(v)
            elif k == "hz":
                cfg.hz = max(1, min(500, to_int(v)))
            elif k in ("busy-reply-threshold", "lua-time-limit"):
                cfg.busy_reply_threshold = to_int(v)
            elif k in ("appendonly", "save", "maxmemory", "timeout"):
                pass
            else:
                return RError(f"ERR Unknown option or number of arguments for CONFIG SET - "
                              f"'{k}'")
        return OK
    if sub == b"RESETSTAT" and len(a) == 2:
        for k in s.stats:
            s.stats[k] = 0
        s.ncommands = 0
        return OK
    if sub in (b"GET", b"SET", b"RESETSTAT"):
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
        for x in who:
            lines.append(
                f"id={x.id} addr={x.addr} laddr=127.0.0.1:{s.cfg.port} fd=0 "
                f"name={x.name.decode('utf-8', 'replace')} age={int(time.time() - x.created)} "
                f"idle=0 flags={'b' if x.blocked else 'N'} db={x.db} "
                f"sub={len(x.channels)} psub={len(x.patterns)} "
                f"multi={-1 if x.multi is None else len(x.multi)} resp={3 if x.resp3 else 2} "
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
    if sub in (b"SETINFO", b"NO-EVICT", b"NO-TOUCH", b"REPLY"):
        return OK
    return RError(f"ERR unknown subcommand '{a[1].decode('utf-8', 'replace')}'. Try CLIENT "
                  "HELP.")
