"""tether's realtime server for bench/realtime.py.

``python realtime_tether.py [--coroutine] [--profile PATH]``.

The Socket.IO benchmark protocol, the same for every server (realtime_socketio.mjs
and realtime_python_socketio.py): listen on 127.0.0.1, an ephemeral port, and
print ``ready <port>``; the default namespace has three events:

* ``echo``: emit ``echo`` back to the sender with the same argument (here a
  plain function calling ``socket.emit_nowait``, as socket.io's handler is a
  plain function calling ``socket.emit``; ``--coroutine``: an ``async def``
  awaiting ``socket.emit``, which before Python 3.12 runs in a task per event);
* ``join``: join the room ``room``, then emit ``joined`` to the sender;
* ``fanout``: emit ``msg`` with the same argument to the room ``room``.

Each server keeps its defaults otherwise, as a user would run it: here
``realtime.serve``'s (compression off) on uvloop.

``--profile PATH``: cProfile the process between SIGUSR1 and SIGUSR2; at
SIGUSR2 the statistics go to PATH (``pstats``) and ``profiled`` is printed
(bench/realtime_profile.py drives it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import signal
from typing import Any

import uvloop

from tether import realtime


def app(coroutine: bool = False) -> realtime.Server:
    """The benchmark's app; ``coroutine``: echo with an ``async def``, as a
    tree from before ``emit_nowait`` (``--base-src``) does either way."""
    server = realtime.Server()

    if coroutine or not hasattr(realtime.Socket, "emit_nowait"):

        @server.on("echo")
        async def echo_awaited(socket: realtime.Socket, data: Any) -> None:
            await socket.emit("echo", data)

    else:

        @server.on("echo")
        def echo(socket: realtime.Socket, data: Any) -> None:
            socket.emit_nowait("echo", data)

    @server.on("join")
    async def join(socket: realtime.Socket) -> None:
        await socket.join("room")
        await socket.emit("joined")

    @server.on("fanout")
    async def fanout(socket: realtime.Socket, data: Any) -> None:
        await server.to("room").emit("msg", data)

    return server


def profile_on_signals(path: str) -> None:
    """Profile between SIGUSR1 and SIGUSR2, then dump the statistics to ``path``."""
    profiler = cProfile.Profile()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        profiler.disable()
        profiler.dump_stats(path)
        print("profiled", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
    loop.add_signal_handler(signal.SIGUSR2, stop)


async def main(profile: str | None, coroutine: bool) -> None:
    if profile:
        profile_on_signals(profile)
    async with realtime.serve(app(coroutine), "127.0.0.1", 0) as http:
        print("ready", http.port, flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="tether's realtime server for bench/realtime.py")
    parser.add_argument("--profile", metavar="PATH")
    parser.add_argument(
        "--coroutine", action="store_true", help="echo with an async def awaiting socket.emit"
    )
    args = parser.parse_args()
    uvloop.run(main(args.profile, args.coroutine))
