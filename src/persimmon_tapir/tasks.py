"""A minimal future and coroutine trampoline shared by the real and the simulated transports.

The protocol code is written with ``async``/``await`` on :class:`Future`; :func:`spawn` steps a
coroutine each time the future it waits on completes.  No event loop is needed: whatever calls
``Future.set_result`` (a message handler, a timer) runs the next step, so the same code runs on
asyncio's loop (real UDP) and on the simulator's virtual clock, deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Future", "spawn", "CancelledError"]


class CancelledError(Exception):
    pass


class Future:
    __slots__ = ("done", "_value", "_exc", "_callbacks")

    def __init__(self) -> None:
        self.done = False
        self._value: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[Future], None]] = []

    def set_result(self, value: Any) -> None:
        if self.done:
            return
        self.done, self._value = True, value
        self._run()

    def set_exception(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done, self._exc = True, exc
        self._run()

    def result(self) -> Any:
        if not self.done:
            raise RuntimeError("future not done")
        if self._exc is not None:
            raise self._exc
        return self._value

    def add_done_callback(self, cb: Callable[[Future], None]) -> None:
        if self.done:
            cb(self)
        else:
            self._callbacks.append(cb)

    def _run(self) -> None:
        cbs, self._callbacks = self._callbacks, []
        for cb in cbs:
            cb(self)

    def __await__(self):
        if not self.done:
            yield self
        return self.result()


def spawn(coro: Coroutine[Any, Any, Any]) -> Future:
    """Run ``coro`` until its first await; the returned future completes with its result."""
    out = Future()

    def step(prev: Future | None) -> None:
        try:
            if prev is not None and prev._exc is not None:
                fut = coro.throw(prev._exc)
            else:
                fut = coro.send(None)
        except StopIteration as e:
            out.set_result(e.value)
            return
        except BaseException as e:  # noqa: BLE001 - handed to whoever awaits the task
            out.set_exception(e)
            return
        if not isinstance(fut, Future):
            out.set_exception(TypeError(f"awaited {type(fut).__name__}, not a Future"))
            return
        fut.add_done_callback(step)

    step(None)
    return out
