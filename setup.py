"""Build of the optional compiled fast path (everything else is in pyproject.toml).

The extensions are optional: without a C compiler the install still succeeds, the heap
uses its pure-Python store path (docs/heap.md, "The compiled fast path") and a disk pool's
overlapped commits a Python thread (docs/device.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "persimmon._speedups",
            ["src/persimmon/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
        ),
        # a disk pool's group commit, written by a thread that never takes the GIL
        # (without it, the server's overlapped commits use a Python thread)
        Extension(
            "persimmon._commitio",
            ["src/persimmon/_commitio.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers"],
        ),
    ]
)
