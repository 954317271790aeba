"""Time polling requests sent to a session's owner directly, and through
another worker that hands each connection over (docs/workers.md, "Measured").

``python tests/realtime/workers/handoff_timing.py [N]``: two realtime servers
in this process on ports of their own, each with a Handoff; N POSTs (a new
TCP connection each) to worker 1's session on worker 1's port, then on worker
0's port, twice over; prints the time per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from tether import realtime
from tether.realtime.workers import Handoff, sid_prefix


async def _request(port: int, head: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    answer = await reader.read()
    writer.close()
    return answer


async def _post(port: int, sid: str) -> None:
    path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n3"
    answer = await _request(port, head)
    assert b" 200 " in answer.split(b"\r\n")[0], answer


async def main(count: int) -> None:
    directory = Path(tempfile.mkdtemp())
    ports = []
    async with contextlib.AsyncExitStack() as stack:
        for index in range(2):
            server = realtime.Server(ping_interval=300)
            server.engine.sid_prefix = sid_prefix(index)
            http = await stack.enter_async_context(realtime.serve(server, "127.0.0.1", 0))
            handoff = Handoff(http, index, 2, directory)
            http.route = handoff.route
            handoff.start()
            stack.callback(handoff.close)
            ports.append(http.port)
        head = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n"
        head += "Connection: close\r\n\r\n"
        sid = (await _request(ports[1], head)).decode().split('"sid":"')[1].split('"')[0]
        for label, port in [("direct", ports[1]), ("handed", ports[0])] * 2:
            start = time.perf_counter()
            for _ in range(count):
                await _post(port, sid)
            elapsed = time.perf_counter() - start
            print(
                f"{label}: {count} requests in {elapsed:.3f} s, {elapsed / count * 1e3:.2f} ms each"
            )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
