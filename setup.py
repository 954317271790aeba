"""Build the optional C accelerator; all other metadata lives in pyproject.toml.

``tether.protocol._speedups`` speeds up the receive loop but is never required:
if it cannot be compiled (no compiler, no Python headers), the build prints a
warning and installs the pure-Python package, which
``tether.protocol.speedups`` falls back to at import time.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

_BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    """A build_ext whose failures are warnings: the extension is optional."""

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:  # e.g. no compiler found at all
            _warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:  # e.g. missing Python.h
            _warn(exc)


def _warn(exc: BaseException) -> None:
    print(
        f"WARNING: the C speedups could not be built ({exc}); "
        "tether will use its pure-Python implementation.",
        file=sys.stderr,
    )


setup(
    ext_modules=[
        Extension(
            "tether.protocol._speedups",
            sources=[os.path.join("src", "tether", "protocol", "_speedups.c")],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
