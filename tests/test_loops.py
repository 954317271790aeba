"""``--loop auto|asyncio|uvloop`` (tether._loops): which loop the commands run on."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

import tether.cli
from tether import _loops

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "uvloop" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


async def loop_module() -> str:
    assert _loops.current() in type(asyncio.get_running_loop()).__module__
    return _loops.current()


def test_auto_is_uvloop_when_installed_else_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _loops.resolve("auto") == ("uvloop" if HAS_UVLOOP else "asyncio")
    assert _loops.resolve("asyncio") == "asyncio"
    without_uvloop(monkeypatch)
    assert _loops.resolve("auto") == "asyncio"
    assert _loops.run(loop_module(), "auto") == "asyncio"


def test_uvloop_asked_for_and_missing_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without_uvloop(monkeypatch)
    with pytest.raises(RuntimeError, match=r"pip install 'tether\[uvloop\]'"):
        _loops.resolve("uvloop")
    main = loop_module()
    with pytest.raises(RuntimeError):
        _loops.run(main, "uvloop")
    assert main.cr_frame is None  # closed, not left to warn "never awaited"
    with pytest.raises(ValueError, match="loop must be one of"):
        _loops.resolve("trio")


def test_the_cli_refuses_a_missing_uvloop_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    without_uvloop(monkeypatch)
    assert tether.cli.main(["serve", "--echo", "--port", "0", "--loop", "uvloop"]) == 1
    assert "error: --loop uvloop: uvloop is not installed" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop (tether[uvloop]) is not installed")
def test_run_on_uvloop_and_on_asyncio() -> None:
    assert _loops.run(loop_module(), "uvloop") == "uvloop"
    assert _loops.run(loop_module(), "asyncio") == "asyncio"
