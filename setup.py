"""Build of the optional compiled fast path (everything else is in pyproject.toml).

The extension is optional: without a C compiler the install still succeeds and the heap
uses its pure-Python store path (docs/heap.md, "The compiled fast path").
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
        )
    ]
)
