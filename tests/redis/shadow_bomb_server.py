"""persimmon-redis whose shadow fails at every ``SET shadow-bomb ...`` it replays (as one
hitting a bug in the port would), while the foreground applies it: for
test_shadow_failure.py.  Arguments: the fuse file (the bomb is armed while it exists),
then persimmon-redis's own."""

from __future__ import annotations

import os
import sys

from persimmon_redis import state
from persimmon_redis.__main__ import main

FUSE = sys.argv[1]
FOREGROUND = os.getpid()
_apply = state.RedisState.apply


def apply(self, op):
    argv = op[2]
    if (len(argv) > 1 and argv[1] == b"shadow-bomb" and os.getpid() != FOREGROUND
            and os.path.exists(FUSE)):
        raise SystemExit("the bomb went off in the shadow")
    return _apply(self, op)


state.RedisState.apply = apply
sys.exit(main(sys.argv[2:]))
