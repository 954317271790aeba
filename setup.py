"""Build steps pyproject.toml cannot express; all metadata lives there.

* The optional C accelerator. ``tether.protocol._speedups`` speeds up the
  receive loop but is never required: if it cannot be compiled (no compiler,
  no Python headers), the build prints a warning and installs the pure-Python
  package, which ``tether.protocol.speedups`` falls back to at import time.
* The browser bundle of socket.io-client that the chat demo loads, copied into
  ``src/tether/demo/vendor/socket.io-client`` (package data, gitignored) with
  its licence before the sdist or the wheel is built: from ``node_modules``
  when it holds the version pinned in ``package-lock.json``, else fetched from
  the npm registry with ``npm pack``. An sdist carries the copy, so a wheel
  built from it needs no npm. If neither works the build warns and goes on;
  the chat page then says what is missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
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


ROOT = Path(__file__).resolve().parent
#: Where the bundle goes (tether.demo.app.VENDORED reads it from the package).
VENDOR = ROOT / "src" / "tether" / "demo" / "vendor" / "socket.io-client"
#: The ES module the chat page imports and the classic script of the README's page.
BUNDLE_FILES = ("dist/socket.io.esm.min.js", "dist/socket.io.min.js", "LICENSE")


def _locked() -> tuple[str, str] | None:
    """socket.io-client's version and integrity in package-lock.json (absent in an sdist)."""
    lock = ROOT / "package-lock.json"
    if not lock.is_file():
        return None
    entry = json.loads(lock.read_text())["packages"]["node_modules/socket.io-client"]
    return str(entry["version"]), str(entry["integrity"])


def _npm_pack(version: str, integrity: str, into: Path) -> Path:
    """Fetch ``socket.io-client@version`` from the npm registry; its unpacked root."""
    npm = shutil.which("npm")
    if npm is None:
        raise OSError("npm is not installed")
    spec = f"socket.io-client@{version}"
    subprocess.run(
        [npm, "pack", spec, "--silent", "--pack-destination", str(into)],
        check=True,
        cwd=into,
        stdout=subprocess.DEVNULL,
    )
    (tarball,) = into.glob("socket.io-client-*.tgz")
    # The tarball npm ci would have installed: the lock's Subresource Integrity hash.
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise ValueError(f"{tarball.name} does not match package-lock.json's {algorithm}")
    with tarfile.open(tarball) as archive:
        # npm tarballs hold "package/..."; the "data" filter refuses paths that
        # leave the directory (Python >= 3.10.12 and 3.11.4 have it).
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, filter="data")
        else:
            archive.extractall(into)
    return into / "package"


def vendor_socketio_client() -> None:
    """Copy the pinned socket.io-client bundle and licence into :data:`VENDOR`."""
    locked = _locked()
    stamp = VENDOR / "VERSION"
    if locked is None or (stamp.is_file() and stamp.read_text().strip() == locked[0]):
        return  # an sdist's copy, or already done
    version, integrity = locked
    installed = ROOT / "node_modules" / "socket.io-client"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            package = json.loads((installed / "package.json").read_text())
            source = installed if package["version"] == version else None
        except (OSError, ValueError, KeyError):
            source = None
        try:
            source = source or _npm_pack(version, integrity, Path(scratch))
            VENDOR.mkdir(parents=True, exist_ok=True)
            for name in BUNDLE_FILES:
                shutil.copyfile(source / name, VENDOR / Path(name).name)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            print(
                f"WARNING: socket.io-client {version} is not in node_modules and could "
                f"not be fetched from npm ({exc}); the chat demo of this build will "
                "say that its browser client is missing.",
                file=sys.stderr,
            )
            return
    stamp.write_text(version + "\n")


class BuildPyWithBundle(build_py):
    """build_py that vendors the browser bundle first (wheels, editable installs)."""

    def run(self) -> None:
        vendor_socketio_client()
        super().run()


class SdistWithBundle(sdist):
    """sdist that vendors the browser bundle first, so the sdist carries it."""

    def run(self) -> None:
        vendor_socketio_client()
        super().run()


setup(
    ext_modules=[
        Extension(
            "tether.protocol._speedups",
            sources=[os.path.join("src", "tether", "protocol", "_speedups.c")],
            optional=True,
        )
    ],
    cmdclass={
        "build_ext": OptionalBuildExt,
        "build_py": BuildPyWithBundle,
        "sdist": SdistWithBundle,
    },
)
