"""Sphinx configuration of tether's API reference.

Build it with ``python -m sphinx -W --keep-going -b html docs/api <out>``;
tests/test_docs.py does exactly that, so CI fails on any warning. The pages
(index.rst and one per package) only choose which names to show: the text is
the docstrings, written in reStructuredText for autodoc.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

# Document the checkout, not whatever tether happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tether import __version__

project = "tether"
author = "the tether authors"
copyright = "the tether authors (MIT licence)"
release = version = __version__

extensions = ["sphinx.ext.autodoc"]
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
# Undocumented members are listed too (with their signatures): server.to(),
# server.in_()... delegate to BroadcastOperator and are public all the same.
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
# The docstrings cross-reference with the full dotted path; show the short name.
add_module_names = False


def _field_doc(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give each dataclass field of the limits its ``metadata["doc"]`` and default.

    tether.limits keeps every bound's explanation next to its default, in the
    field metadata, so that the CLI flags and these pages read the same text.
    """
    if what != "attribute" or lines:
        return
    owner_name, _, field_name = name.rpartition(".")
    module_name, _, class_name = owner_name.rpartition(".")
    owner = getattr(sys.modules.get(module_name), class_name, None)
    if not dataclasses.is_dataclass(owner):
        return
    for item in dataclasses.fields(owner):
        if item.name == field_name and "doc" in item.metadata:
            text = item.metadata["doc"]
            lines.extend([text[0].upper() + text[1:] + ".", "", f"Default: ``{item.default!r}``."])


def _skip_transport_callbacks(
    app: Any, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Leave out asyncio's protocol callbacks (data_received, get_buffer...).

    tether.Connection is an asyncio.BufferedProtocol: the event loop calls
    those methods, the user never does, and their inherited docstrings are
    CPython's (with references into the CPython docs).
    """
    if what == "class" and hasattr(asyncio.BufferedProtocol, name) and not obj.__doc__:
        return True
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _field_doc)
    app.connect("autodoc-skip-member", _skip_transport_callbacks)
