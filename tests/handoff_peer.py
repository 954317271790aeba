"""A tether server in a process of its own that serves only connections handed
to it: ``python handoff_peer.py FD NAME``, FD one end of a Unix datagram
socketpair on which sockets arrive (``socket.send_fds``: the head bytes already
read, the socket's descriptor). tests/test_handoff.py drives it. It answers as
``handoff_app`` does, under NAME; prints ``ready`` once it listens for
sockets, and the size of each ``initial`` it adopted; exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import tether
from handoff_app import make_handlers


async def main(fd: int, name: str) -> None:
    loop = asyncio.get_running_loop()
    handler, http_handler = make_handlers(name)
    server = tether.Server(handler, http_handler=http_handler)
    inbox = socket.socket(fileno=fd)
    inbox.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()

    def receive() -> None:
        try:
            data, fds, _, _ = socket.recv_fds(inbox, 1 << 20, 1)
        except BlockingIOError:
            return
        print(f"initial {len(data)}", flush=True)
        task = loop.create_task(server.handle_socket(socket.socket(fileno=fds[0]), initial=data))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_reader(fd, receive)
    stdin_closed = loop.create_future()
    loop.add_reader(
        sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None)
    )
    print("ready", flush=True)
    await stdin_closed
    server.close()
    await server.wait_closed()
    os.close(fd)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
