"""The Python fake Konnectivity proxy-server and one agent (tests/fakes/konnectivity.py), in their own process.

For `./dev bench konnectivity`: the proxy-server and agent must not share the gateway's process or
event loop. The agent registers for the given cluster names and dials the member for each of them.
A real ANP proxy-server and agent are Go; this fake is Python, so a tunnel costs more here.

    python benchmarks/konnectivity_fake.py --state DIR --member 127.0.0.1:PORT --clusters a,b

Writes DIR/konnectivity.json once the agent is connected: the proxy-server's port, the client files
(--proxy-ca-cert, --proxy-cert, --proxy-key) and `counters_url`, a loopback HTTP endpoint answering
the fake's counters (tunnels dialled per address, established, CLOSE_REQs, open now). Serves until
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes.konnectivity import FakeAgent, FakeProxyServer

MEMBER_PORT = 443  # the port the gateway dials `<cluster>:443`


def counters(server: FakeProxyServer) -> dict[str, object]:
    """What the proxy-server counted so far."""
    return {
        "dials_by_address": dict(collections.Counter(server.dial_addresses)),
        "dials": server.dials,
        "established": server.established,
        "close_requests": server.close_requests,
        "open_connections": server.open_connections,
        "no_agent": server.no_agent,
    }


async def serve(state: Path, member: tuple[str, int], clusters: tuple[str, ...]) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    async with FakeProxyServer() as server:
        routes = {f"{name}:{MEMBER_PORT}": member for name in clusters}
        async with FakeAgent(server, "bench-agent", clusters, routes):
            await server.wait_for_agents(1)

            async def answer_counters(_: web.Request) -> web.Response:
                return web.json_response(counters(server))

            app = web.Application()
            app.router.add_get("/counters", answer_counters)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            ca, cert, key = server.write_client_files(state / "proxy-client")
            info = {
                "port": server.port,
                "ca": str(ca),
                "cert": str(cert),
                "key": str(key),
                "counters_url": f"http://127.0.0.1:{port}/counters",
            }
            (state / "konnectivity.json.tmp").write_text(json.dumps(info))
            (state / "konnectivity.json.tmp").replace(state / "konnectivity.json")
            await stopped.wait()
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, required=True, help="where konnectivity.json and the client files go")
    parser.add_argument("--member", required=True, help="host:port the agent dials for every cluster")
    parser.add_argument("--clusters", required=True, help="comma-separated cluster names the agent serves")
    args = parser.parse_args()
    host, _, port = args.member.rpartition(":")
    args.state.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.state, (host, int(port)), tuple(c for c in args.clusters.split(",") if c)))


if __name__ == "__main__":
    main()
