"""The proxies measured beside the gateway (issue 18), each its own process on the gateway's serving certificate:

  go_peer                 benchmarks/go_peer/ (Go, standard library): one pooled http.Transport
  go_peer_per_request     the same binary with -transport-per-request: a connection and TLS handshake per
                          request to the member, as cluster-gateway builds a transport per request
  minimal                 benchmarks/minimal_proxy.py: the least an aiohttp proxy can do
  raw                     benchmarks/raw_proxy.py: the least a Python proxy can do (asyncio protocols, httptools)

The Go peer is built from source with the `go` on the PATH (Debian's golang-go: `./dev bench` installs it
when it can); without Go, its columns are left out and the results say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks.harness import PROXY, ROOT, GatewayProcess, Member, free_port

GO_PEER_SOURCE = ROOT / "benchmarks" / "go_peer"
GO_PEER_BINARY = GO_PEER_SOURCE / "go-peer"  # git-ignored
# The peers in the order every section measures them, after direct and before the gateway.
PEERS = ("go_peer", "go_peer_per_request", "minimal", "raw")
GO_PEERS = ("go_peer", "go_peer_per_request")
# The Go peer gets one core, as the gateway's one worker has (GOMAXPROCS; the runtime's own threads aside).
GO_PEER_CORES = 1


@dataclass(frozen=True)
class GoPeerBuild:
    """The Go peer's binary and the Go it was built with; or, with no binary, why there is none."""

    binary: Path | None
    go_version: str = ""
    unavailable: str = ""


def build_go_peer(go: str = "go", binary: Path = GO_PEER_BINARY, timeout: float = 300) -> GoPeerBuild:
    """The Go peer, (re)built with `go` when the binary is missing or older than its source."""
    sources = [GO_PEER_SOURCE / "main.go", GO_PEER_SOURCE / "go.mod"]
    fresh = binary.exists() and binary.stat().st_mtime >= max(s.stat().st_mtime for s in sources)
    if not fresh:
        go_command = shutil.which(go)
        if go_command is None:
            return GoPeerBuild(
                None, unavailable=f"Go is not installed ({go!r} is not on the PATH; Debian: apt-get install golang-go)"
            )
        env = dict(os.environ, CGO_ENABLED="0")
        if "HOME" not in env:  # go needs a build cache and a GOPATH
            scratch = Path(tempfile.gettempdir()) / "gw-bench-go"
            env.setdefault("GOCACHE", str(scratch / "cache"))
            env.setdefault("GOPATH", str(scratch / "path"))
        try:
            built = subprocess.run(
                [go_command, "build", "-o", str(binary), "."],
                cwd=GO_PEER_SOURCE,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return GoPeerBuild(None, unavailable=f"go build failed: {e}")
        if built.returncode != 0:
            return GoPeerBuild(None, unavailable=f"go build failed: {built.stderr.strip()[-500:]}")
    version = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False)
    return GoPeerBuild(binary, go_version=version.stdout.strip())


def member_unsuited(member: Member) -> str | None:
    """Why the peers cannot reach this member, if they cannot: they send a bearer token and verify a CA."""
    if not member.token or not member.ca_pem or member.insecure:
        return "the peers send a bearer token and verify the member's CA: this member's credential is not a token with a CA"
    return None


def write_member_json(member: Member, path: Path) -> None:
    """The member's URL, token and CA where the peers read them (member.py's member.json format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": member.url, "token": member.token, "ca": member.ca_pem}))


class PeerProcess:
    """A peer proxy as its own process, serving a member path under `proxy`, ready once it proxies a GET."""

    workers = 1

    def __init__(self, name: str, argv: Sequence[str], proxy: str, tls: ssl.SSLContext, env: dict[str, str] | None = None):
        self.name, self.argv, self.proxy, self.ssl, self.env = name, list(argv), proxy, tls, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.argv, env=self.env)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl)) as s:
            for _ in range(400):
                if self.proc.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(self.proxy + "/api/v1/namespaces/default") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"the {self.name} proxy did not start")

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def go_peer(binary: Path, member_json: Path, gateway: GatewayProcess, *, per_request: bool) -> PeerProcess:
    """The Go peer on the gateway's serving certificate, serving the gateway's URL shape for cluster m1."""
    port, certs = free_port(), gateway.work / "certs"
    argv = [str(binary), "-listen", f"127.0.0.1:{port}", "-cert", str(certs / "apiserver.crt")]
    argv += ["-key", str(certs / "apiserver.key"), "-member", str(member_json), "-cluster", "m1"]
    name = "go_peer_per_request" if per_request else "go_peer"
    url = f"https://127.0.0.1:{port}" + PROXY.format(name="m1")
    env = dict(os.environ, GOMAXPROCS=str(GO_PEER_CORES))
    return PeerProcess(name, argv + (["-transport-per-request"] if per_request else []), url, gateway.ssl, env)


def python_floor(name: str, script: str, member_json: Path, gateway: GatewayProcess) -> PeerProcess:
    """A benchmarks/ floor proxy (minimal_proxy.py, raw_proxy.py) on the gateway's serving certificate (it serves /p/<path>)."""
    port, certs = free_port(), gateway.work / "certs"
    argv = [sys.executable, str(ROOT / "benchmarks" / script), str(member_json), str(port)]
    argv += [str(certs / "apiserver.crt"), str(certs / "apiserver.key")]
    return PeerProcess(name, argv, f"https://127.0.0.1:{port}/p", gateway.ssl)


@contextlib.asynccontextmanager
async def started_peers(
    member: Member, gateway: GatewayProcess, build: GoPeerBuild, work: Path
) -> AsyncIterator[dict[str, PeerProcess]]:
    """Every peer that can run for this member, started (in PEERS order); stopped on the way out."""
    if member_unsuited(member) is not None:
        yield {}
        return
    member_json = work / "peer-member.json"
    write_member_json(member, member_json)
    peers: dict[str, PeerProcess] = {}
    if build.binary is not None:
        peers["go_peer"] = go_peer(build.binary, member_json, gateway, per_request=False)
        peers["go_peer_per_request"] = go_peer(build.binary, member_json, gateway, per_request=True)
    peers["minimal"] = python_floor("minimal", "minimal_proxy.py", member_json, gateway)
    peers["raw"] = python_floor("raw", "raw_proxy.py", member_json, gateway)
    try:
        await asyncio.gather(*(p.start() for p in peers.values()))
        yield peers
    finally:
        for p in peers.values():
            await p.stop()


def unavailable(member: Member, build: GoPeerBuild) -> dict[str, str]:
    """Each peer left out of a run, and why: what the results record in place of its columns."""
    if (reason := member_unsuited(member)) is not None:
        return dict.fromkeys(PEERS, reason)
    return dict.fromkeys(GO_PEERS, build.unavailable) if build.binary is None else {}
