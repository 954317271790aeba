"""The built distributions and the installed wheel, as a user gets them.

``python -m build`` makes the sdist and, from it, the wheel; the wheel goes
into a clean venv in a temporary directory (no checkout on the path, no
``node_modules``), and these tests run tether from there.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tarfile
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from helpers import timeout
from packaging_helpers import built, installed_env, installed_python, outside
from tether.version import __version__

pytestmark = pytest.mark.packaging

BUNDLE = "tether/demo/vendor/socket.io-client/"
SHOWN = re.compile(rb"tether demos on (http://127\.0\.0\.1:\d+)/")


def run_installed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed_python()), *args],
        cwd=outside(),
        env=installed_env(),
        capture_output=True,
        text=True,
        timeout=timeout(30),
        check=False,
    )


def test_wheel_holds_the_licences_metadata_and_package_data() -> None:
    _, wheel = built()
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"tether-{__version__}.dist-info/"
        metadata = Parser().parsestr(archive.read(info + "METADATA").decode())
        bundle_licence = archive.read(BUNDLE + "LICENSE").decode()
    assert metadata["License-Expression"] == "MIT"
    assert info + "licenses/LICENSE" in names
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Framework :: AsyncIO" in classifiers
    assert {"Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.13"} <= (
        set(classifiers)
    )
    assert {"redis", "uvloop"} <= set(metadata.get_all("Provides-Extra"))
    # The chat's browser client with its own licence (MIT, socket.io's authors).
    for name in ("socket.io.esm.min.js", "socket.io.min.js", "LICENSE", "VERSION"):
        assert BUNDLE + name in names
    assert "MIT License" in bundle_licence
    for name in ("py.typed", "demo/static/chat/chat.js", "demo/static/favicon.ico"):
        assert "tether/" + name in names
    # The Admin UI's built files (no source maps) and icon font, each with its licence.
    vendor = "tether/demo/vendor/"
    for name in (
        "admin-ui/dist/index.html",
        "admin-ui/LICENSE",
        "mdi-font/css/materialdesignicons.min.css",
        "mdi-font/fonts/materialdesignicons-webfont.woff2",
        "mdi-font/LICENSE",
    ):
        assert vendor + name in names
    assert any(n.startswith(vendor + "admin-ui/dist/js/") for n in names)
    assert not [n for n in names if n.startswith(vendor) and n.endswith(".map")]


def test_sdist_carries_the_bundle_so_a_wheel_needs_no_npm() -> None:
    sdist, _ = built()
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "setup.py"} <= names
    assert "src/" + BUNDLE + "socket.io.esm.min.js" in names
    assert "src/tether/demo/vendor/admin-ui/dist/index.html" in names


def test_installed_wheel_imports_from_the_venv_and_reports_speedups() -> None:
    imports = "import tether, tether.realtime, tether.demo; print(tether.__file__)"
    result = run_installed("-c", imports)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed_python().parent.parent)
    version = run_installed("-m", "tether", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"tether {__version__}: C speedups ")
    # The test run requires the speedups unless it forces pure Python, and the
    # wheel was built on the same machine: it must say which, truthfully.
    forced = installed_env().get("TETHER_NO_SPEEDUPS", "") not in ("", "0")
    expected = "off (TETHER_NO_SPEEDUPS is set)" if forced else "active"
    assert f"C speedups {expected}" in version.stdout


async def fetch(url: str) -> tuple[int, str, bytes]:
    """GET ``url``: status, content type, body."""

    def get() -> tuple[int, str, bytes]:
        with urllib.request.urlopen(url, timeout=timeout(5)) as response:
            return response.status, response.headers["Content-Type"], response.read()

    return await asyncio.to_thread(get)


async def test_installed_demo_serves_its_pages_and_the_browser_client() -> None:
    process = await asyncio.create_subprocess_exec(
        str(installed_python()),
        "-m",
        "tether",
        "demo",
        "--port",
        "0",
        cwd=outside(),
        env=installed_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stderr.readline(), timeout(15))
        shown = SHOWN.search(line)
        assert shown is not None, line
        base = shown.group(1).decode()
        status, kind, body = await fetch(f"{base}/vendor/socket.io.esm.min.js")
        assert status == 200 and kind.startswith("text/javascript")
        assert body.startswith(b"/*!\n * Socket.IO v4.")
        status, _, body = await fetch(f"{base}/vendor/LICENSE")
        assert status == 200 and b"MIT License" in body
        status, kind, body = await fetch(f"{base}/favicon.ico")
        assert status == 200 and body.startswith(b"\0\0\1\0")  # an ICO header
        for page in ("/", "/chat/", "/ticker/", "/game/"):
            status, _, body = await fetch(base + page)
            assert status == 200 and b"<!doctype html>" in body, page
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout(10))
    assert process.returncode == 0
    assert b"missing" not in err and b"Traceback" not in err, err
