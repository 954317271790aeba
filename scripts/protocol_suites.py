"""Run the official Engine.IO and Socket.IO protocol test suites against tether.

The suites live in the ``test-suite/`` directory of the
``socketio/engine.io-protocol`` and ``socketio/socket.io-protocol``
repositories. They are not part of this repository (and not on npm), so point
this script at checkouts of them::

    .venv/bin/python scripts/protocol_suites.py \\
        --engineio ~/src/engine.io-protocol --socketio ~/src/socket.io-protocol --runs 5

Each suite runs unmodified, in Node mode (``npm ci`` once, then ``npm test``),
against a tether server configured as the suite's README configures the
reference server: ping interval 300 ms, ping timeout 200 ms, ``maxPayload``
1,000,000, connect timeout 1 s, any origin; the Socket.IO server emits
``auth`` from its connect handlers and echoes ``message`` and
``message-with-ack``. The suites hard-code ``localhost:3000``, so that port
must be free (``--netns`` runs each suite in a private network namespace,
which needs ``unshare``, root, and ``ip``).

``--compression`` picks the WebSocket compression of the servers: ``off`` (the
realtime default, and socket.io's) or ``deflate``. ``--reference`` also runs the Socket.IO suite
against socket.io's own Node server (from ``node_modules/socket.io``), the
same number of times, for comparison: some of the suite's tests race (see
docs/realtime.md, "The official protocol test suites").

Prints a summary (passing/failing per run and every failing test's title)
and exits 1 if any run had a failure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = 3000

SUITE_OPTIONS = "ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000"

# The Socket.IO server of the socket.io-protocol README, in tether.
SOCKETIO_SERVER = f"""
import asyncio, sys
from tether import realtime

async def main(compression, port, host):
    server = realtime.Server({SUITE_OPTIONS}, connect_timeout=1.0, cors_allowed_origins="*")

    @server.on("connect")
    async def connect(socket, auth):
        await socket.emit("auth", auth)

    @server.on("message")
    async def message(socket, *args):
        await socket.emit("message-back", *args)

    @server.on("message-with-ack")
    def message_with_ack(socket, *args):
        return args

    @server.of("/custom").on("connect")
    async def custom_connect(socket, auth):
        await socket.emit("auth", auth)

    async with realtime.serve(server, host, port, compression=compression) as http:
        print("ready", http.port, flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main(None if sys.argv[1] == "off" else "deflate", int(sys.argv[2]), sys.argv[3]))
"""

# The engine.io-protocol suite wants a bare Engine.IO server at /engine.io/
# that echoes every message: tether's Engine.IO layer on tether.serve.
ENGINEIO_SERVER = """
import asyncio, sys
import tether
from tether.limits import RealtimeLimits
from tether.realtime.server.engine import EngineServer
from tether.realtime.server.static import not_found

class Echo:
    def on_message(self, session, data):
        session.send(data)

    def on_close(self, session, reason):
        pass

async def main(compression, port, host):
    echo = Echo()
    engine = EngineServer(
        on_session=lambda session: setattr(session, "listener", echo),
        limits=RealtimeLimits(max_payload=1_000_000), ping_interval=0.3, ping_timeout=0.2,
        cors_allowed_origins="*",
    )

    def check(connection, request):
        if not request.path.startswith("/engine.io/"):
            return not_found()
        return engine.check(request)[1]

    async def websocket(connection):
        query, _ = engine.check(connection.request)
        await engine.handle_websocket(connection, query)

    async def http(connection, request, body):
        if not request.path.startswith("/engine.io/"):
            return not_found()
        return await engine.handle_http(connection, request, body)

    async with tether.serve(websocket, host, port, process_request=check,
                            http_handler=http, compression=compression) as server:
        print("ready", server.port, flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main(None if sys.argv[1] == "off" else "deflate", int(sys.argv[2]), sys.argv[3]))
"""

# socket.io's own server, configured exactly as the socket.io-protocol README says.
REFERENCE_SERVER = f"""
import {{ Server }} from "{ROOT}/node_modules/socket.io/wrapper.mjs";
const io = new Server({PORT}, {{
  pingInterval: 300, pingTimeout: 200, maxPayload: 1000000, connectTimeout: 1000,
  cors: {{ origin: "*" }}, perMessageDeflate: process.argv[2] === "deflate",
}});
io.on("connection", (socket) => {{
  socket.emit("auth", socket.handshake.auth);
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("message-with-ack", (...args) => {{ const ack = args.pop(); ack(...args); }});
}});
io.of("/custom").on("connection", (socket) => socket.emit("auth", socket.handshake.auth));
console.log("ready");
"""


def port_free() -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", PORT))
        except OSError:
            return False
    return True


def suite_dir(checkout: Path) -> Path:
    directory = checkout / "test-suite"
    if not (directory / "test-suite.js").is_file():
        sys.exit(f"{checkout}: no test-suite/test-suite.js (a checkout of the suite's repository?)")
    if not (directory / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=directory, check=True)
    return directory


def commit_of(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown (not a git checkout)"


def run_once(server: list[str], directory: Path, netns: bool) -> str:
    """Start ``server``, wait for its "ready", run ``npm test``; the suite's output."""
    # One shell, so that in a private network namespace both ends share it.
    script = (
        ("ip link set lo up\n" if netns else "")
        + 'server_log=$(mktemp)\n"$@" > "$server_log" 2>&1 &\nserver=$!\n'
        + 'for i in $(seq 100); do grep -q ready "$server_log" && break; sleep 0.1; done\n'
        + 'cd "$SUITE" && timeout 300 npm test 2>&1\n'
        + 'kill $server; wait $server 2>/dev/null; rm -f "$server_log"\n'
    )
    command = ["sh", "-c", script, "suite", *server]
    if netns:
        command = ["unshare", "-n", *command]
    env = {**os.environ, "SUITE": str(directory)}
    return subprocess.run(command, capture_output=True, text=True, env=env).stdout


def summary(output: str) -> tuple[int, int, list[str]]:
    passing = re.search(r"(\d+) passing", output)
    failing = re.search(r"(\d+) failing", output)
    # Mocha lists each failure as "  N) <describe>\n  <describe>\n  <title>:".
    titles = [
        " / ".join(part.strip() for part in match.group(1).splitlines())
        for match in re.finditer(r"^ {2}\d+\) ((?:.*\n)+?.*):\n", output, re.MULTILINE)
    ]
    return (
        int(passing.group(1)) if passing else 0,
        int(failing.group(1)) if failing else 0,
        titles,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--engineio", type=Path, help="a checkout of socketio/engine.io-protocol")
    parser.add_argument("--socketio", type=Path, help="a checkout of socketio/socket.io-protocol")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compression", choices=["off", "deflate"], default="off")
    parser.add_argument("--reference", action="store_true", help="also run socket.io's server")
    parser.add_argument("--netns", action="store_true", help="a network namespace per run")
    args = parser.parse_args()
    if args.engineio is None and args.socketio is None:
        parser.error("give --engineio and/or --socketio")
    if not args.netns and not port_free():
        sys.exit(f"port {PORT} is in use: the suites need it (or use --netns)")
    if shutil.which("npm") is None:
        sys.exit("npm is needed to run the suites")
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        servers = []
        for name, code, checkout in (
            ("engine.io-protocol", ENGINEIO_SERVER, args.engineio),
            ("socket.io-protocol", SOCKETIO_SERVER, args.socketio),
        ):
            if checkout is not None:
                command = [sys.executable, "-c", code, args.compression, str(PORT), "localhost"]
                servers.append((name, f"tether, compression {args.compression}", command, checkout))
        if args.reference and args.socketio is not None:
            reference = Path(scratch) / "reference.mjs"
            reference.write_text(REFERENCE_SERVER)
            command = ["node", str(reference), args.compression]
            label = f"socket.io (reference), compression {args.compression}"
            servers.append(("socket.io-protocol", label, command, args.socketio))
        for name, label, command, checkout in servers:
            directory = suite_dir(checkout)
            print(f"{name} @ {commit_of(checkout)} against {label}:", flush=True)
            for run in range(1, args.runs + 1):
                started = time.monotonic()
                passing, failing, titles = summary(run_once(command, directory, args.netns))
                elapsed = time.monotonic() - started
                print(f"  run {run}: {passing} passing, {failing} failing ({elapsed:.0f} s)")
                for title in titles:
                    print(f"    failed: {title}")
                failures += failing or (passing == 0)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
