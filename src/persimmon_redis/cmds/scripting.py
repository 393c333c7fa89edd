"""EVAL, EVALSHA, FCALL (and _RO), SCRIPT, FUNCTION: registered by ``busy`` (the server's
side of scripting) and ``scripting`` (the logged script operations)."""

from __future__ import annotations

from .. import busy, scripting  # noqa: F401  (they register the commands)
