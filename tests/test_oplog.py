"""The operation log: round trips, wrap-around, back-pressure, corruption, crashes, and two
processes sharing it."""

from __future__ import annotations

import multiprocessing
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persimmon.device import open_device
from persimmon.errors import CorruptPoolError, LogFullError
from persimmon.oplog import _HDR, _POS_MASK, OpLog
from persimmon.simdevice import SimDevice

BASE = 128


def fresh(size=4096 + 192, dev_size=16384):
    dev = SimDevice(dev_size)
    OpLog.format(dev, BASE, size)
    return dev, OpLog(dev, BASE, size)


def test_round_trip_and_group_commit():
    dev, lg = fresh()
    assert lg.head == lg.tail == 0 and lg.capacity == 4096
    p1 = lg.append(b"one")
    p2 = lg.append(b"two" * 10)
    assert lg.head == 0 and lg.pending == p2 and lg.read(0) is None
    fences = dev.fences
    assert lg.commit() == p2
    assert dev.fences == fences + 2  # one fence for the entries, one persist of the head
    assert lg.read(0) == (b"one", p1) and lg.read(p1) == (b"two" * 10, p2)
    assert list(lg.entries(0)) == [(p1, b"one"), (p2, b"two" * 10)]
    assert lg.commit() == p2 and dev.fences == fences + 2  # nothing new: nothing persisted
    lg.set_tail(p1)
    again = OpLog(SimDevice.from_image(dev.persisted_image()), BASE, 4096 + 192)
    assert again.head == p2 and again.tail == p1 and again.read(p1)[0] == b"two" * 10


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 900), min_size=1, max_size=120), st.randoms())
def test_wrap_around_many_laps(sizes, rnd):
    dev, lg = fresh()
    sent: list[bytes] = []
    got: list[bytes] = []
    pos = 0

    def consume() -> None:
        nonlocal pos
        r = lg.read(pos)
        if r is None:
            lg.commit()
            r = lg.read(pos)
        got.append(r[0])
        pos = r[1]
        lg.set_tail(pos)

    for n in sizes:
        payload = bytes([n % 251]) * n
        lg.append(payload, wait=consume)
        sent.append(payload)
        if rnd.random() < 0.5:
            lg.commit()
    lg.commit()
    while (r := lg.read(pos)) is not None:
        got.append(r[0])
        pos = r[1]
    assert got == sent


def test_a_reader_that_saw_a_lone_padding_marker_sees_the_entry_after_it():
    # A reader keeps the last head it loaded and reloads it only when it is used up; the
    # producer can publish a wrap-around padding marker alone (it commits while it waits for
    # room for the entry after it): the reader reads it as a None entry that ends at the
    # head, moves past it, and finds the entry after it once committed.
    dev, producer = fresh()
    consumer = OpLog(dev, BASE, 4096 + 192)
    while producer._res < 4096 - 128:
        producer.append(b"x" * 48)  # 64-byte entries
    pos = 0
    waits = []

    def wait() -> None:
        nonlocal pos
        producer.commit()  # the entries and the lone padding marker
        while (r := consumer.read(pos)) is not None:
            pos = r[1]
            if r[0] is None:
                assert pos == 4096  # (the padding: the next lap starts)
        waits.append(pos)
        consumer.set_tail(pos)

    producer.append(b"y" * 1000, wait=wait)
    assert waits == [4096] and consumer.read(pos) is None
    producer.commit()
    assert consumer.read(pos) == (b"y" * 1000, 4096 + 1024)
    assert list(consumer.entries(4096 - 128)) == [(4096 + 1024, b"y" * 1000)]  # (no None)


@pytest.mark.parametrize("offset", [1024, 2048 + 512])
def test_an_entry_bigger_than_the_offset_it_wraps_at_is_not_stuck_behind_its_padding(offset):
    # The entry after a padding marker goes at the start of the log, over the space the
    # marker's own header is in when it is bigger than the offset the marker is at: that
    # space is free only once a consumer has moved past the marker.  A consumer that could
    # not move past a marker at the head left the producer waiting forever (a 40 KiB value
    # at offset 28 KiB of a 64 KiB log hung a PSM's invoke_rw).
    dev, producer = fresh()
    consumer = OpLog(dev, BASE, 4096 + 192)
    pos = 0

    def drain() -> None:
        nonlocal pos
        producer.commit()
        while (r := consumer.read(pos)) is not None:
            pos = r[1]
        consumer.set_tail(pos)

    while producer._res < offset:
        producer.append(b"x" * 48)
    drain()
    big = b"b" * max(4096 - offset + 256, offset + 256)  # bigger than the room left and
    assert producer._res % 4096 < len(big) < 4096 - 64  # than the offset it wraps at
    calls = []
    producer.append(big, wait=lambda: (calls.append(1), drain(), len(calls) < 50))
    assert 0 < len(calls) < 50 and pos == 4096
    producer.commit()
    assert consumer.read(pos) == (big, 4096 + ((16 + len(big) + 63) & ~63))


def test_full_log_raises_or_waits():
    dev, lg = fresh()
    for _ in range(64):
        lg.append(b"x" * 48)  # 64 bytes each: exactly the capacity
    with pytest.raises(LogFullError, match="full"):
        lg.append(b"y" * 48)
    lg.commit()
    freed = {"n": 0}

    def wait():
        lg.set_tail(lg.tail + 64)
        freed["n"] += 1

    lg.append(b"z" * 48, wait=wait)
    assert lg.full_waits == 1 and freed["n"] >= 1 and lg.full_wait_seconds >= 0
    with pytest.raises(LogFullError, match="does not fit"):
        lg.append(b"q" * 5000, wait=wait)


@pytest.mark.parametrize("hashes", ["library", "python"])
def test_the_compiled_reader_reads_what_the_python_reader_reads(monkeypatch, request, hashes):
    # oplog._fast_read (the compiled OpLog.read of an entry that passes its checks) against
    # the Python reader, entry by entry over several laps with padding markers; a damaged
    # entry it declines, and the Python reader then reports it.  It checks the checksum with
    # the xxHash library's function, or the Python one when that cannot be bound.
    from persimmon import oplog

    fast = oplog._fast_read
    if fast is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    if hashes == "python":
        request.getfixturevalue("python_hashes")
    rnd = random.Random(3)
    dev, lg = fresh()
    pos = 0
    seen = pads = 0
    for i in range(400):
        if i % 100 == 50:  # entries of several epochs (tagged positions): begin_epoch
            lg.begin_epoch()
        lg.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 700))),
                  wait=lambda: lg.set_tail(lg.head))
        lg.commit()
        while pos < lg.head:
            got = fast(dev.buf, lg._data, lg.capacity, pos)
            monkeypatch.setattr(oplog, "_fast_read", None)
            want = lg.read(pos)
            monkeypatch.setattr(oplog, "_fast_read", fast)
            if got is None:  # only a padding marker makes it decline here
                pads += 1
            else:
                assert got == want
                seen += 1
            pos = want[1]
    assert seen + pads == 400 and pads > 20  # (each pad hides the entry after it)
    a = lg._data + pos % lg.capacity  # damage the next entry three ways
    lg.append(b"x" * 40)
    lg.commit()
    assert fast(dev.buf, lg._data, lg.capacity, pos) == lg.read(pos)
    for off, what in ((30, "checksum"), (8, "damaged"), (1, "damaged")):
        dev.buf[a + off] ^= 0x40
        assert fast(dev.buf, lg._data, lg.capacity, pos) is None
        with pytest.raises(CorruptPoolError, match=what):
            lg.read(pos)
        dev.buf[a + off] ^= 0x40
    assert lg.read(pos) == (b"x" * 40, lg.head)
    with pytest.raises(TypeError):
        fast(dev.buf, lg._data, lg.capacity)


@pytest.mark.parametrize("hashes", ["library", "python"])
def test_a_group_written_in_place_is_the_bytes_of_its_appended_encoding(request, hashes):
    # OpLog.append_group (the compiled log_put_group writes the entry straight into the
    # log) against append(encode_group(...)) on a second log, lap after lap with padding
    # markers: the two devices hold the same bytes after every step.  Without the xxHash
    # library's function bound, append_group falls back to the appended encoding.
    from persimmon import oplog
    from persimmon.opcodec import encode_group

    if oplog._put_group is None:
        pytest.skip("the fast path is not built (PERSIMMON_PURE_PYTHON is set)")
    if hashes == "python":
        request.getfixturevalue("python_hashes")
    rnd = random.Random(5)
    (dev_a, a), (dev_b, b) = fresh(), fresh()
    for i in range(300):
        if i % 100 == 0:  # (the entries' positions carry the epoch: begin_epoch)
            assert a.begin_epoch() == b.begin_epoch() == i // 100 + 1
        group = [bytes([rnd.randrange(256)]) * rnd.randrange(0, 90)
                 for _ in range(rnd.randrange(2, 12))]
        body = encode_group(group)
        pa = a.append_group(group, len(body), wait=lambda: a.set_tail(a.head))
        pb = b.append(body, wait=lambda: b.set_tail(b.head))
        assert pa == pb
        a.commit()
        b.commit()
        assert bytes(dev_a.buf) == bytes(dev_b.buf)
    pos = a.tail
    got = []
    while (r := a.read(pos)) is not None:
        got.append(r[0])
        pos = r[1]
    assert got and got[-1] == body
    put = oplog._put_group
    at = a._data + a._res % a.capacity
    with pytest.raises(ValueError, match="length or place"):
        put(dev_a.buf, at, a._res, [b"ab", b"c"], 5 + 8 + 2)  # one byte short
    with pytest.raises(ValueError, match="length or place"):
        put(dev_a.buf, len(dev_a.buf) - 20, 0, [b"ab", b"c"], 16)  # past the buffer
    with pytest.raises(TypeError, match="not bytes"):
        put(dev_a.buf, at, a._res, [b"ab", "c"], 16)
    with pytest.raises(TypeError):
        put(dev_a.buf, at, a._res, (b"ab",), 14)
    assert bytes(dev_a.buf) == bytes(dev_b.buf)  # the refused calls wrote nothing


def test_corruption_is_detected():
    dev, lg = fresh()
    lg.append(b"payload-1")
    lg.append(b"payload-2")
    lg.commit()
    dev.buf[BASE + 192 + 20] ^= 0xFF
    with pytest.raises(CorruptPoolError, match="checksum"):
        lg.read(0)
    dev.buf[BASE] ^= 1
    with pytest.raises(CorruptPoolError):
        OpLog(dev, BASE, 4096 + 192)
    blank = SimDevice(16384)
    with pytest.raises(CorruptPoolError, match="formatted"):
        OpLog(blank, BASE, 4096 + 192)


def test_crash_at_every_fence_keeps_a_prefix_with_all_committed():
    dev = SimDevice(16384)
    OpLog.format(dev, BASE, 2048 + 192)
    lg = OpLog(dev, BASE, 2048 + 192)
    rng = random.Random(5)
    sent: list[bytes] = []
    committed = {"n": 0}
    consumed = {"pos": 0}

    def check(d: SimDevice) -> None:
        for s in range(5):
            img = OpLog(SimDevice.from_image(d.crash_image(d.fences * 7 + s)), BASE, 2048 + 192)
            got = [p for _, p in img.entries(img.tail)]
            n_before = consumed_count(img.tail)
            assert got == sent[n_before : n_before + len(got)]
            assert n_before + len(got) >= committed["n"]

    positions: list[int] = []

    def consumed_count(tail: int) -> int:
        return sum(1 for p in positions if p <= tail)

    dev.on_fence = check
    for i in range(200):
        payload = bytes([i % 256]) * rng.randrange(0, 300)
        sent.append(payload)

        def wait():
            r = lg.read(consumed["pos"])
            if r is None:
                lg.commit()
                committed["n"] = len(sent) - 1
                r = lg.read(consumed["pos"])
            consumed["pos"] = r[1]
            lg.set_tail(consumed["pos"])

        positions.append(lg.append(payload, wait=wait))
        if rng.random() < 0.4:
            lg.commit()
            committed["n"] = len(sent)
    dev.on_fence = None
    assert dev.fences > 150


def _consumer(path: str, base: int, size: int, count: int, q) -> None:
    dev = open_device(path)
    lg = OpLog(dev, base, size)
    pos = lg.tail
    out = []
    while len(out) < count:
        if not lg.wait_for_entries(pos, timeout=10):
            break
        payload, pos = lg.read(pos)
        if payload is not None:  # (None: a padding marker the producer committed alone)
            out.append(payload)
        lg.set_tail(pos)
    q.put(out)
    dev.close()


def test_two_processes_share_the_log(shm_path):
    dev = open_device(shm_path, size=64 << 10, create=True)
    OpLog.format(dev, 4096, 8192)
    lg = OpLog(dev, 4096, 8192)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_consumer, args=(shm_path, 4096, 8192, 500, q))
    p.start()
    sent = [b"op-%d-" % i + b"x" * (i % 200) for i in range(500)]
    for s in sent:
        lg.append(s, wait=lambda: (lg.commit(), lg.wait_for_space(64, 0.01)))
        lg.commit()
    got = q.get(timeout=30)
    p.join(10)
    assert got == sent and lg.tail == lg.head
    dev.close()


def test_a_log_of_version_1_is_read_and_tagged_from_its_first_epoch():
    # a pool made before epochs: header version 1, every entry's position word the bare
    # position, the epoch word beside the head zero (format zeroed the header lines)
    import struct

    from xxhash import xxh3_64_intdigest

    dev, lg = fresh()
    ends = [lg.append(b"old-%d" % i) for i in range(5)]
    lg.commit()
    _HDR.pack_into(dev.buf, BASE, b"PSMOPLOG", 1, 0, lg.capacity)
    struct.pack_into("<Q", dev.buf, BASE + 24, xxh3_64_intdigest(dev.buf[BASE : BASE + 24]))
    assert all(int.from_bytes(dev.buf[lg._data + p + 8 : lg._data + p + 16], "little") == p
               for p in [0, *ends[:-1]])  # (untagged positions)
    header = bytes(dev.buf[BASE : BASE + 64])
    old = OpLog(dev, BASE, 4096 + 192)
    assert old.epoch == 0 and [p for _e, p in old.entries(0)] == [b"old-%d" % i
                                                                  for i in range(5)]
    assert old.begin_epoch() == 1
    assert bytes(dev.buf[BASE : BASE + 64]) == header  # (the header line is never rewritten)
    end = old.append(b"new")
    old.commit()
    again = OpLog(SimDevice.from_image(dev.persisted_image()), BASE, 4096 + 192)
    assert again.epoch == 1
    assert [p for _e, p in again.entries(0)] == [b"old-%d" % i for i in range(5)] + [b"new"]
    at = again._data + ends[-1] + 8  # (the new entry's position word carries epoch 1)
    assert int.from_bytes(dev.buf[at : at + 8], "little") == ends[-1] | 1 << 48
    assert end == again.head


def test_a_crash_while_an_epoch_begins_leaves_the_old_epoch_or_the_new():
    # begin_epoch is one aligned 8-byte store and its persist: every image a crash can
    # leave, at every fence, opens, with the old epoch or the new one
    from crashsim import FenceProbe

    images = []
    dev = FenceProbe(16384)
    dev.check = lambda d, when: images.extend(d.crash_image(seed) for seed in range(4))
    OpLog.format(dev, BASE, 4096 + 192)
    lg = OpLog(dev, BASE, 4096 + 192)
    lg.append(b"x")
    lg.commit()
    images.clear()
    assert lg.begin_epoch() == 1
    assert images
    seen = set()
    for img in images:
        got = OpLog(SimDevice.from_image(img), BASE, 4096 + 192)
        assert got.epoch in (0, 1) and [p for _e, p in got.entries(0)] == [b"x"]
        seen.add(got.epoch)
    assert seen == {0, 1}  # (a crash before the persist loses the new epoch: no harm)
    assert OpLog(SimDevice.from_image(dev.persisted_image()), BASE, 4096 + 192).epoch == 1


def test_positions_used_up_is_a_clear_error_before_anything_is_published():
    dev, lg = fresh()
    start = _POS_MASK + 1 - 256  # (a pool that has logged almost 2**48 bytes)
    for off in (64, 128):  # head, tail
        dev.buf[BASE + off : BASE + off + 8] = start.to_bytes(8, "little")
    lg = OpLog(dev, BASE, 4096 + 192)
    lg.begin_epoch()
    lg.append(b"a" * 100)
    assert lg.commit() == start + 128
    lg.append(b"b" * 200)  # (ends past 2**48)
    with pytest.raises(LogFullError, match="positions are used up"):
        lg.commit()
    assert lg.head == start + 128 and [p for _e, p in lg.entries(start)] == [b"a" * 100]
