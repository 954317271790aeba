"""docs/deployment.md, "Behind a load balancer", nginx: its http block
(ports substituted, listening on 127.0.0.1 only) in a real nginx, in front
of three of the page's node.py processes on a private redis-server, with the
same 200 default clients as test_haproxy.py (balancer.py). scripts/test
installs nginx from Debian when it is missing; the test is skipped only where
nginx cannot be found (a run of pytest outside the test command).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import timeout
from realtime.redis_helpers import free_port, redis_server
from realtime.server import balancer
from realtime.server.deployment_doc import LoggedProcess, doc_block

pytestmark = pytest.mark.redis

# nginx logs this at "notice" level once its sockets listen and its workers run.
_STARTED = re.compile(r"start worker process (\d+)")


def nginx_bin() -> str:
    return balancer.executable("nginx", "optional: apt-get install nginx")


def documented_config(port: int, ports: list[int], tmp_path: Path) -> str:
    """The page's http block, with these ports, inside a minimal main
    configuration that keeps every file nginx writes under ``tmp_path``."""
    block = doc_block("text", "# nginx.conf (the http block)")
    for documented, node in zip(("8001", "8002", "8003"), ports, strict=True):
        assert block.count(f"127.0.0.1:{documented}") == 1
        block = block.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{node}")
    assert block.count("listen 8000;") == 1
    block = block.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\npid {tmp_path / 'nginx.pid'};\nerror_log stderr notice;\n"
        "events { worker_connections 2048; }\n"
        f"http {{\n    access_log off;\n{temp}\n{block}}}\n"
    )


@contextlib.asynccontextmanager
async def documented_nginx(ports: list[int], tmp_path: Path) -> AsyncIterator[int]:
    """nginx with the page's http block; yields its port."""
    executable = nginx_bin()
    port = free_port()
    path = tmp_path / "nginx.conf"
    path.write_text(documented_config(port, ports, tmp_path))
    check = await asyncio.create_subprocess_exec(
        executable,
        "-t",
        "-p",
        str(tmp_path),
        "-c",
        str(path),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(check.communicate(), timeout(10))
    assert check.returncode == 0, err.decode()
    assert b"[warn]" not in err, err.decode()  # a clean config
    process = await asyncio.create_subprocess_exec(
        executable, "-p", str(tmp_path), "-c", str(path), stderr=asyncio.subprocess.PIPE
    )
    nginx = LoggedProcess(process, _STARTED)
    try:
        await asyncio.wait_for(asyncio.shield(nginx.listening), timeout(10))
        yield port
    finally:
        await balancer.stop(process)  # SIGTERM: the master stops its workers
        nginx.reader.cancel()
    assert "[emerg]" not in nginx.log and "[alert]" not in nginx.log, nginx.log


async def test_nginx_recipe_200_default_clients(tmp_path: Path) -> None:
    nginx_bin()
    with redis_server() as redis:
        async with balancer.documented_nodes(redis.url, tmp_path) as nodes:
            ports = [node.listening.result() for node in nodes]
            async with documented_nginx(ports, tmp_path) as port:
                summary = await balancer.run_clients(f"http://127.0.0.1:{port}")
            placed = balancer.check_clients(summary, nodes)
            # ip_hash keys an IPv4 client on its first three bytes: every
            # client here (127.0.0.2) lands on one process, as every client
            # behind one NAT address would.
            assert len(set(placed)) == 1, placed
