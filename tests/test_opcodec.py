"""The packed form of an operation (tag T): the compiled ``pack_op``/``unpack_op`` against
the pure-Python ``pack``/``unpack``, what falls back to pickle, and damaged payloads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persimmon import opcodec
from persimmon.errors import CorruptPoolError
from persimmon.heap import FAST

I64 = 1 << 63
leaves = st.one_of(st.binary(max_size=600), st.integers(-I64, I64 - 1), st.none())
values = st.recursive(leaves, lambda inner: st.tuples(inner, inner) | st.lists(
    inner, max_size=6).map(tuple), max_leaves=30)


def _same(a, b) -> bool:
    """Equal, with the same exact types all the way down (True stays apart from 1)."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _unpackers():
    yield "python", lambda p: opcodec._unpack_at(memoryview(p), 1, 0)[0]
    if FAST is not None:
        yield "compiled", FAST.unpack_op


@settings(max_examples=300, deadline=None)
@given(values)
def test_both_packers_write_the_same_bytes_and_both_readers_give_the_operation_back(v):
    p = opcodec.pack(v)
    assert p is not None and p[0] == opcodec.TAG_PACKED
    if FAST is not None:
        assert FAST.pack_op(v) == p
    for _name, read in _unpackers():
        assert _same(read(p), v)
    if type(v) is not bytes:  # (a bytes operation keeps its own B form)
        op, rd, sd = opcodec.decode(opcodec.encode(v))
        assert _same(op, v) and rd is None and sd is None
        assert (opcodec.encode(v) == p) == (FAST is not None)


def test_the_short_and_long_forms_of_bytes_and_the_ends_of_the_int_range():
    for v, form in [(b"x" * 255, b"s\xff"), (b"x" * 256, b"b\x00\x01\x00\x00"), (b"", b"s\x00")]:
        assert opcodec.pack(v) == b"T" + form + v
    assert opcodec.pack(-I64) == b"Ti" + (-I64).to_bytes(8, "little", signed=True)
    assert opcodec.pack(I64 - 1) == b"Ti" + (I64 - 1).to_bytes(8, "little", signed=True)
    assert opcodec.pack((None, ())) == b"Tt\x02\x00\x00\x00Nt\x00\x00\x00\x00"


class T(tuple):
    pass


class B(bytes):
    pass


class Int(int):
    pass


def _deep(n: int):
    v: object = b"leaf"
    for _ in range(n):
        v = (v,)
    return v


@pytest.mark.parametrize("v", [True, (b"k", False), "text", (b"k", 1.5), [b"a"], T((b"a",)),
                               (B(b"a"),), (Int(3),), 1 << 63, -(1 << 63) - 1,
                               (b"k", 1 << 70), _deep(17), {b"a": 1}, (b"ok", (b"x", "no"))])
def test_anything_else_is_pickled_and_comes_back_as_it_was(v):
    assert opcodec.pack(v) is None
    if FAST is not None:
        assert FAST.pack_op(v) is None
    p = opcodec.encode(v)
    assert p[0] == opcodec.TAG_PICKLE
    op = opcodec.decode(p)[0]
    assert op == v and type(op) is type(v)
    if isinstance(v, tuple) and v:
        assert [type(x) for x in op] == [type(x) for x in v]


def test_nesting_up_to_sixteen_tuples_packs():
    v = _deep(16)
    p = opcodec.pack(v)
    assert p is not None and opcodec.unpack(p) == v
    if FAST is not None:
        assert FAST.pack_op(v) == p


def _damaged(good: bytes):
    for cut in range(len(good)):  # every truncation
        yield good[:cut]
    yield good + b"\x00"  # trailing bytes
    yield good + b"N"
    yield b"P" + good[1:]  # not a T payload
    yield b"T" + b"b\x05\x00\x00\x00hello"  # the long form of a short string
    yield b"Tt\xff\xff\xff\xffN"  # a count the bytes cannot hold
    yield b"Tx"  # an unknown value tag
    yield b"T" + b"t\x01\x00\x00\x00" * 17 + b"N"  # deeper than packing goes


def test_a_damaged_payload_raises_corrupt_pool_error_from_both_readers(monkeypatch):
    op = (0, 1764680000000, (b"SET", b"key", b"v" * 300, None))
    good = opcodec.pack(op)
    assert good is not None
    readers = [None] + ([FAST.unpack_op] if FAST is not None else [])
    for reader in readers:
        monkeypatch.setattr(opcodec, "_unpack", reader)
        for bad in _damaged(good):
            with pytest.raises(CorruptPoolError, match="packed operation"):
                opcodec.unpack(bad)
            if bad[:1] == b"T":
                with pytest.raises(CorruptPoolError):
                    opcodec.decode(bad)
        assert opcodec.unpack(good) == op
