"""Exceptions raised by Persimmon.

Every error a user can provoke (a wrong file, a damaged pool, a value that cannot be
persisted, a pool already in use) is one of these, with a message that says what is wrong
and what to do.  Nothing here is raised for a bug in Persimmon itself.
"""

from __future__ import annotations


class PersimmonError(Exception):
    """Base class of every error Persimmon raises on purpose."""


class PoolError(PersimmonError):
    """A pool file cannot be used."""


class NotAPoolError(PoolError):
    """The file exists but is not a Persimmon pool (wrong magic)."""


class LayoutVersionError(PoolError):
    """The pool was written by an incompatible layout version."""


class CorruptPoolError(PoolError):
    """The pool is truncated or a checksum does not match."""


class PoolInUseError(PoolError):
    """Another process holds the pool open."""


class PoolExistsError(PoolError):
    """A pool is being created where one already exists."""


class PoolFullError(PoolError):
    """The pool cannot grow (disk or tmpfs full, or a configured maximum reached)."""


class LogFullError(PersimmonError):
    """An operation is larger than the whole operation log."""


class UnpersistableError(TypeError, PersimmonError):
    """A value cannot be stored in persistent memory (an open file, a lambda, ...).

    It is a TypeError, so code that expects Python's own error for such values keeps working.
    The message names the type and the attribute path at which it was stored
    (``type_name`` and ``path`` hold them too).
    """

    def __init__(self, type_name: str, path: str = "", reason: str = "") -> None:
        self.type_name = type_name
        self.path = path
        self.reason = reason
        where = f" at {path}" if path else ""
        why = f": {reason}" if reason else ""
        super().__init__(f"cannot persist a value of type {type_name}{where}{why}")

    def prefixed(self, prefix: str) -> UnpersistableError:
        """The same error with ``prefix`` put before its path (used while unwinding)."""
        return UnpersistableError(self.type_name, prefix + self.path, self.reason)


class DivergenceError(PersimmonError):
    """The DRAM copy and the PM copy of a state machine disagree."""


class ShadowError(PersimmonError):
    """The shadow process failed in a way that cannot be repaired by restarting it."""
