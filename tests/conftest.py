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


@pytest.fixture
def python_hashes():
    """The compiled module configured without the xxHash library's functions (as on a
    machine where they cannot be bound), restored afterwards."""
    from persimmon import heap, native

    fast = native.FAST
    if fast is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    from xxhash import xxh3_64_intdigest, xxh32_intdigest

    fast.configure(heap._SMALL_TABLE, heap._CLASS_SIZES, heap._LEAVES,
                   xxh3_64_intdigest, xxh32_intdigest, None)
    assert not fast.direct_hashes()
    yield
    assert native.configure(fast) is fast and fast.direct_hashes()
