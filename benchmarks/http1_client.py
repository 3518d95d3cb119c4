"""The fast path's upstream client (proxy/http1's UpstreamPool) against aiohttp's ClientSession, in one run.

Both fetch the same small Namespace from benchmarks/member.py (its own process, TLS on loopback) over
keep-alive connections, on uvloop, in alternating rounds; the figures are this process's CPU only
(the member's is not counted): requests per second and CPU seconds per 1,000 GETs, at 1 and 16 in flight.

Run: python benchmarks/http1_client.py [--requests 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import LocalMember, Member
from gateway_apiserver.proxy.http1 import UpstreamPool

PATH = "/api/v1/namespaces/default"
Get = Callable[[], Awaitable[int]]


def pool_client(member: Member) -> tuple[Get, Callable[[], Awaitable[None]]]:
    target = urlsplit(member.url)
    host, port = target.hostname or "127.0.0.1", target.port or 443
    pool = UpstreamPool(host, port, member.ssl_context(), server_hostname=None, connect_timeout=10, idle_timeout=90)
    head = f"GET {PATH} HTTP/1.1\r\nHost: {target.netloc}\r\nAuthorization: Bearer {member.token}\r\n\r\n".encode()

    async def get() -> int:
        exchange = await pool.send(head, idempotent=True)
        chunks: list[bytes] = []
        await exchange.relay(chunks.append)
        return exchange.status

    async def close() -> None:
        pool.close()

    return get, close


def session_client(member: Member) -> tuple[Get, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=member.ssl_context(), limit=0), auto_decompress=False)
    url, headers = member.url + PATH, member.headers()

    async def get() -> int:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status

    return get, session.close


async def measure(get: Get, requests: int, in_flight: int) -> tuple[float, float]:
    """(requests per second, CPU seconds per 1,000 GETs) of `requests` GETs, `in_flight` at a time."""
    for _ in range(50):  # warm the connections
        await get()

    async def worker(count: int) -> None:
        for _ in range(count):
            assert await get() == 200

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(requests // in_flight) for _ in range(in_flight)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = requests // in_flight * in_flight
    return done / wall, cpu / done * 1000


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="http1-bench-") as work:
        local = LocalMember(Path(work))
        member = await local.start()
        try:
            clients = {"UpstreamPool": pool_client(member), "aiohttp ClientSession": session_client(member)}
            results: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for _ in range(rounds):
                for in_flight in (1, 16):
                    for name, (get, _) in clients.items():
                        results.setdefault((name, in_flight), []).append(await measure(get, requests, in_flight))
            for _, close in clients.values():
                await close()
        finally:
            await local.stop()
    print(f"{requests} GETs of {PATH} per round, {rounds} rounds, medians (client process CPU only)")
    print(f"{'client':<24}{'in flight':>10}{'requests/s':>12}{'CPU-s/1000':>12}")
    for (name, in_flight), values in results.items():
        rate = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{name:<24}{in_flight:>10}{rate:>12.0f}{cpu:>12.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args.requests, args.rounds))
