"""The shape docs/architecture.md describes, held: small modules, no import
circles, no reaching into another module's private names, imports that only
go down, and sans-I/O layers without asyncio.

The figures come from scripts/structure.py (the same measure the architecture
document quotes). A failure here names the module and what it did; if a new
exception is truly needed, say why next to its entry.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from helpers import repo_root

MAX_LINES = 600

# Modules allowed over MAX_LINES, each with the size it may not grow past.
LARGE: dict[str, int] = {}

# Circles that exist only through ``if TYPE_CHECKING:`` imports: annotations
# naming each other, no import at run time. Allowed as they are, not more.
# The one left is the server's public object graph: ``socket.namespace`` is a
# Namespace, ``namespace.server`` a Server, which is itself the main Namespace
# (and makes the connections). Typing those attributes with Protocols would
# narrow what handlers see of ``socket.server``, so the circle stays.
TYPE_ONLY_CIRCLES = [
    [
        "tether.realtime.server.connection",
        "tether.realtime.server.namespace",
        "tether.realtime.server.server",
        "tether.realtime.server.sockets",
    ],
]

# Imports that cross to a lower-numbered layer's neighbour on purpose.
SIDEWAYS = {
    # An exception that carries the rejected response names its plain type.
    ("tether.exceptions", "tether.protocol.http_types"),
    ("tether.exceptions", "tether.protocol.events"),
    # `python -m tether --version` says whether the C speedups are in use.
    ("tether.version", "tether.protocol.speedups"),
}


def load_structure() -> ModuleType:
    path = repo_root() / "scripts" / "structure.py"
    spec = importlib.util.spec_from_file_location("structure", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["structure"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def structure() -> ModuleType:
    return load_structure()


def layer(name: str) -> int:
    """0: shared; 1: the sans-I/O core; 2: asyncio; 3: realtime; 4: CLI, demos and
    the blocking clients (tether.sync wraps both the asyncio and realtime clients)."""
    parts = name.split(".")
    if name in ("tether", "tether.__main__", "tether.cli") or parts[:2] in (
        ["tether", "demo"],
        ["tether", "sync"],
    ):
        return 4
    # tether.metrics.realtime observes the realtime server: the rest of
    # tether.metrics is counted in by the asyncio layer.
    if parts[:2] == ["tether", "realtime"] or name == "tether.metrics.realtime":
        return 3
    if parts[:2] == ["tether", "protocol"]:
        return 1
    if name in ("tether.limits", "tether.exceptions", "tether.version", "tether.ratelimit"):
        return 0
    return 2


def test_modules_stay_small(structure: ModuleType) -> None:
    sizes = {name: module.lines for name, module in structure.scan().items()}
    too_big = {name: lines for name, lines in sizes.items() if lines > LARGE.get(name, MAX_LINES)}
    assert not too_big, f"over {MAX_LINES} lines (or past their allowance): {too_big}"


def test_no_import_circles(structure: ModuleType) -> None:
    assert structure.circles(structure.scan()) == []
    assert structure.circles(structure.scan(typing=True)) == TYPE_ONLY_CIRCLES


def test_no_module_reaches_into_another_modules_private_names(structure: ModuleType) -> None:
    private = {name: m.private for name, m in structure.scan().items() if m.private}
    assert not private


def test_imports_only_go_down(structure: ModuleType) -> None:
    upward = [
        (name, target)
        for name, module in structure.scan(typing=True).items()
        for target in module.imports
        if layer(target) > layer(name) and (name, target) not in SIDEWAYS
    ]
    assert not upward


def test_the_sans_io_layers_never_import_asyncio(structure: ModuleType) -> None:
    sans_io = [
        module
        for name, module in structure.scan().items()
        if name.startswith(("tether.protocol", "tether.realtime.protocol"))
    ]
    assert sans_io
    offenders = [m.name for m in sans_io if "import asyncio" in m.path.read_text()]
    assert not offenders
