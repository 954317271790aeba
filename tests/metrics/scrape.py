"""Scraping a metrics endpoint as Prometheus would, and reading the answer with
``prometheus_client``'s own parser (shared by the tests of tests/metrics/)."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from helpers import timeout


async def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One HTTP/1.1 GET on 127.0.0.1 (the server closes after answering): status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = await asyncio.wait_for(reader.read(), timeout(2))
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> dict[str, float]:
    """Every sample of a scrape by ``name{label="value"}`` (``name`` alone without labels)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def scrape(port: int, path: str = "/metrics", token: str | None = None) -> dict[str, float]:
    """Scrape ``path`` (with a bearer ``token``) and return its samples; fails on non-200."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    status, body = await http_get(port, path, headers)
    assert status == 200, (status, body)
    return samples(body)


def subset(found: dict[str, float], expected: dict[str, float]) -> dict[str, float | None]:
    """The part of ``found`` that ``expected`` names, for an exact comparison."""
    return {name: found.get(name) for name in expected}
