"""The README's chat page in Chromium, served by the README's chat program.

``tests/test_first_run.py`` writes both as a user would (``chat.py``,
``public/index.html``, socket.io-client from ``node_modules``); here the page
must find ``io`` and say hello through the server, with a clean console.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from browser.test_demos import demo_server, drive, free_port
from test_first_run import readme_chat

pytestmark = pytest.mark.browser


def test_readme_chat_page_says_hello_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    chat = readme_chat(tmp_path, port)
    command = [sys.executable, chat.name]
    with demo_server("readme-chat", port=port, command=command, cwd=tmp_path) as server:
        drive("readme_page.mjs", server)
    assert f"serving on http://127.0.0.1:{port}" in server.log.read_text()
