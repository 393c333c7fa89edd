"""The cluster configuration (``cluster.json``) and the key-to-shard mapping."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

__all__ = ["ClusterConfig", "ConfigError", "shard_of"]


class ConfigError(ValueError):
    """A missing or malformed cluster.json."""


def shard_of(key: bytes, shards: int) -> int:
    return zlib.crc32(key) % shards


@dataclass(frozen=True)
class ClusterConfig:
    cluster_id: int
    f: int
    shards: tuple  # shards[i] = tuple of (host, port) per replica
    persistence: str = "persimmon"

    @property
    def n(self) -> int:
        return 2 * self.f + 1

    def ident(self, shard: int, replica: int) -> tuple:
        return (self.cluster_id, shard, replica, self.n, len(self.shards))

    def to_json(self) -> str:
        return json.dumps({"cluster_id": self.cluster_id, "f": self.f,
                           "persistence": self.persistence,
                           "shards": [[list(a) for a in s] for s in self.shards]}, indent=1)

    @classmethod
    def load(cls, path: str) -> ClusterConfig:
        try:
            with open(path) as fh:
                raw = json.load(fh)
        except OSError as e:
            raise ConfigError(f"cannot read the cluster config {path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not JSON: {e}") from None
        try:
            f = int(raw["f"])
            shards = tuple(tuple((str(h), int(p)) for h, p in s) for s in raw["shards"])
            cfg = cls(int(raw["cluster_id"]), f, shards, str(raw.get("persistence", "persimmon")))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path} is not a persimmon-tapir cluster config ({e!r})") from None
        if f < 0 or not shards or any(len(s) != cfg.n for s in shards):
            raise ConfigError(f"{path}: every shard needs 2f+1 = {cfg.n} replicas")
        return cfg
