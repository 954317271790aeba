"""tether as a user gets it: the sdist and wheel built by ``python -m build``,
the wheel installed in a clean virtual environment outside the checkout.

Shared by ``tests/test_packaging.py`` (smoke tests) and
``tests/browser/test_installed.py`` (the installed demo in Chromium). Each is
built once per pytest run (``functools.cache``) and removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import repo_root, timeout

__all__ = ["built", "installed_env", "installed_python", "outside"]

_KEEP = os.environ.get("TETHER_KEEP_BUILD") == "1"  # to look at them after a failure


def _scratch(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if not _KEEP:
        atexit.register(shutil.rmtree, path, True)
    return path


def _run(*args: str | Path, cwd: Path | None = None) -> None:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout(300),
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stderr[-4000:]}")


@functools.cache
def built() -> tuple[Path, Path]:
    """``python -m build`` of the checkout: the sdist, then the wheel built
    from that sdist (so a file missing from the sdist is caught too)."""
    out = _scratch("tether-dist-")
    # --no-isolation: the backend [build-system] names is in the test extra, and
    # build checks it is there; an isolated build would fetch it from PyPI twice.
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, repo_root())
    (sdist,) = out.glob("tether-*.tar.gz")
    (wheel,) = out.glob("tether-*.whl")
    return sdist, wheel


@functools.cache
def installed_python() -> Path:
    """The interpreter of a fresh venv, outside the checkout, holding only the wheel."""
    _, wheel = built()
    venv = _scratch("tether-venv-")
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # This venv's pip installs into the new one; --no-index: tether needs nothing else.
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", wheel)
    return python


@functools.cache
def outside() -> Path:
    """A working directory away from the checkout (no ``src/``, no ``node_modules``)."""
    return _scratch("tether-cwd-")


def installed_env() -> dict[str, str]:
    """The environment to run the installed tether in: nothing pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("TETHER_SOCKETIO_CLIENT_DIST", None)
    return env
