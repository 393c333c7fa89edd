"""``persimmon-redis``: the Redis-compatible server made persistent by Persimmon.

    persimmon-redis [--port 6379] [--bind 127.0.0.1] [--dir ~/.local/share/persimmon-redis]
                    [--persistence persimmon|none] [--requirepass PW] [--maxclients N]
                    [--databases 16] [--log-size BYTES] [--shadow-priority idle]
                    [--commit-overlap no|yes|N]
    persimmon-redis path/to/redis.conf [--port ...]
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import (
    COMMITS_IN_FLIGHT,
    DEFAULT_COMMITS_IN_FLIGHT,
    EFFECTIVE,
    PARAMS,
    Config,
    ConfigError,
)
from .server import run_server


def _size(text: str) -> int:
    """A size in bytes: digits with an optional suffix (kb, mb, gb: powers of 1024; k, m,
    g: of 1000; b); ValueError for anything else, or for less than one byte."""
    t = text.strip().lower()
    mult = 1
    for suffix, m in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("g", 10**9),
                      ("m", 10**6), ("k", 10**3), ("b", 1)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    if not t.isdigit() or int(t) < 1:
        raise ValueError(text)
    return int(t) * mult


def _size_arg(text: str) -> int:
    try:
        return _size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: a positive number of bytes, optionally followed by "
            "kb, mb or gb (or k, m, g: powers of 1000)") from None


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices`` (a persimmon-* directive's value), else
    ValueError (reported as a bad value for the directive)."""
    if value not in choices:
        raise ValueError(value)
    return value


def commit_overlap(value: str) -> int:
    """``--commit-overlap``'s value as the number of commits that may be in flight: no ->
    0 (each batch's commit on the event loop), yes -> COMMITS_IN_FLIGHT, or N (1-64)."""
    if value in ("yes", "no"):
        return COMMITS_IN_FLIGHT if value == "yes" else 0
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise ValueError(value)
    return int(value)


def read_conf(path: str, cfg: Config) -> None:
    """Apply the settings of a redis.conf file: every Redis 7.0 parameter is understood
    (see config.py for the ones persimmon-redis acts on), plus persimmon's own
    ``persimmon-*`` directives; unknown directives are warned about."""
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            key, args = parts[0].lower(), [a.strip('"') for a in parts[1:]]
            try:
                if key == "bind":
                    cfg.bind = [a for a in args if not a.startswith("-")]
                elif key == "requirepass":
                    cfg.requirepass = args[0] or None
                elif key == "dir":
                    cfg.dir = args[0]
                    cfg.dir_given = True
                elif key in ("persimmon-persistence", "persistence"):
                    cfg.persistence = args[0]
                elif key in ("persimmon-log-size",):
                    cfg.log_size = _size(args[0])
                elif key == "persimmon-shadow-priority":
                    cfg.shadow_priority = _one_of(args[0], ("idle", "normal"))
                elif key == "persimmon-commit-overlap":
                    cfg.commit_overlap = commit_overlap(args[0])
                elif key in PARAMS:
                    cfg.set_many([(key, " ".join(args))], running=False)
                    if PARAMS[key].name not in EFFECTIVE:
                        print(f"persimmon-redis: {path}:{lineno}: '{key}' has no effect in "
                              "persimmon-redis (kept for CONFIG GET)", file=sys.stderr)
                else:
                    print(f"persimmon-redis: {path}:{lineno}: ignoring unsupported directive "
                          f"'{key}'", file=sys.stderr)
            except ConfigError as e:
                raise SystemExit(f"persimmon-redis: {path}:{lineno}: bad value for '{key}': "
                                 f"{e.args[-1]}") from None
            except (IndexError, ValueError):
                raise SystemExit(f"persimmon-redis: {path}:{lineno}: bad value for '{key}'"
                                 ) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="persimmon-redis", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", help="a redis.conf file")
    ap.add_argument("--port", type=int)
    ap.add_argument("--bind", nargs="+")
    ap.add_argument("--dir", help="pool directory (default $XDG_DATA_HOME/persimmon-redis, "
                    "else ~/.local/share/persimmon-redis: on a disk, survives power loss; "
                    "a tmpfs such as /dev/shm is faster and lost at a reboot)")
    ap.add_argument("--persistence", choices=["persimmon", "none"])
    ap.add_argument("--requirepass")
    ap.add_argument("--maxclients", type=int)
    ap.add_argument("--protected-mode", choices=["yes", "no"],
                    help="yes (default): refuse clients from addresses other than 127.0.0.1 "
                    "and ::1 while no password is set, as Redis does")
    ap.add_argument("--databases", type=int)
    ap.add_argument("--log-size", type=_size_arg, help="operation log size, e.g. 64mb")
    ap.add_argument("--device", choices=["auto", "libpmem", "msync"])
    ap.add_argument("--shadow-priority", choices=["idle", "normal"],
                    help="idle (default): the shadow runs on CPU time nothing else wants "
                    "until it is half a log behind; normal: always at normal priority")
    def overlap_arg(value: str) -> int:
        try:
            return commit_overlap(value)
        except ValueError:
            raise argparse.ArgumentTypeError("no, yes or a number of commits (1-64)") from None

    ap.add_argument("--commit-overlap", type=overlap_arg, metavar="no|yes|N",
                    help="disk pools only: no: each batch's synced log write runs on the "
                    "event loop; yes, or N: in another thread while the loop reads and "
                    "executes the next requests (their replies wait for it), up to N "
                    f"commits at once (yes: {COMMITS_IN_FLIGHT}; default: "
                    f"{DEFAULT_COMMITS_IN_FLIGHT}). See docs/device.md")
    ap.add_argument("--verify", action="store_true",
                    help="divergence detection (slow; for testing a port)")
    args = ap.parse_args(argv)
    cfg = Config()
    if args.config:
        read_conf(args.config, cfg)
        cfg.config_file = os.path.abspath(args.config)
    for name in ("port", "maxclients", "databases"):
        # (checked as redis.conf and CONFIG SET check them: Redis's ranges and messages)
        v = getattr(args, name)
        if v is not None:
            try:
                cfg.set_many([(name, str(v))], running=False)
            except ConfigError as e:
                ap.error(f"argument --{name}: {e.args[-1]}")
    for name in ("bind", "dir", "persistence", "requirepass", "log_size", "device",
                 "shadow_priority"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, name, v)
    if args.dir is not None:
        cfg.dir_given = True
    if args.commit_overlap is not None:
        cfg.commit_overlap = args.commit_overlap
    for name in ("protected_mode",):  # (yes/no options: booleans)
        v = getattr(args, name)
        if v is not None:
            setattr(cfg, name, v == "yes")
    cfg.verify = args.verify
    return run_server(cfg)


if __name__ == "__main__":
    sys.exit(main())
