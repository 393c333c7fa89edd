"""TAPIR (Zhang et al., SOSP 2015) on Persimmon: IR replicas whose state is a persistent
state machine, TAPIR-KV transactions on top.  See docs/tapir.md."""

from .client import Client, Transaction, TransactionError
from .config import ClusterConfig, ConfigError

__all__ = ["Client", "Transaction", "TransactionError", "ClusterConfig", "ConfigError"]
