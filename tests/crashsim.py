"""Test helper: a simulated device that checks crash images around every fence."""

from __future__ import annotations

from persimmon.simdevice import SimDevice


class FenceProbe(SimDevice):
    """A SimDevice that calls ``check(device, "before"|"after")`` around every fence, so a
    test can build and verify the PM images a power failure at that point could leave."""

    check = None

    def drain(self) -> None:
        if self.check is not None:
            self.check(self, "before")
        super().drain()
        if self.check is not None:
            self.check(self, "after")
