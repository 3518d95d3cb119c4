"""Graceful shutdown of the real `gateway-apiserver` process, as the kube-apiserver does it.

On SIGTERM: /readyz fails at once (the `shutdown` check) while everything is still served; after
--shutdown-delay-duration the listener closes (new connections are refused); a short request
in flight finishes and is answered; a watch, a proxied log stream and an exec tunnel are ended
cleanly (a chunked stream gets its final chunk, the tunnel's TLS connection is closed, not
reset); each gets its access-log line; the process exits 0, all within a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.member_upgrade import FakeUpgradeMember
from tests.fakes.secrets import cluster_secret
from tests.test_process import free_port

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/apis/cluster.core.oam.dev/v1alpha1"
DELAY = 1.0  # --shutdown-delay-duration
SLOW = 2.5  # the short request in flight takes this long: it outlives the delay
EXEC = f"{PREFIX}/clustergateways/tunnel/proxy/api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true&stdout=true"
LOG = f"{PREFIX}/clustergateways/member/proxy/api/v1/namespaces/default/pods/p/log"


def secret_file(directory: Path, name: str, endpoint: str, token: str, ca_pem: bytes) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", **cluster_secret(name, endpoint=endpoint, token=token, ca_pem=ca_pem)}
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(secret))


class Gateway:
    """A `python -m gateway_apiserver --standalone` process on a free loopback port."""

    def __init__(self, tmp_path: Path, secrets_dir: Path) -> None:
        self.port = free_port()
        self.cert_dir = tmp_path / "certs"
        self.args = [
            "--standalone", "--secrets-dir", str(secrets_dir), "--secure-port", str(self.port),
            "--cert-dir", str(self.cert_dir), "--shutdown-delay-duration", f"{DELAY:g}s", "--shutdown-grace-period", "20s",
            # No health probing: the held watch must see only the test's own changes, not a probe's MODIFIED.
            "--health-probe-interval", "0s",
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.ctx: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway_apiserver", *self.args, cwd=REPO, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(200):
            if (self.cert_dir / "apiserver.crt").exists():
                try:
                    self.ctx = ssl.create_default_context(cafile=str(self.cert_dir / "apiserver.crt"))
                    if (await self.get("/readyz"))[0] == 200:
                        return
                except (aiohttp.ClientError, ssl.SSLError, OSError):
                    pass
            await asyncio.sleep(0.05)
        raise AssertionError("the gateway did not become ready")

    def session(self) -> aiohttp.ClientSession:
        assert self.ctx is not None, "not started"
        return aiohttp.ClientSession(self.url, connector=aiohttp.TCPConnector(ssl=self.ctx, force_close=True))

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session() as s, s.get(path) as r:
            return r.status, await r.read()


@pytest.fixture
async def members() -> AsyncIterator[tuple[FakeMemberAPIServer, FakeUpgradeMember]]:
    tunnel = FakeUpgradeMember()
    await tunnel.start()
    try:
        async with FakeMemberAPIServer(log_interval=0.2, log_lines=1000) as member:
            yield member, tunnel
    finally:
        await tunnel.stop()


async def read_to_end(response: aiohttp.ClientResponse) -> tuple[float, bytes, BaseException | None]:
    """Read a stream until it ends: when, what, and whether it broke instead of ending."""
    data = b""
    try:
        async for chunk in response.content.iter_any():
            data += chunk
    except aiohttp.ClientError as exc:
        return time.monotonic(), data, exc
    return time.monotonic(), data, None


async def open_tunnel(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port, ssl=gw.ctx)
    writer.write(
        f"POST {EXEC} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"  # the member echoes: the tunnel is up
    return reader, writer


async def tunnel_end(reader: asyncio.StreamReader) -> tuple[float, bytes, BaseException | None]:
    try:
        data = await reader.read()
    except (ConnectionError, ssl.SSLError) as exc:
        return time.monotonic(), b"", exc
    return time.monotonic(), data, None


async def first_refusal(port: int) -> float:
    """When a new TCP connection is first refused (polled every 20 ms)."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return time.monotonic()
        writer.close()
        await asyncio.sleep(0.02)


def access_lines(stderr: str) -> list[dict[str, Any]]:
    marker = " gateway_apiserver.access: "
    return [json.loads(line.partition(marker)[2]) for line in stderr.splitlines() if marker in line]


async def test_sigterm_unready_first_then_refuses_drains_ends_streams_cleanly_and_exits_0(
    tmp_path: Path, members: tuple[FakeMemberAPIServer, FakeUpgradeMember]
) -> None:
    member, tunnel_member = members
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    secret_file(secrets_dir, "member", member.url, member.token, member.ca_pem)
    secret_file(secrets_dir, "tunnel", str(tunnel_member.url), tunnel_member.token, tunnel_member.ca_pem)
    gw = Gateway(tmp_path, secrets_dir)
    await gw.start()
    assert gw.proc is not None
    stderr = asyncio.create_task(gw.proc.stderr.read())  # type: ignore[union-attr]
    try:
        async with gw.session() as s:
            watch = await s.get(f"{PREFIX}/clustergateways", params={"watch": "true"})
            assert json.loads(await watch.content.readline())["type"] == "ADDED"
            log = await s.get(LOG, params={"follow": "true"})
            assert (await log.content.readline()).startswith(b"line 0 at ")
            tunnel_reader, tunnel_writer = await open_tunnel(gw)
            slow = asyncio.create_task(gw.get(f"{PREFIX}/clustergateways/member/proxy/slow?seconds={SLOW:g}"))
            ends = [asyncio.create_task(read_to_end(watch)), asyncio.create_task(read_to_end(log))]
            ends.append(asyncio.create_task(tunnel_end(tunnel_reader)))
            await asyncio.sleep(0.3)  # the slow request is in flight

            gw.proc.send_signal(signal.SIGTERM)
            sigterm = time.monotonic()
            refused = asyncio.create_task(first_refusal(gw.port))
            status, body = await gw.get("/readyz")  # during the delay: served, and unready
            assert time.monotonic() - sigterm < DELAY
            assert (status, body.decode()) == (
                500,
                "[+]ping ok\n[+]cluster-registry-synced ok\n[-]shutdown failed: process is shutting down\nreadyz check failed\n",
            )
            assert (await gw.get(f"{PREFIX}/clustergateways/member"))[0] == 200  # everything else still served

            refused_at = await asyncio.wait_for(refused, DELAY + 5)
            assert DELAY <= refused_at - sigterm <= DELAY + 1.0
            assert gw.proc.returncode is None  # refusing while the slow request still drains

            (
                (watch_at, watch_rest, watch_error),
                (log_at, log_rest, log_error),
                (tunnel_at, tunnel_rest, tunnel_error),
            ) = await asyncio.wait_for(asyncio.gather(*ends), 10)
            # Each ended cleanly: the final chunk or a closed TLS connection, never a reset.
            assert (watch_error, log_error, tunnel_error) == (None, None, None)
            assert tunnel_rest == b""
            assert all(line.startswith(b"line ") for line in log_rest.splitlines())
            assert all(json.loads(line)["type"] in ("ADDED", "BOOKMARK") for line in watch_rest.splitlines())
            for ended_at in (watch_at, log_at, tunnel_at):
                assert DELAY <= ended_at - sigterm <= DELAY + 2.0
            tunnel_writer.close()

            assert await asyncio.wait_for(slow, 10) == (200, b'{"slept":true}')
        code = await asyncio.wait_for(gw.proc.wait(), 15)
        exited = time.monotonic() - sigterm
    finally:
        if gw.proc.returncode is None:
            gw.proc.kill()
            await gw.proc.wait()
    err = (await stderr).decode()
    assert code == 0, err
    assert exited <= SLOW + 5.0
    by_path = {line["path"]: line for line in access_lines(err)}
    assert {k: by_path[f"{PREFIX}/clustergateways"][k] for k in ("status", "ended")} == {"status": 200, "ended": "shutdown"}
    assert {k: by_path[LOG][k] for k in ("status", "ended")} == {"status": 200, "ended": "shutdown"}
    assert {k: by_path[EXEC.split("?", maxsplit=1)[0]][k] for k in ("status", "ended")} == {"status": 101, "ended": "shutdown"}
    slow_line = by_path[f"{PREFIX}/clustergateways/member/proxy/slow"]
    assert (slow_line["status"], slow_line["ended"], slow_line["bytes"]) == (200, "complete", len(b'{"slept":true}'))


async def test_a_request_still_running_after_the_grace_period_is_cut_and_logged(
    tmp_path: Path, members: tuple[FakeMemberAPIServer, FakeUpgradeMember], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_apiserver.access")
    member, _ = members
    secret = cluster_secret("member", endpoint=member.url, token=member.token, ca_pem=member.ca_pem)
    overrides = {"shutdown_delay_duration": 0.0, "shutdown_grace_period": 0.5}
    async with running_gateway(tmp_path, ManualSecretSource([secret]), **overrides) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port, ssl=gw.ssl_context())
        writer.write(f"GET {PREFIX}/clustergateways/member/proxy/slow?seconds=30 HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        for _ in range(200):
            if gw.server.in_flight.count:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await gw.server.shutdown()
        assert time.monotonic() - started <= 0.5 + 2.0
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
        writer.close()
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway_apiserver.access"]
    assert (line["path"], line["status"], line["bytes"], line["ended"]) == (
        f"{PREFIX}/clustergateways/member/proxy/slow",
        0,
        0,
        "shutdown",
    )
