"""The compiled loops of a disk pool's write-back (``persimmon._writeback``) and their
pure-Python twins in :mod:`persimmon.filedevice` give the same results (the twins run
whenever the compiled module is missing or ``PERSIMMON_PURE_PYTHON`` is set)."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from persimmon import filedevice as F
from persimmon.native import writeback_module

compiled = writeback_module()
needs_compiled = pytest.mark.skipif(
    compiled is None, reason="the compiled module is not built (PERSIMMON_PURE_PYTHON?)")

SIZE = 1 << 14
range_lists = st.lists(
    st.tuples(st.integers(0, SIZE - 1), st.integers(0, 700)).map(
        lambda r: (r[0], min(r[1], SIZE - r[0]))),
    max_size=40)
pool_bytes = st.integers(0, 2**32).map(lambda seed: random.Random(seed).randbytes(SIZE))


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(range_lists, st.sampled_from([0, 64, 100, 512, 4096]))
@example([(0, 64), (576, 64)], 512)  # (exactly the gap apart: two writes)
@example([(0, 64), (575, 64)], 512)
def test_merge_is_the_python_merge(ranges, gap):
    assert compiled.merge(list(ranges), gap, 64) == F.merge_ranges_python(list(ranges), gap)


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(range_lists, pool_bytes, st.sampled_from([0, 40]))
def test_journal_image_is_the_python_image(ranges, data, head):
    assert compiled.journal_image(data, ranges, head) == \
        F.journal_image_python(data, ranges, head)


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(range_lists, pool_bytes)
def test_pwrite_ranges_writes_what_the_python_loop_writes(tmp_path_factory, ranges, data):
    d = tmp_path_factory.mktemp("wb")
    files = []
    for name, write in (("c", compiled.pwrite_ranges), ("py", F.pwrite_ranges_python)):
        fd = os.open(d / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, SIZE)
            write(fd, memoryview(bytearray(data)), ranges)
            files.append(os.pread(fd, SIZE, 0))
        finally:
            os.close(fd)
    assert files[0] == files[1]
    expect = bytearray(SIZE)
    for off, n in ranges:
        expect[off : off + n] = data[off : off + n]
    assert files[0] == bytes(expect)


@pytest.mark.parametrize("twin", ["compiled", "python"])
def test_bad_ranges_and_a_bad_descriptor_are_clear_errors(twin, tmp_path):
    if twin == "compiled" and compiled is None:
        pytest.skip("the compiled module is not built (PERSIMMON_PURE_PYTHON?)")
    image = compiled.journal_image if twin == "compiled" else F.journal_image_python
    write = compiled.pwrite_ranges if twin == "compiled" else F.pwrite_ranges_python
    buf = bytes(100)
    with pytest.raises(ValueError, match="outside the buffer"):
        image(buf, [(90, 20)], 0)
    with pytest.raises(ValueError, match="outside the buffer"):
        write(0, buf, [(-1, 5)])
    with pytest.raises(OSError):
        write(987_654, buf, [(0, 10)])  # (no such descriptor)
    fd = os.open(tmp_path / "f", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError):
            write(fd, buf, [(0, 10)])  # (not open for writing)
    finally:
        os.close(fd)


def test_the_device_uses_the_compiled_loops_when_built():
    if compiled is None:
        assert F.pwrite_ranges is F.pwrite_ranges_python
        assert F.merge_ranges is F.merge_ranges_python
    else:
        assert F.pwrite_ranges is compiled.pwrite_ranges
        assert F.journal_image is compiled.journal_image
        assert F.merge_ranges([(70, 1), (0, 3)]) == [(0, 128)]
