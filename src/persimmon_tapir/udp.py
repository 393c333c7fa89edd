"""The real transport: asyncio UDP on loopback, with fragmentation for large messages.

Why UDP: IR needs no ordered or reliable channel (it retransmits and tolerates loss,
duplication and reordering by design), as TAPIR's own UDP transport shows.  Messages larger
than one datagram (a view change's record, a START-VIEW) are cut into fragments and put back
together by the receiver; a lost fragment loses the message, which the protocol retries.
Datagram layout: ``b"M" + message`` or ``b"F" + (msg id, index, count) + a slice``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable

__all__ = ["UdpEndpoint", "open_endpoint", "open_endpoint_nowait", "MAX_DATAGRAM"]

MAX_DATAGRAM = 60000
_FRAG = struct.Struct(">QII")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, ep: UdpEndpoint) -> None:
        self.ep = ep

    def datagram_received(self, data: bytes, addr) -> None:
        self.ep._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        pass


class UdpEndpoint:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.DatagramTransport | None = None
        self.receiver: Callable[[tuple, bytes], None] = lambda src, data: None
        self.addr: tuple = ("", 0)
        self._msg_id = 0
        self._parts: dict = {}

    def send(self, dst: tuple, data: bytes) -> None:
        t = self.transport
        if t is None:
            return
        if len(data) < MAX_DATAGRAM:
            t.sendto(b"M" + data, dst)
            return
        self._msg_id += 1
        chunks = [data[i:i + MAX_DATAGRAM] for i in range(0, len(data), MAX_DATAGRAM)]
        for i, chunk in enumerate(chunks):
            t.sendto(b"F" + _FRAG.pack(self._msg_id, i, len(chunks)) + chunk, dst)

    def _datagram(self, data: bytes, src) -> None:
        kind = data[:1]
        if kind == b"M":
            self.receiver(src, data[1:])
        elif kind == b"F" and len(data) > 1 + _FRAG.size:
            mid, i, count = _FRAG.unpack_from(data, 1)
            if count > 1 << 16 or i >= count:
                self.receiver(src, data)  # nonsense: the receiver rejects and counts it
                return
            key = (src, mid)
            entry = self._parts.get(key)
            if entry is None:
                if len(self._parts) > 256:  # forget the oldest incomplete messages
                    for k in sorted(self._parts, key=lambda k: self._parts[k][0])[:128]:
                        del self._parts[k]
                entry = self._parts[key] = [time.monotonic(), count, {}]
            entry[2][i] = data[1 + _FRAG.size:]
            if len(entry[2]) == entry[1]:
                del self._parts[key]
                self.receiver(src, b"".join(entry[2][j] for j in range(entry[1])))
        else:
            self.receiver(src, data)

    def call_later(self, delay: float, cb: Callable[[], None]):
        return self.loop.call_later(delay, cb)

    def call_soon(self, cb: Callable[[], None]):
        return self.loop.call_soon(cb)

    def now(self) -> float:
        return self.loop.time()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def open_endpoint(loop: asyncio.AbstractEventLoop, local: tuple) -> UdpEndpoint:
    """An endpoint bound to ``local`` ((host, 0): any free port), big socket buffers."""
    sock = _socket(local)
    ep = UdpEndpoint(loop)
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(ep), sock=sock)
    ep.transport = transport
    ep.addr = sock.getsockname()
    return ep


def open_endpoint_nowait(loop: asyncio.AbstractEventLoop, local: tuple) -> UdpEndpoint:
    """The same from inside the running loop: it sends once the loop has set it up (a send
    before that is lost, which the protocol's retransmissions absorb)."""
    sock = _socket(local)
    ep = UdpEndpoint(loop)
    ep.addr = sock.getsockname()

    async def setup():
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(ep), sock=sock)
        ep.transport = transport
    loop.create_task(setup())
    return ep


def _socket(local: tuple) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # *BUFFORCE as root
        for o in (force, opt):
            try:
                sock.setsockopt(socket.SOL_SOCKET, o, 32 << 20)
                break
            except OSError:
                continue
    try:
        sock.bind(local)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
