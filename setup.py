"""Build of the optional compiled fast path (everything else is in pyproject.toml).

The extensions are optional: without a C compiler the install still succeeds, the heap
uses its pure-Python store path (docs/heap.md, "The compiled fast path") and a disk pool's
overlapped commits a Python thread (docs/device.md).
"""

from setuptools import Extension, setup


def optional_extension(name: str, package: str = "persimmon") -> Extension:
    """``<package>.<name>`` from ``src/<package>/<name>.c``, skipped if it cannot be built."""
    return Extension(
        f"{package}.{name}",
        [f"src/{package}/{name}.c"],
        optional=True,
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                            "-Wno-missing-field-initializers"],
    )


setup(
    ext_modules=[
        optional_extension("_speedups"),
        # a disk pool's group commit, written by a thread that never takes the GIL
        # (without it, the server's overlapped commits use a Python thread)
        optional_extension("_commitio"),
        # the per-range loops of a disk pool's write-back (without it, their Python twins)
        optional_extension("_writeback"),
        # persimmon-redis reads whole plain requests without hiredis's per-command calls
        # (without it, every chunk is read the general way)
        optional_extension("_resp", "persimmon_redis"),
    ]
)
