"""Build steps pyproject.toml cannot express; all metadata lives there.

* The optional C accelerator. ``tether.protocol._speedups`` speeds up the
  receive loop but is never required: if it cannot be compiled (no compiler,
  no Python headers), the build prints a warning and installs the pure-Python
  package, which ``tether.protocol.speedups`` falls back to at import time.
* The browser files the demo serves, copied into ``src/tether/demo/vendor``
  (package data, gitignored) with their licences before the sdist or the wheel
  is built: socket.io-client's bundle (the chat), the official Socket.IO Admin
  UI's built files and its icon font. Each comes from ``node_modules`` when it
  holds the version pinned in ``package-lock.json``, else from the npm
  registry with ``npm pack``, checked against the lock's integrity hash. An
  sdist carries the copies, so a wheel built from it needs no npm. If neither
  works the build warns and goes on; the demo then says what is missing.
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
#: Where the browser files go (package data; tether.demo reads them from there).
VENDOR_ROOT = ROOT / "src" / "tether" / "demo" / "vendor"


class Vendored:
    """One npm package the demo serves: what to copy from it, and where.

    ``files`` maps a path in the package (a file, or a directory copied
    without its source maps) to a path under ``VENDOR_ROOT / directory``.
    """

    def __init__(self, name: str, directory: str, files: dict[str, str]) -> None:
        self.name = name
        self.directory = VENDOR_ROOT / directory
        self.files = files


VENDORED = (
    # The ES module the chat page imports and the classic script of the README's page.
    Vendored(
        "socket.io-client",
        "socket.io-client",
        {
            "dist/socket.io.esm.min.js": "socket.io.esm.min.js",
            "dist/socket.io.min.js": "socket.io.min.js",
            "LICENSE": "LICENSE",
        },
    ),
    # The official Admin UI (tether.demo.admin), its built files without source maps.
    Vendored("@socket.io/admin-ui", "admin-ui", {"ui/dist": "dist", "LICENSE": "LICENSE"}),
    # Its icons, instead of the CDN its index names; browsers take woff2, else woff.
    Vendored(
        "@mdi/font",
        "mdi-font",
        {
            "css/materialdesignicons.min.css": "css/materialdesignicons.min.css",
            "fonts/materialdesignicons-webfont.woff2": "fonts/materialdesignicons-webfont.woff2",
            "fonts/materialdesignicons-webfont.woff": "fonts/materialdesignicons-webfont.woff",
            "LICENSE": "LICENSE",
        },
    ),
)


def _locked(name: str) -> tuple[str, str] | None:
    """A package's version and integrity in package-lock.json (absent in an sdist)."""
    lock = ROOT / "package-lock.json"
    if not lock.is_file():
        return None
    entry = json.loads(lock.read_text())["packages"][f"node_modules/{name}"]
    return str(entry["version"]), str(entry["integrity"])


def _npm_pack(name: str, version: str, integrity: str, into: Path) -> Path:
    """Fetch ``name@version`` from the npm registry; its unpacked root."""
    npm = shutil.which("npm")
    if npm is None:
        raise OSError("npm is not installed")
    subprocess.run(
        [npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", str(into)],
        check=True,
        cwd=into,
        stdout=subprocess.DEVNULL,
    )
    (tarball,) = into.glob("*.tgz")
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


def _copy(source: Path, target: Path) -> None:
    """A file, or a directory without its source maps."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.map"))
    else:
        shutil.copyfile(source, target)


def vendor(package: Vendored) -> None:
    """Copy the pinned files of ``package`` into its vendor directory."""
    locked = _locked(package.name)
    stamp = package.directory / "VERSION"
    if locked is None or (stamp.is_file() and stamp.read_text().strip() == locked[0]):
        return  # an sdist's copy, or already done
    version, integrity = locked
    installed = ROOT / "node_modules" / package.name
    with tempfile.TemporaryDirectory() as scratch:
        try:
            found = json.loads((installed / "package.json").read_text())
            source = installed if found["version"] == version else None
        except (OSError, ValueError, KeyError):
            source = None
        try:
            source = source or _npm_pack(package.name, version, integrity, Path(scratch))
            for name, target in package.files.items():
                _copy(source / name, package.directory / target)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            print(
                f"WARNING: {package.name} {version} is not in node_modules and could "
                f"not be fetched from npm ({exc}); the demo of this build will say "
                "what is missing.",
                file=sys.stderr,
            )
            return
    stamp.write_text(version + "\n")


def vendor_all() -> None:
    for package in VENDORED:
        vendor(package)


class BuildPyWithBundle(build_py):
    """build_py that vendors the browser bundle first (wheels, editable installs)."""

    def run(self) -> None:
        vendor_all()
        super().run()


class SdistWithBundle(sdist):
    """sdist that vendors the browser bundle first, so the sdist carries it."""

    def run(self) -> None:
        vendor_all()
        super().run()


setup(
    ext_modules=[
        Extension(
            "tether.protocol._speedups",
            sources=[
                os.path.join("src", "tether", "protocol", "_speedups.c"),
                os.path.join("src", "tether", "protocol", "_http_head.c"),
                os.path.join("src", "tether", "protocol", "_handshake.c"),
            ],
            depends=[
                os.path.join("src", "tether", "protocol", "_mask.h"),
                os.path.join("src", "tether", "protocol", "_http_head.h"),
                os.path.join("src", "tether", "protocol", "_handshake.h"),
            ],
            optional=True,
        ),
        Extension(
            "tether._sendnow",
            sources=[os.path.join("src", "tether", "_sendnow.c")],
            depends=[os.path.join("src", "tether", "_capi.h")],
            optional=True,
        ),
        Extension(
            "tether._hotpath",
            sources=[
                os.path.join("src", "tether", "_hotpath.c"),
                os.path.join("src", "tether", "_hotpath_send.c"),
            ],
            depends=[
                os.path.join("src", "tether", "_hotpath.h"),
                os.path.join("src", "tether", "_capi.h"),
                os.path.join("src", "tether", "protocol", "_mask.h"),
            ],
            optional=True,
        ),
    ],
    cmdclass={
        "build_ext": OptionalBuildExt,
        "build_py": BuildPyWithBundle,
        "sdist": SdistWithBundle,
    },
)
