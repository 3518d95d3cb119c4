"""A real gateway server on a loopback TLS socket, fed by a Secret source the test controls."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway_apiserver.config import Config
from gateway_apiserver.registry.cache import ClusterRegistry
from gateway_apiserver.registry.source import Secret, SecretSink
from gateway_apiserver.server import GatewayServer


class ManualSecretSource:
    """Delivers one listing, then lets the test drive events through `registry.apply`."""

    def __init__(self, secrets: Sequence[Secret] = (), resource_version: str = "1", *, sync: bool = True) -> None:
        self.secrets = list(secrets)
        self.resource_version = resource_version
        self.sync = sync

    async def run(self, sink: SecretSink) -> None:
        """Replace once (unless told not to sync), then idle until cancelled."""
        if self.sync:
            sink.replace(self.secrets, self.resource_version)
        await asyncio.Event().wait()


@dataclass
class RunningGateway:
    """Handles for a started gateway."""

    server: GatewayServer
    url: str
    ca_file: Path
    kubeconfig: Path

    @property
    def registry(self) -> ClusterRegistry:
        """The live registry, to inject Secret events."""
        return self.server.registry

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the gateway's self-signed CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp client bound to this gateway."""
        return aiohttp.ClientSession(base_url=self.url, connector=aiohttp.TCPConnector(ssl=self.ssl_context()), **kwargs)


async def get_json(gw: RunningGateway, path: str, status: int = 200, **headers: str) -> Any:
    """GET `path` from the gateway, assert the status, and return the JSON body."""
    async with gw.session() as s, s.get(path, headers=headers) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == status, body
        return body


async def run_kubectl(gw: RunningGateway, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run the kubectl binary against the gateway without blocking the event loop that serves it."""
    proc = await start_kubectl(gw, *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def kubectl_with(kubeconfig: Path, *args: str, stdin: bytes | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """Run the kubectl binary with `kubeconfig` (its cache beside it), feeding `stdin`; code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={kubeconfig.parent / 'kube-cache'}",
        "--request-timeout=20s",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def start_kubectl(gw: RunningGateway, *args: str) -> asyncio.subprocess.Process:
    """Start kubectl against the gateway with piped output (for `-w`); the caller kills it."""
    env = {**os.environ, "KUBECONFIG": str(gw.kubeconfig), "HOME": str(gw.kubeconfig.parent)}
    cache = gw.kubeconfig.parent / "kubectl-cache"
    return await asyncio.create_subprocess_exec(
        "kubectl",
        f"--cache-dir={cache}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str = "unused") -> Path:
    """A kubeconfig for kubectl and the Python clients."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gw", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "gw", "context": {"cluster": "gw", "user": "u"}}],
        "current-context": "gw",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def running_gateway(
    tmp_path: Path, source: Any, *, authenticator: Any = None, authorizer: Any = None, **overrides: Any
) -> AsyncIterator[RunningGateway]:
    """Start a standalone-mode gateway on 127.0.0.1 with a fresh self-signed certificate.

    Health probing is off unless a test turns it on (health_probe_interval=...): a background prober
    would add requests and connections to the members that other tests count.
    """
    config = replace(
        Config(standalone=True, secure_port=0, bind_address="127.0.0.1", cert_dir=tmp_path / "certs", health_probe_interval=0),
        **overrides,
    )
    server = GatewayServer(config, source=source, authenticator=authenticator, authorizer=authorizer)
    await server.start()
    try:
        if getattr(source, "sync", True):
            await asyncio.wait_for(server.registry.synced.wait(), 10)
            await asyncio.wait_for(server.virtual_clusters.synced.wait(), 10)
        assert server.cert is not None
        url = f"https://127.0.0.1:{server.port}"
        kubeconfig = write_kubeconfig(tmp_path / "gateway.kubeconfig", url, server.cert.cert_file)
        yield RunningGateway(server, url, server.cert.cert_file, kubeconfig)
    finally:
        await server.stop()
