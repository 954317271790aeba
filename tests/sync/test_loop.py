"""tether.sync.loop: the event loop thread behind the blocking clients."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from helpers import timeout
from sync.conftest import StartPeer, run_script
from tether.exceptions import InvalidState
from tether.sync.loop import EventLoopThread, within


def test_started_on_first_use_and_stopped() -> None:
    loop = EventLoopThread("test loop")
    assert loop.thread is None  # nothing started by making one

    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert loop.run(where) == "test loop"
    thread = loop.thread
    assert thread is not None and thread.daemon
    loop.stop(timeout(5))
    assert not thread.is_alive()
    assert loop.run(where) == "test loop"  # a new one on the next use
    loop.stop(timeout(5))


def test_within_returns_what_is_ready_even_with_no_time() -> None:
    loop = EventLoopThread()
    try:

        async def ready() -> str:
            return "now"

        async def never() -> None:
            await asyncio.Event().wait()

        assert loop.run(within, 0, ready) == "now"
        with pytest.raises(TimeoutError):
            loop.run(within, timeout(0.05), never)
    finally:
        loop.stop(timeout(5))


def test_the_callers_exception_and_a_running_loop() -> None:
    loop = EventLoopThread()
    try:

        async def fail() -> None:
            raise KeyError("from the loop")

        with pytest.raises(KeyError):
            loop.run(fail)

        async def misuse() -> None:
            with pytest.raises(InvalidState):
                loop.run(fail)

        asyncio.run(misuse())
    finally:
        loop.stop(timeout(5))


def test_a_script_that_never_closes_still_exits(start_tether: StartPeer) -> None:
    # The loop's thread is a daemon stopped at exit: an open connection, left
    # as a script might leave it, neither keeps the process alive nor prints,
    # and is closed cleanly on the way out.
    peer = start_tether()
    uri = peer.uri("/echo")
    result = run_script(f"""
        import tether.sync
        ws = tether.sync.connect({uri!r})
        ws.send("left open")
        print(ws.recv(timeout=5))
        """)
    assert (result.returncode, result.stdout, result.stderr) == (0, "left open\n", "")
    assert peer.close_code() == 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_a_loop_of_its_own(start_tether: StartPeer) -> None:
    uri = start_tether().uri("/echo")
    result = run_script(f"""
        import os, tether.sync
        with tether.sync.connect({uri!r}) as ws:
            ws.send("parent")
            assert ws.recv(timeout=5) == "parent"
        pid = os.fork()
        if pid == 0:
            with tether.sync.connect({uri!r}) as ws:
                ws.send("child")
                os._exit(0 if ws.recv(timeout=5) == "child" else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"


def test_import_tether_does_not_import_the_blocking_clients() -> None:
    result = run_script("""
        import sys, tether
        assert "tether.sync" not in sys.modules
        print(tether.sync.connect.__module__, "tether.sync.realtime" in sys.modules)
        """)
    assert (result.returncode, result.stdout) == (0, "tether.sync.client False\n"), result.stderr
