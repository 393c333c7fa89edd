"""The command handlers, one module per data type or command family.

Importing this package imports every module in it (in name order), and each module
registers its handlers in ``registry.COMMANDS`` with the ``@command`` decorator, so a new
module only has to be dropped here.
"""

from __future__ import annotations

import importlib
import pkgutil


def _load_all() -> None:
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{m.name}")


_load_all()
