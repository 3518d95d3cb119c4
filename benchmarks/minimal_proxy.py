"""The floor of this stack: the least an aiohttp reverse proxy can do, measured beside the gateway (benchmarks/peers.py).

No authentication, header rules, audit IDs, timeouts or error mapping: the member's token is
added, the request (its body read whole) forwarded on one pooled session and the answer streamed
back. What the gateway costs beyond this is what its features cost.

Run: python benchmarks/minimal_proxy.py MEMBER_JSON PORT CERT KEY   (serves /p/<path> until killed)
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path

import aiohttp
from aiohttp import web


async def serve(member: dict[str, str], port: int, cert: Path, key: Path) -> None:
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cadata=member["ca"]), limit=0)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    base, auth = member["url"], {"Authorization": "Bearer " + member["token"]}

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.body_exists else None  # small bodies: the CRUD loop's objects
        headers = {**auth, "Content-Type": request.content_type} if body is not None else auth
        url = f"{base}/{request.match_info['tail']}"
        async with session.request(request.method, url, params=request.query, headers=headers, data=body) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": upstream.content_type})
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_route("*", "/p/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    await asyncio.Event().wait()


def main() -> None:
    args = (json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(*args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(*args))


if __name__ == "__main__":
    main()
