"""Server settings: the command line, redis.conf and CONFIG GET/SET, over one table.

Every parameter of Redis 7.0 is known by its name and its old alias (``hash-max-ziplist-*``
for ``hash-max-listpack-*``, ...), with Redis's type checks, ranges and error messages, so
tools and test suites that read and set them work.  The ones persimmon-redis acts on are
``EFFECTIVE`` (the server reads them from :class:`Config`); the others are kept and reported
as set, and do nothing here (replication, AOF/RDB, eviction, TLS, ... have no counterpart:
persistence is Persimmon's operation log and persistent-memory copy).
"""

from __future__ import annotations

import os
from typing import Any

from .encodings import THRESHOLDS
from .patterns import glob_match

# (name, alias, type, default, immutable).  type: "bool", "str", ("enum", values),
# ("int", lo, hi), ("mem", lo, hi) (accepts 1k/1kb/1m/1mb/1g/1gb), ("mempct", lo, hi).
_PARAMS: list[tuple] = [
    ("rdbchecksum", None, "bool", "yes", True),
    ("daemonize", None, "bool", "no", True),
    ("io-threads-do-reads", None, "bool", "no", True),
    ("always-show-logo", None, "bool", "no", True),
    ("protected-mode", None, "bool", "yes", False),
    ("rdbcompression", None, "bool", "yes", False),
    ("rdb-del-sync-files", None, "bool", "no", False),
    ("activerehashing", None, "bool", "yes", False),
    ("stop-writes-on-bgsave-error", None, "bool", "yes", False),
    ("set-proc-title", None, "bool", "yes", True),
    ("dynamic-hz", None, "bool", "yes", False),
    ("lazyfree-lazy-eviction", None, "bool", "no", False),
    ("lazyfree-lazy-expire", None, "bool", "no", False),
    ("lazyfree-lazy-server-del", None, "bool", "no", False),
    ("lazyfree-lazy-user-del", None, "bool", "no", False),
    ("lazyfree-lazy-user-flush", None, "bool", "no", False),
    ("repl-disable-tcp-nodelay", None, "bool", "no", False),
    ("repl-diskless-sync", None, "bool", "yes", False),
    ("aof-rewrite-incremental-fsync", None, "bool", "yes", False),
    ("no-appendfsync-on-rewrite", None, "bool", "no", False),
    ("cluster-require-full-coverage", None, "bool", "yes", False),
    ("rdb-save-incremental-fsync", None, "bool", "yes", False),
    ("aof-load-truncated", None, "bool", "yes", False),
    ("aof-use-rdb-preamble", None, "bool", "yes", False),
    ("aof-timestamp-enabled", None, "bool", "no", False),
    ("cluster-replica-no-failover", "cluster-slave-no-failover", "bool", "no", False),
    ("replica-lazy-flush", "slave-lazy-flush", "bool", "no", False),
    ("replica-serve-stale-data", "slave-serve-stale-data", "bool", "yes", False),
    ("replica-read-only", "slave-read-only", "bool", "yes", False),
    ("replica-ignore-maxmemory", "slave-ignore-maxmemory", "bool", "yes", False),
    ("jemalloc-bg-thread", None, "bool", "yes", False),
    ("activedefrag", None, "bool", "no", False),
    ("syslog-enabled", None, "bool", "no", True),
    ("cluster-enabled", None, "bool", "no", True),
    ("appendonly", None, "bool", "no", False),
    ("cluster-allow-reads-when-down", None, "bool", "no", False),
    ("cluster-allow-pubsubshard-when-down", None, "bool", "yes", False),
    ("crash-log-enabled", None, "bool", "yes", False),
    ("crash-memcheck-enabled", None, "bool", "yes", False),
    ("use-exit-on-panic", None, "bool", "no", False),
    ("disable-thp", None, "bool", "yes", True),
    ("cluster-allow-replica-migration", None, "bool", "yes", False),
    ("replica-announced", None, "bool", "yes", False),
    ("latency-tracking", None, "bool", "yes", False),
    ("aof-disable-auto-gc", None, "bool", "no", False),
    ("replica-ignore-disk-write-errors", None, "bool", "no", False),
    ("aclfile", None, "str", "", True),
    ("unixsocket", None, "str", "", True),
    ("pidfile", None, "str", "", True),
    ("replica-announce-ip", "slave-announce-ip", "str", "", False),
    ("masteruser", None, "str", "", False),
    ("cluster-announce-ip", None, "str", "", False),
    ("cluster-config-file", None, "str", "nodes.conf", True),
    ("cluster-announce-hostname", None, "str", "", False),
    ("syslog-ident", None, "str", "redis", True),
    ("dbfilename", None, "str", "dump.rdb", False),
    ("appendfilename", None, "str", "appendonly.aof", True),
    ("appenddirname", None, "str", "appendonlydir", True),
    ("server_cpulist", None, "str", "", True),
    ("bio_cpulist", None, "str", "", True),
    ("aof_rewrite_cpulist", None, "str", "", True),
    ("bgsave_cpulist", None, "str", "", True),
    ("ignore-warnings", None, "str", "", False),
    ("proc-title-template", None, "str", "{title} {listen-addr} {server-mode}", False),
    ("bind-source-addr", None, "str", "", False),
    ("logfile", None, "str", "", True),
    ("masterauth", None, "str", "", False),
    ("requirepass", None, "str", "", False),
    ("supervised", None, ("enum", ("upstart", "systemd", "auto", "no")), "no", True),
    ("syslog-facility", None,
     ("enum", ("user", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
               "local7")), "local0", True),
    ("repl-diskless-load", None,
     ("enum", ("disabled", "on-empty-db", "swapdb")), "disabled", False),
    ("loglevel", None, ("enum", ("debug", "verbose", "notice", "warning")), "notice", False),
    ("maxmemory-policy", None,
     ("enum", ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru",
               "allkeys-lfu", "allkeys-random", "noeviction")), "noeviction", False),
    ("appendfsync", None, ("enum", ("everysec", "always", "no")), "everysec", False),
    ("oom-score-adj", None, ("enum", ("no", "yes", "relative", "absolute")), "no", False),
    ("acl-pubsub-default", None,
     ("enum", ("allchannels", "resetchannels")), "resetchannels", False),
    ("sanitize-dump-payload", None, ("enum", ("no", "yes", "clients")), "no", False),
    ("enable-protected-configs", None, ("enum", ("no", "yes", "local")), "no", True),
    ("enable-debug-command", None, ("enum", ("no", "yes", "local")), "no", True),
    ("enable-module-command", None, ("enum", ("no", "yes", "local")), "no", True),
    ("cluster-preferred-endpoint-type", None,
     ("enum", ("ip", "hostname", "unknown-endpoint")), "ip", False),
    ("propagation-error-behavior", None,
     ("enum", ("ignore", "panic", "panic-on-replicas")), "ignore", False),
    ("shutdown-on-sigint", None,
     ("enum", ("default", "save", "nosave", "now", "force")), "default", False),
    ("shutdown-on-sigterm", None,
     ("enum", ("default", "save", "nosave", "now", "force")), "default", False),
    ("databases", None, ("int", 1, 2147483647), 16, True),
    ("port", None, ("int", 0, 65535), 6379, False),
    ("io-threads", None, ("int", 1, 128), 1, True),
    ("auto-aof-rewrite-percentage", None, ("int", 0, 2147483647), 100, False),
    ("cluster-replica-validity-factor", "cluster-slave-validity-factor",
     ("int", 0, 2147483647), 10, False),
    ("list-max-listpack-size", "list-max-ziplist-size",
     ("int", -2147483648, 2147483647), -2, False),
    ("tcp-keepalive", None, ("int", 0, 2147483647), 300, False),
    ("cluster-migration-barrier", None, ("int", 0, 2147483647), 1, False),
    ("active-defrag-cycle-min", None, ("int", 1, 99), 1, False),
    ("active-defrag-cycle-max", None, ("int", 1, 99), 25, False),
    ("active-defrag-threshold-lower", None, ("int", 0, 1000), 10, False),
    ("active-defrag-threshold-upper", None, ("int", 0, 1000), 100, False),
    ("lfu-log-factor", None, ("int", 0, 2147483647), 10, False),
    ("lfu-decay-time", None, ("int", 0, 2147483647), 1, False),
    ("replica-priority", "slave-priority", ("int", 0, 2147483647), 100, False),
    ("repl-diskless-sync-delay", None, ("int", 0, 2147483647), 5, False),
    ("maxmemory-samples", None, ("int", 1, 2147483647), 5, False),
    ("maxmemory-eviction-tenacity", None, ("int", 0, 100), 10, False),
    ("timeout", None, ("int", 0, 2147483647), 0, False),
    ("replica-announce-port", "slave-announce-port", ("int", 0, 65535), 0, False),
    ("tcp-backlog", None, ("int", 0, 2147483647), 511, True),
    ("cluster-port", None, ("int", 0, 65535), 0, True),
    ("cluster-announce-bus-port", None, ("int", 0, 65535), 0, False),
    ("cluster-announce-port", None, ("int", 0, 65535), 0, False),
    ("cluster-announce-tls-port", None, ("int", 0, 65535), 0, False),
    ("repl-timeout", None, ("int", 1, 2147483647), 60, False),
    ("repl-ping-replica-period", "repl-ping-slave-period", ("int", 1, 2147483647), 10, False),
    ("list-compress-depth", None, ("int", 0, 2147483647), 0, False),
    ("rdb-key-save-delay", None, ("int", -2147483648, 2147483647), 0, False),
    ("key-load-delay", None, ("int", -2147483648, 2147483647), 0, False),
    ("active-expire-effort", None, ("int", 1, 10), 1, False),
    ("hz", None, ("int", 0, 2147483647), 10, False),
    ("min-replicas-to-write", "min-slaves-to-write", ("int", 0, 2147483647), 0, False),
    ("min-replicas-max-lag", "min-slaves-max-lag", ("int", 0, 2147483647), 10, False),
    ("watchdog-period", None, ("int", 0, 2147483647), 0, False),
    ("shutdown-timeout", None, ("int", 0, 2147483647), 10, False),
    ("repl-diskless-sync-max-replicas", None, ("int", 0, 2147483647), 0, False),
    ("maxclients", None, ("int", 1, 4294967295), 10000, False),
    ("unixsocketperm", None, ("int", 0, 0o777), 0, True),
    ("socket-mark-id", None, ("int", 0, 4294967295), 0, True),
    ("active-defrag-max-scan-fields", None, ("int", 1, 9223372036854775807), 1000, False),
    ("slowlog-max-len", None, ("int", 0, 9223372036854775807), 128, False),
    ("acllog-max-len", None, ("int", 0, 9223372036854775807), 128, False),
    ("busy-reply-threshold", "lua-time-limit", ("int", 0, 9223372036854775807), 5000, False),
    ("cluster-node-timeout", None, ("int", 0, 9223372036854775807), 15000, False),
    ("slowlog-log-slower-than", None, ("int", -1, 9223372036854775807), 10000, False),
    ("latency-monitor-threshold", None, ("int", 0, 9223372036854775807), 0, False),
    ("proto-max-bulk-len", None, ("mem", 1048576, 9223372036854775807), 536870912, False),
    ("stream-node-max-entries", None, ("int", 0, 9223372036854775807), 100, False),
    ("repl-backlog-size", None, ("mem", 1, 9223372036854775807), 1048576, False),
    ("maxmemory", None, ("mem", 0, 18446744073709551615), 0, False),
    ("cluster-link-sendbuf-limit", None, ("mem", 0, 18446744073709551615), 0, False),
    ("hash-max-listpack-entries", "hash-max-ziplist-entries",
     ("int", 0, 9223372036854775807), 512, False),
    ("set-max-intset-entries", None, ("int", 0, 9223372036854775807), 512, False),
    ("zset-max-listpack-entries", "zset-max-ziplist-entries",
     ("int", 0, 9223372036854775807), 128, False),
    ("active-defrag-ignore-bytes", None, ("mem", 1, 9223372036854775807), 104857600, False),
    ("hash-max-listpack-value", "hash-max-ziplist-value",
     ("mem", 0, 9223372036854775807), 64, False),
    ("stream-node-max-bytes", None, ("mem", 0, 9223372036854775807), 4096, False),
    ("zset-max-listpack-value", "zset-max-ziplist-value",
     ("mem", 0, 9223372036854775807), 64, False),
    ("hll-sparse-max-bytes", None, ("mem", 0, 9223372036854775807), 3000, False),
    ("tracking-table-max-keys", None, ("int", 0, 9223372036854775807), 1000000, False),
    ("client-query-buffer-limit", None, ("mem", 1048576, 9223372036854775807), 1073741824, False),
    ("maxmemory-clients", None, ("mempct", -100, 9223372036854775807), 0, False),
    ("repl-backlog-ttl", None, ("int", 0, 9223372036854775807), 3600, False),
    ("auto-aof-rewrite-min-size", None, ("mem", 0, 9223372036854775807), 67108864, False),
    ("loading-process-events-interval-bytes", None, ("int", 1024, 2147483647), 2097152, False),
    ("tls-port", None, ("int", 0, 65535), 0, False),
    ("tls-session-cache-size", None, ("int", 0, 2147483647), 20480, False),
    ("tls-session-cache-timeout", None, ("int", 0, 2147483647), 300, False),
    ("tls-cluster", None, "bool", "no", False),
    ("tls-replication", None, "bool", "no", False),
    ("tls-auth-clients", None, ("enum", ("no", "yes", "optional")), "yes", False),
    ("tls-prefer-server-ciphers", None, "bool", "no", False),
    ("tls-session-caching", None, "bool", "yes", False),
    ("tls-cert-file", None, "str", "", False),
    ("tls-key-file", None, "str", "", False),
    ("tls-key-file-pass", None, "str", "", False),
    ("tls-client-cert-file", None, "str", "", False),
    ("tls-client-key-file", None, "str", "", False),
    ("tls-client-key-file-pass", None, "str", "", False),
    ("tls-dh-params-file", None, "str", "", False),
    ("tls-ca-cert-file", None, "str", "", False),
    ("tls-ca-cert-dir", None, "str", "", False),
    ("tls-protocols", None, "str", "", False),
    ("tls-ciphers", None, "str", "", False),
    ("tls-ciphersuites", None, "str", "", False),]

# Parameters with a value that is not a single word, handled by the server itself.
_SPECIAL_DEFAULTS = {
    "save": "3600 1 300 100 60 10000",
    "client-output-buffer-limit":
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
    "oom-score-adj-values": "0 200 800",
    "notify-keyspace-events": "",
    "bind": "127.0.0.1",
    "dir": "",
    "replicaof": "",
    "latency-tracking-info-percentiles": "50 99 99.9",
}
_IMMUTABLE_SPECIAL = {"replicaof"}

# What the server acts on (everything else is kept and reported only).  ``port``, ``bind``
# and ``dir`` are fixed while running (the listening sockets and the open pool).
EFFECTIVE = frozenset({
    "port", "bind", "dir", "requirepass", "maxclients", "databases", "protected-mode",
    "proto-max-bulk-len", "client-query-buffer-limit", "client-output-buffer-limit", "hz",
    "hash-max-listpack-entries", "hash-max-listpack-value", "set-max-intset-entries",
    "zset-max-listpack-entries", "zset-max-listpack-value", "list-max-listpack-size",
    "list-compress-depth", "notify-keyspace-events", "stream-node-max-entries",
    "stream-node-max-bytes", "hll-sparse-max-bytes",
})
_FIXED_WHILE_RUNNING = {"port", "bind", "dir"}

# --commit-overlap yes: how many commits of a disk pool's log may be in flight at once
# (measured: docs/device.md, "Several commits in flight")
COMMITS_IN_FLIGHT = 4
# without --commit-overlap: one commit in flight on a disk pool (measured ahead of no
# overlap and of 4 at 10 and 25 % writes, level at 50 and 100 %: docs/device.md, "Reads
# sent before the commit, and one commit in flight by default"); a pool on PM or tmpfs
# never overlaps its commits (a commit there is a fence)
DEFAULT_COMMITS_IN_FLIGHT = 1


class ConfigError(ValueError):
    """A value CONFIG SET or redis.conf cannot take (the message is Redis's)."""


class _Param:
    __slots__ = ("name", "alias", "kind", "default", "immutable")

    def __init__(self, name: str, alias: str | None, kind: Any, default: Any,
                 immutable: bool) -> None:
        self.name, self.alias, self.kind = name, alias, kind
        self.default, self.immutable = default, immutable


PARAMS: dict[str, _Param] = {}  # by name and by alias
for _row in _PARAMS:
    _p = _Param(*_row)
    PARAMS[_p.name] = _p
    if _p.alias:
        PARAMS[_p.alias] = _p
for _n, _d in _SPECIAL_DEFAULTS.items():
    PARAMS[_n] = _Param(_n, "slaveof" if _n == "replicaof" else None, "special", _d,
                        _n in _IMMUTABLE_SPECIAL)
PARAMS["slaveof"] = PARAMS["replicaof"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3,
          "gb": 1024**3}


def parse_memory(text: str) -> int:
    """Redis's memtoull: a byte count with an optional unit (k, kb, m, mb, g, gb)."""
    t = text.strip().lower()
    i = len(t)
    while i and t[i - 1].isalpha():
        i -= 1
    num, unit = t[:i], t[i:]
    if unit not in _UNITS or not num or not num.isdigit():
        raise ValueError(text)
    return int(num) * _UNITS[unit]


def _check(p: _Param, value: str) -> Any:
    """The typed value of ``value`` for ``p``, or ConfigError with Redis's reason."""
    kind = p.kind
    if kind == "bool":
        v = value.lower()
        if v not in ("yes", "no"):
            raise ConfigError("argument must be 'yes' or 'no'")
        return v == "yes"
    if kind in ("str", "special"):
        return value
    if kind[0] == "enum":
        v = value.lower()
        if v not in kind[1]:
            raise ConfigError("argument(s) must be one of the following: " + ", ".join(kind[1]))
        return v
    lo, hi = kind[1], kind[2]
    try:
        if kind[0] == "int":
            n = int(value, 8) if p.name == "unixsocketperm" else int(value.strip())
            if value.strip() != value or not value.lstrip("-").isdigit():
                raise ValueError(value)
        elif kind[0] == "mempct" and value.endswith("%"):
            n = -int(value[:-1])
        else:
            n = parse_memory(value)
    except ValueError:
        raise ConfigError({"int": "argument couldn't be parsed into an integer",
                           "mem": "argument must be a memory value",
                           "mempct": "argument must be a memory or percent value"}[kind[0]]
                          ) from None
    if not lo <= n <= hi:
        raise ConfigError(f"argument must be between {lo} and {hi} inclusive")
    return n


def _show(p: _Param, v: Any) -> str:
    if p.kind == "bool":
        return "yes" if v else "no"
    if isinstance(v, int) and p.kind[0] == "mempct" and v < 0:
        return f"{-v}%"
    return str(v)


_ALL_CLASSES = "g$lshzxetd"  # what 'A' stands for (not m, key misses, nor n, new keys)


def canonical_keyspace_events(value: str) -> str:
    """notify-keyspace-events as Redis stores and shows it (classes in a fixed order, 'A'
    when all of A's are there, then K, E, m); ValueError for an unknown character."""
    flags = set()
    for ch in value:
        if ch == "A":
            flags.update(_ALL_CLASSES)
        elif ch in "g$lshzxetdKEmn":
            flags.add(ch)
        else:
            raise ValueError(ch)
    if set(_ALL_CLASSES) <= flags:
        out = "A"
    else:
        out = "".join(c for c in "g$lshzxetdn" if c in flags)
    return out + "".join(c for c in "KEm" if c in flags)


def default_dir() -> str:
    """The pool's directory when none is given: ``persimmon-redis`` in the user's data
    directory (``$XDG_DATA_HOME``, else ``~/.local/share``), on a disk, so the pool
    survives power loss (docs/device.md, "The decision run repeated").  Read when a Config
    is made, so the environment of the process decides.  ``/dev/shm/...`` (tmpfs: process
    crashes only, lost at a reboot) is an explicit ``--dir``."""
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # (unset, empty or relative: the spec says ignore it)
        home = os.path.expanduser("~")
        if not os.path.isabs(home):  # (no HOME and no password entry: Redis's "dir ./")
            return os.path.abspath("persimmon-redis")
        base = os.path.join(home, ".local", "share")
    return os.path.join(base, "persimmon-redis")


# Where the pool was when no directory was given, until 2026-12-07 (tmpfs)
FORMER_DEFAULT_DIR = "/dev/shm/persimmon-redis"
# The pool file's name in its directory (persistence.py names it too: its lines are the
# port's published count)
POOL_FILE = "persimmon-redis.pool"


def pool_dir_to_open(cfg: Config, former: str = FORMER_DEFAULT_DIR) -> tuple[str, bool]:
    """(the pool directory a server should open, whether it is the former default's): the
    configured one, except that a server given no directory (``cfg.dir_given`` False) whose
    default directory holds no pool keeps serving a pool left at the former default
    (``former``), so that an upgraded install does not start empty; the caller says so, and
    how to move it."""
    chosen = cfg.dir_abs()
    if not cfg.dir_given and not os.path.exists(os.path.join(chosen, POOL_FILE)) \
            and os.path.exists(os.path.join(former, POOL_FILE)):
        return former, True
    return chosen, False


class Config:
    """All settings.  The ones the server reads often are attributes; every value of the
    table is in ``values`` (typed), shown by CONFIG GET."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        for p in {id(p): p for p in PARAMS.values()}.values():
            self.values[p.name] = p.default if p.kind != "bool" else p.default == "yes"
        self.values["dir"] = default_dir()
        self.dir_given = False  # (set where --dir or a redis.conf's dir is read)
        # persimmon-redis's own settings (command line / redis.conf only)
        self.persistence = "persimmon"
        self.log_size = 64 << 20
        self.client_output_limit = 256 * 1024 * 1024
        self.device = "auto"
        self.shadow_priority = "idle"
        # (disk pools) commits in flight at once; 0: none
        self.commit_overlap = DEFAULT_COMMITS_IN_FLIGHT
        self.verify = False
        self.config_file: str | None = None
        self.bind = ["127.0.0.1"]
        self.requirepass: str | None = None
        self._sync()

    # the settings the server reads on its paths, kept as plain attributes
    def _sync(self) -> None:
        v = self.values
        self.port = int(v["port"])
        self.dir = v["dir"]
        self.maxclients = int(v["maxclients"])
        self.databases = int(v["databases"])
        self.proto_max_bulk_len = int(v["proto-max-bulk-len"])
        self.query_buffer_limit = int(v["client-query-buffer-limit"])
        self.hz = max(1, min(500, int(v["hz"])))
        self.protected_mode = bool(v["protected-mode"])
        self.hash_max_entries = int(v["hash-max-listpack-entries"])
        self.hash_max_value = int(v["hash-max-listpack-value"])
        self.set_max_intset = int(v["set-max-intset-entries"])
        self.zset_max_entries = int(v["zset-max-listpack-entries"])
        self.zset_max_value = int(v["zset-max-listpack-value"])
        self.list_max_size = int(v["list-max-listpack-size"])
        self.notify = v["notify-keyspace-events"]
        for k in THRESHOLDS:
            THRESHOLDS[k] = int(v[k])

    def __setattr__(self, name: str, value: Any) -> None:
        # the command line sets attributes: keep the table in step
        object.__setattr__(self, name, value)
        mirror = {"port": "port", "dir": "dir", "maxclients": "maxclients",
                  "databases": "databases", "proto_max_bulk_len": "proto-max-bulk-len",
                  "hz": "hz", "protected_mode": "protected-mode"}.get(name)
        if mirror is not None and "values" in self.__dict__:
            self.values[mirror] = value
        elif name == "requirepass" and "values" in self.__dict__:
            self.values["requirepass"] = value or ""
        elif name == "bind" and "values" in self.__dict__:
            self.values["bind"] = " ".join(value)

    def get(self, pattern: str) -> list[tuple[str, str]]:
        """CONFIG GET of one name or glob pattern: (name, value) pairs."""
        pattern = pattern.lower()
        if not any(ch in pattern for ch in "*?["):
            p = PARAMS.get(pattern)
            return [] if p is None else [(pattern, _show(p, self.values[p.name]))]
        pb = pattern.encode()
        return [(n, _show(p, self.values[p.name])) for n, p in PARAMS.items()
                if glob_match(pb, n.encode(), nocase=True)]

    def check(self, name: str, value: str, running: bool = True) -> tuple[_Param, Any]:
        """The parameter and typed value ``CONFIG SET name value`` would set, or
        ConfigError / KeyError (unknown name)."""
        p = PARAMS[name.lower()]
        if running and (p.immutable or p.name in _FIXED_WHILE_RUNNING):
            raise ConfigError("can't set immutable config")
        v = _check(p, value)
        if p.name == "notify-keyspace-events":
            try:
                v = canonical_keyspace_events(value)
            except ValueError:
                raise ConfigError("Invalid event class character. Use 'Ag$lshzxeKEtmd'."
                                  ) from None
        elif p.name == "save":
            parts = value.split()
            if len(parts) % 2 or not all(x.isdigit() for x in parts):
                raise ConfigError("Invalid save parameters")
        elif p.name == "client-output-buffer-limit":
            v = self._parse_cobl(value)
        elif p.name == "dir" and not running:
            v = value
        return p, v

    def _parse_cobl(self, value: str) -> str:
        parts = value.split()
        if len(parts) % 4:
            raise ConfigError("Wrong number of arguments in buffer limit configuration.")
        cur = dict(zip(("normal", "slave", "pubsub"),
                       [self.values["client-output-buffer-limit"].split()[i:i + 3]
                        for i in (1, 5, 9)], strict=True))
        for i in range(0, len(parts), 4):
            cls = parts[i].lower()
            cls = {"replica": "slave"}.get(cls, cls)
            if cls not in cur:
                raise ConfigError("Invalid client class specified in buffer limit "
                                  "configuration.")
            try:
                hard, soft = parse_memory(parts[i + 1]), parse_memory(parts[i + 2])
                secs = int(parts[i + 3])
            except ValueError:
                raise ConfigError("Error in hard, soft or soft_seconds setting in buffer "
                                  "limit configuration.") from None
            cur[cls] = [str(hard), str(soft), str(secs)]
        return " ".join(f"{k} {' '.join(v)}" for k, v in cur.items())

    def set_many(self, pairs: list[tuple[str, str]], running: bool = True) -> None:
        """CONFIG SET (all or nothing): KeyError(name) for an unknown name, ConfigError
        (name, reason) for a bad value."""
        checked = []
        seen = set()
        for name, _value in pairs:
            if name.lower() not in PARAMS:
                raise KeyError(name)
        for name, value in pairs:
            try:
                p, v = self.check(name, value, running)
            except ConfigError as e:
                raise ConfigError(name, str(e)) from None
            if p.name in seen:
                raise ConfigError(name, "duplicate parameter")
            seen.add(p.name)
            checked.append((p, v))
        for p, v in checked:
            self.values[p.name] = v
            if p.name == "requirepass":
                object.__setattr__(self, "requirepass", v or None)
            elif p.name == "bind":
                object.__setattr__(self, "bind", v.split())
            elif p.name == "client-output-buffer-limit":
                hard = int(v.split()[1])
                object.__setattr__(self, "client_output_limit",
                                   hard if hard else 256 * 1024 * 1024)
        self._sync()

    def dir_abs(self) -> str:
        return os.path.abspath(self.values["dir"])
