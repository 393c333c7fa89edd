"""Shared fixtures: unique pool paths under /dev/shm (removed afterwards)."""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture
def shm_path():
    """A fresh pool path under /dev/shm (falls back to the temp dir), removed afterwards."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    import tempfile

    d = base or tempfile.gettempdir()
    path = os.path.join(d, f"persimmon-test-{uuid.uuid4().hex}.pool")
    yield path
    for p in (path,):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
