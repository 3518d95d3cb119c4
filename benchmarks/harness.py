"""What every benchmark needs: a member (local or real), the gateway as its own process, clients, statistics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{name}/proxy"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90 and p99 (nearest rank), rounded to µs."""
    ordered = sorted(values)
    pick = lambda p: ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]  # noqa: E731
    return {"p50": round(pick(50), 3), "p90": round(pick(90), 3), "p99": round(pick(99), 3)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (a --workers parent and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of these processes, MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, StopIteration):
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            total += int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
    return total / 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Member:
    """How to reach the member cluster directly: what a cluster Secret would hold."""

    url: str
    ca_pem: str | None
    token: str | None = None
    cert_pem: str | None = None
    key_pem: str | None = None
    insecure: bool = False
    local: bool = True  # the benchmark member (benchmarks/member.py), with its special endpoints

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cadata=self.ca_pem)
        if self.cert_pem and self.key_pem:
            with tempfile.TemporaryDirectory() as tmp:  # ssl loads a client key from files only; gone at once
                cert, key = Path(tmp, "c.crt"), Path(tmp, "c.key")
                cert.write_text(self.cert_pem)
                key.touch(0o600)
                key.write_text(self.key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def secret(self, name: str) -> dict[str, Any]:
        """The cluster Secret the gateway reads for this member."""
        data: dict[str, str] = {"endpoint": self.url}
        if self.ca_pem and not self.insecure:
            data["ca.crt"] = self.ca_pem
        if self.token:
            kind, data["token"] = "ServiceAccountToken", self.token
        else:
            kind = "X509Certificate"
            data["tls.crt"], data["tls.key"] = self.cert_pem or "", self.key_pem or ""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": "vela-system",
                "labels": {"cluster.core.oam.dev/cluster-credential-type": kind},
            },
            "stringData": data,
        }


def _data(entry: dict[str, Any], key: str, base: Path) -> str | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"]).decode()
    if entry.get(key):
        return (base / str(entry[key])).read_text()
    return None


def member_from_kubeconfig(path: Path) -> Member:
    """A real member cluster from the current context of a kubeconfig (token or client certificate)."""
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    base = path.resolve().parent
    token = user.get("token") or (Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None)
    member = Member(
        url=cluster["server"].rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", base),
        token=token,
        cert_pem=_data(user, "client-certificate", base),
        key_pem=_data(user, "client-key", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        local=False,
    )
    if not member.token and not member.cert_pem:
        raise SystemExit(f"{path}: the current context's user has neither a token nor a client certificate")
    return member


class LocalMember:
    """benchmarks/member.py in its own process: on loopback, or on `host` run through `prefix`
    (`ip netns exec NS`: the WAN section's member behind a delayed link)."""

    def __init__(self, work: Path, latency_ms: float = 0.0, host: str = "127.0.0.1", prefix: Sequence[str] = ()) -> None:
        self.latency_ms, self.host, self.prefix = latency_ms, host, tuple(prefix)
        self.state = work / "member"
        self.state.mkdir(parents=True, exist_ok=True)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Member:
        self.proc = await asyncio.create_subprocess_exec(
            *self.prefix, sys.executable, str(ROOT / "benchmarks" / "member.py"), "--state", str(self.state),
            "--latency-ms", str(self.latency_ms), "--host", self.host,
        )  # fmt: skip
        info_file = self.state / "member.json"
        for _ in range(400):
            if info_file.exists():
                info = json.loads(info_file.read_text())
                return Member(url=info["url"], ca_pem=info["ca"], token=info["token"])
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.025)
        raise RuntimeError("the benchmark member did not start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


class GatewayProcess:
    """The gateway in standalone mode, as its own process, with one cluster Secret ("m1") for the member."""

    def __init__(
        self,
        work: Path,
        member: Member,
        *,
        workers: int = 1,
        event_loop: str = "auto",
        without: Sequence[str] = (),
        flags: Sequence[str] = (),
    ) -> None:
        """`without`: parts of the request path left out (benchmarks/gateway_variant.py); `flags`: more gateway flags."""
        self.work, self.member, self.workers, self.event_loop = work, member, workers, event_loop
        self.without, self.flags = tuple(without), tuple(flags)
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.base = f"https://127.0.0.1:{self.port}"
        self.proxy = self.base + PROXY.format(name="m1")

    async def start(self) -> None:
        secrets = self.work / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        (secrets / "m1.yaml").write_text(yaml.safe_dump(self.member.secret("m1")))
        variant = ["benchmarks/gateway_variant.py", "--without", ",".join(self.without), "--"] if self.without else []
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *(variant or ["-m", "gateway_apiserver"]), "--standalone", "--secrets-dir", str(secrets),
            "--secure-port", str(self.port), "--cert-dir", str(self.work / "certs"), "--log-level", "warning",
            "--workers", str(self.workers), "--event-loop", self.event_loop, *self.flags,
            cwd=ROOT,
        )  # fmt: skip
        cert = self.work / "certs" / "apiserver.crt"
        for _ in range(400):
            if cert.exists():
                break
            await asyncio.sleep(0.025)
        self.ssl = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl)) as s:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(self.proxy + "/api/v1/namespaces/default") as r:
                        if r.status == 200 and len(self.pids()) >= self.workers:
                            await asyncio.sleep(0.5 if self.workers > 1 else 0)  # the other workers too
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError("the gateway did not become ready")

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


class ProxyProcess(Protocol):
    """What the measurements need of a proxy under test: the gateway, or a peer (benchmarks/peers.py)."""

    workers: int
    proxy: str  # the URL a member path is appended to
    ssl: ssl.SSLContext

    def pids(self) -> list[int]: ...


def direct_session(member: Member, limit: int = 100) -> aiohttp.ClientSession:
    """A keep-alive session straight to the member, with its credential."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=member.ssl_context(), limit=limit), headers=member.headers())


def proxy_session(proxy: ProxyProcess, limit: int = 100) -> aiohttp.ClientSession:
    """A keep-alive session to a proxy under test (standalone gateway, peers: no client credential)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=proxy.ssl, limit=limit))


@contextlib.asynccontextmanager
async def sessions(
    member: Member, gateway: ProxyProcess, limit: int = 100
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    """A keep-alive session direct to the member and one to the gateway."""
    async with direct_session(member, limit) as direct, proxy_session(gateway, limit) as through:
        yield direct, through


async def timed(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> float:
    """One request, body read; milliseconds. Fails loudly on an error answer."""
    start = time.perf_counter()
    async with session.request(method, url, **kw) as resp:
        await resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url}: {resp.status}")
    return (time.perf_counter() - start) * 1000


class RSSSampler:
    """The peak RSS of processes while a block runs, sampled every 10 ms."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids, self.before, self.peak = list(pids), rss_mb(pids), 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pids))
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> RSSSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_mb(self.pids))
