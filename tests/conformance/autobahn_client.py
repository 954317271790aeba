"""The tether client under test for Autobahn's fuzzingserver (run by kosoku).

Usage: python autobahn_client.py ws://127.0.0.1:PORT [PARALLELISM [EVERY]]

Follows the fuzzingserver protocol: ask /getCaseCount, run every case on
/runCase?case=N&agent=AGENT as an echo client (text back as text, binary as
binary), PARALLELISM cases at a time, then /updateReports so the server
writes its reports. Prints ``N/COUNT cases`` every EVERY cases (default 50)
for the progress of a run that takes minutes.
"""

from __future__ import annotations

import asyncio
import sys

import tether

# Autobahn's 9.x cases send messages of up to 16 MiB.
LIMITS = tether.Limits(max_message_size=64 * 2**20, max_frame_size=64 * 2**20, ping_interval=None)
# Two offers in order of preference: the plain one, then one that also lets the
# server ask us not to keep our compression context (cases 13.2, 13.5-13.7).
OFFERS = [tether.DeflateOptions(), tether.DeflateOptions(client_no_context_takeover=True)]


async def run_case(base: str, case: int, agent: str) -> None:
    uri = f"{base}/runCase?case={case}&agent={agent}"
    try:
        async with tether.connect(uri, compression=OFFERS, limits=LIMITS) as connection:
            async for message in connection:
                await connection.send(message)
    except (tether.ConnectionClosed, tether.HandshakeError, OSError):
        pass  # the case judges how the connection ended, not this runner


async def main(base: str, agent: str, parallelism: int = 1, every: int = 50) -> None:
    async with tether.connect(f"{base}/getCaseCount", compression=None) as connection:
        count = int(await connection.recv())
    cases = iter(range(1, count + 1))
    done = 0

    async def worker() -> None:
        nonlocal done
        for case in cases:  # the workers share one iterator: each case runs once
            await run_case(base, case, agent)
            done += 1
            if done % every == 0:
                print(f"{done}/{count} cases", flush=True)

    await asyncio.gather(*(worker() for _ in range(parallelism)))
    async with tether.connect(f"{base}/updateReports?agent={agent}", compression=None) as c:
        await c.wait_closed(60)
    print(f"ran {count} cases", flush=True)


if __name__ == "__main__":
    numbers = [int(arg) for arg in sys.argv[2:4]]
    asyncio.run(main(sys.argv[1], "tether", *numbers))
