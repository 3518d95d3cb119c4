"""The proxy subresource end to end: real kubectl and aiohttp clients, TLS everywhere, loopback only.

client --TLS--> gateway (in-process) --TLS, pooled--> FakeMemberAPIServer (in-process, own CAs)
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from yarl import URL

from tests.fakes.forward_proxies import http_connect_proxy, socks5_proxy
from tests.fakes.gateway import kubectl_with
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import PROXY, eventually, exec_secret, gateway, pool, proxied, status_of, token_secret, use_both_lanes
from tests.fakes.secrets import cluster_secret

# Every test twice: plain proxied requests on the fast lane, then on aiohttp's path (--proxy-fast-path=false).
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("use_both_lanes")]
CALLER_TOKEN = "caller-token-must-not-leak"
NS = "/api/v1/namespaces/default"
__all__ = ["use_both_lanes"]  # the fixture, imported so pytest finds it


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """A member cluster behind a Rancher-style path prefix."""
    async with FakeMemberAPIServer(prefix="/k8s/clusters/c-abc") as server:
        yield server


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def vm_rss_kb() -> int:
    return next(int(line.split()[1]) for line in _read("/proc/self/status").splitlines() if line.startswith("VmRSS:"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- kubectl ----------------------------------------------------------------------------------


async def kubectl(kubeconfig: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    return await kubectl_with(kubeconfig, *args, stdin=stdin)


async def test_kubectl_through_the_proxy(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "m1", "cluster": {"server": gw.url + PROXY.format("m1"), "certificate-authority": str(gw.ca_file)}}
            ],
            "users": [{"name": "u", "user": {"token": CALLER_TOKEN}}],
            "contexts": [{"name": "m1", "context": {"cluster": "m1", "user": "u", "namespace": "default"}}],
            "current-context": "m1",
        }
        kc = tmp_path / "proxy.kubeconfig"
        kc.write_text(yaml.safe_dump(config))

        async def ok(*args: str, stdin: bytes | None = None) -> str:
            code, out, err = await kubectl(kc, *args, stdin=stdin)
            assert code == 0, f"kubectl {' '.join(args)} failed: {err}"
            return out

        def manifest(name: str, **data: str) -> bytes:
            return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}).encode()

        def stored(name: str) -> dict[str, Any] | None:
            obj = member.store.objects["configmaps"].get(("default", name))
            return obj.get("data") if obj else None

        await ok("create", "configmap", "cm1", "--from-literal=a=1")
        assert json.loads(await ok("get", "configmap", "cm1", "-o", "json"))["data"] == {"a": "1"}
        await ok("apply", "--validate=false", "-f", "-", stdin=manifest("cm2", b="2"))
        await ok(
            "apply", "--validate=false", "-f", "-", stdin=manifest("cm2", b="3")
        )  # client-side apply: a strategic merge PATCH
        assert stored("cm2") == {"b": "3"}
        await ok("apply", "--validate=false", "--server-side", "-f", "-", stdin=manifest("cm3", c="1"))
        await ok("apply", "--validate=false", "--server-side", "-f", "-", stdin=manifest("cm3", c="2"))
        assert stored("cm3") == {"c": "2"}
        assert member.managers[("default", "cm3")] == ["kubectl"]
        await ok("apply", "--validate=false", "--server-side", "--dry-run=server", "-f", "-", stdin=manifest("cm4", d="1"))
        await ok("create", "configmap", "cm5", "--from-literal=e=1", "--dry-run=server")
        assert stored("cm4") is None and stored("cm5") is None
        assert any("dryRun=All" in r.query_string for r in member.requests)
        await ok("patch", "configmap", "cm1", "--type=merge", "-p", '{"data":{"a":"9"}}')
        assert stored("cm1") == {"a": "9"}
        names = (await ok("get", "configmaps", "-o", "name")).split()
        assert names == ["configmap/cm1", "configmap/cm2", "configmap/cm3"]
        await ok("delete", "configmap", "cm1")
        assert stored("cm1") is None
        member.add_pod("default", "p1")
        logs = await ok("logs", "-f", "pod/p1")
        assert len(logs.splitlines()) == member.log_lines

    assert member.requests
    for record in member.requests:
        assert record.headers.getall("Authorization") == [f"Bearer {member.token}"]
        assert CALLER_TOKEN not in json.dumps(list(record.headers.items()))
        assert record.raw_path.startswith("/k8s/clusters/c-abc/")


# --- streaming --------------------------------------------------------------------------------


async def test_watch_events_arrive_while_the_stream_is_open(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member), request_timeout=0.5) as gw, gw.session() as client:
        rv = member.store.rv
        path = proxied("m1", f"{NS}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=30")
        async with client.get(path) as resp:
            assert resp.status == 200
            for i in range(3):
                await asyncio.sleep(0.7)  # longer than request_timeout: a watch is never cut by it
                member.store.create("configmaps", "default", {"metadata": {"name": f"w{i}"}})
                # Forwarded as it happens: a buffered stream would hold it until timeoutSeconds (30 s).
                line = await asyncio.wait_for(resp.content.readline(), 5.0)
                event = json.loads(line)
                assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", f"w{i}")
                assert not resp.content.at_eof()


async def test_follow_logs_stream_line_by_line(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    member.log_lines, member.log_interval = 8, 0.2
    async with gateway(tmp_path, token_secret("m1", member), request_timeout=0.5) as gw, gw.session() as client:
        started = time.monotonic()
        async with client.get(proxied("m1", f"{NS}/pods/p1/log?follow=true")) as resp:
            arrivals = []
            async for line in resp.content:
                arrivals.append(time.monotonic() - started)
                assert line.startswith(b"line ")
        assert len(arrivals) == 8
        assert arrivals[-1] - arrivals[0] > 0.8  # lines came as written, 0.2 s apart, not all at once at the end
        assert arrivals[-1] > 1.2  # and the stream outlived request_timeout


async def test_large_list_streams_in_constant_memory(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session() as client:

        async def fetch(mb: int) -> int:
            size = 0
            async with client.get(proxied("m1", f"/apis/bulk.test/v1/items?mb={mb}")) as resp:
                assert resp.status == 200
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
            return size

        await fetch(5)  # warm up buffers and allocator pools
        gc.collect()
        baseline, peak = vm_rss_kb(), 0
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, vm_rss_kb())
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        size = await fetch(50)
        done.set()
        await sampler
        assert size >= 50 * 1024 * 1024
        growth_mb = (peak - baseline) / 1024
        # Member, gateway and client share this process: all three stream, none holds the list.
        # Holding it would add 50 MB or more; half of that is the bound (figures: ./dev bench proxy, streaming).
        assert growth_mb < 25, f"RSS grew {growth_mb:.1f} MB for a 50 MB list"


async def test_request_bodies_stream_to_the_member(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session() as client:

        async def body() -> AsyncIterator[bytes]:
            yield b"a" * 65536
            # The member sees the first part before the client sends the rest: nothing buffers the body.
            await eventually(lambda: member.upload_progress >= 65536, 3.0)
            for _ in range(16):
                yield b"b" * 65536

        async with client.post(proxied("m1", "/upload"), data=body()) as resp:
            assert resp.status == 200
            assert (await resp.json())["bytes"] == 17 * 65536


async def test_client_disconnect_closes_the_upstream(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw:
        async with gw.session() as client:
            resp = await client.get(proxied("m1", f"{NS}/configmaps?watch=true"))
            assert resp.status == 200
            await eventually(lambda: member.open_streams == 1)
            resp.close()  # drop the connection mid-watch
        await eventually(lambda: member.cancelled == ["watch"], 3.0)
        assert member.open_streams == 0
        await eventually(lambda: all(t.active == 0 for t in pool(gw)._transports.values()))


async def test_a_broken_or_slow_upstream_never_looks_complete(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member), request_timeout=0.5) as gw, gw.session() as client:
        started = time.monotonic()
        # The request timeout strikes mid-body (the client reads slowly at first): the client is cut, not ended
        # cleanly. 100 MB, because loopback socket buffers and the client's own can hold tens of MB.
        async with client.get(proxied("m1", "/apis/bulk.test/v1/items?mb=100")) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for _ in resp.content.iter_chunked(65536):
                    if time.monotonic() - started < 1.0:  # twice the request timeout: it must strike
                        await asyncio.sleep(0.05)
        # The member dies mid-watch: the client sees the stream break, not a clean end.
        async with client.get(proxied("m1", f"{NS}/configmaps?watch=true")) as resp:
            member.store.create("configmaps", "default", {"metadata": {"name": "before"}})
            assert b"before" in await asyncio.wait_for(resp.content.readline(), 2)
            await member.stop()
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.content.read(), 5)


async def test_nothing_leaks(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member), idle_timeout=0.3) as gw:

        async def burst() -> None:
            async with gw.session() as client:

                async def get(path: str) -> None:
                    async with client.get(proxied("m1", path)) as resp:
                        await resp.read()

                async def abandon(path: str) -> None:
                    resp = await client.get(proxied("m1", path))
                    await resp.content.readline()
                    resp.close()

                await asyncio.gather(
                    *(get("/version") for _ in range(20)),
                    *(get("/echo/x") for _ in range(10)),
                    *(abandon(f"{NS}/configmaps?watch=true") for _ in range(5)),
                    *(abandon(f"{NS}/pods/p/log?follow=true") for _ in range(5)),
                )
            await eventually(lambda: member.open_streams == 0)

        def settled_at(fds: int, tasks: int) -> Callable[[], bool]:
            return lambda: open_fds() <= fds and len(asyncio.all_tasks()) <= tasks

        member.store.create("configmaps", "default", {"metadata": {"name": "x"}})
        await burst()
        await asyncio.sleep(1.0)  # idle keep-alive connections expire
        fds, tasks = open_fds(), len(asyncio.all_tasks())
        for _ in range(3):
            await burst()
        await eventually(settled_at(fds, tasks), 5.0)


# --- paths, headers and pass-through ------------------------------------------------------------


async def test_path_traversal_is_400_and_the_prefix_is_kept(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session() as client:
        for raw in ("/echo/../../../x", "/%2e%2e/%2e%2e/x", "/echo/a%2Fb", "/echo/%252e%252e/x", "/..%5c..%5cx", "//host/x"):
            async with client.get(URL(gw.url + proxied("m1", raw), encoded=True)) as resp:
                assert resp.status == 400, raw
                status = await resp.json()
                assert status["kind"] == "Status" and status["reason"] == "BadRequest"
        assert member.requests == []
        async with client.get(
            URL(gw.url + proxied("m1", "/echo/a%20b/c?x=%2F&__dryRun=All&impersonate=true"), encoded=True)
        ) as resp:
            echo = await resp.json()
        assert echo["path"] == "/k8s/clusters/c-abc/echo/a%20b/c"
        assert echo["query"] == "x=%2F&dryRun=All"


async def test_headers_to_and_from_the_member(
    member: FakeMemberAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session() as client:
        sent = {
            "Authorization": f"Bearer {CALLER_TOKEN}",
            "X-Remote-User": "admin",
            "X-Remote-Group": "system:masters",
            "Impersonate-User": "root",
            "Audit-ID": "audit-abc-1",
            "Connection": "X-Drop-Me",
            "X-Drop-Me": "1",
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
        }
        async with client.get(proxied("m1", "/echo/h"), headers=sent) as resp:
            assert resp.headers["Audit-Id"] == "audit-abc-1"
            echo = await resp.json()
        got = [(k.lower(), v) for k, v in echo["headers"]]
        names = {k for k, _ in got}
        assert ("authorization", f"Bearer {member.token}") in got
        assert not {"x-remote-user", "x-remote-group", "impersonate-user", "x-drop-me"} & names
        assert ("audit-id", "audit-abc-1") in got
        assert ("x-forwarded-proto", "https") in got and ("x-forwarded-for", "127.0.0.1") in got
        assert dict(got)["x-forwarded-host"].startswith("127.0.0.1:")
        assert ("accept", "application/json;as=Table;v=v1;g=meta.k8s.io") in got
        assert "user-agent" in names and dict(got)["user-agent"].startswith("Python/")  # the client's own, not added

        # The server's real impersonation hook: with ?impersonate=true (stripped before forwarding)
        # the caller, here standalone mode's local user, is impersonated.
        async with client.get(proxied("m1", "/echo/h?impersonate=true"), headers=sent) as resp:
            echo = await resp.json()
        got = [(k.lower(), v) for k, v in echo["headers"]]
        assert [(k, v) for k, v in got if k.startswith("impersonate-")] == [
            ("impersonate-user", "standalone"),
            ("impersonate-group", "system:masters"),
            ("impersonate-group", "system:authenticated"),
        ]
        assert "impersonate" not in echo.get("query", "")


async def test_member_answers_pass_through(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session(auto_decompress=False) as client:
        for code in (400, 404, 409, 500, 503):
            async with client.post(proxied("m1", f"/fail/{code}")) as resp:
                assert resp.status == code and resp.headers["X-Member"] == "yes"
                assert (await resp.json())["message"] == f"member says {code}"
        async with client.get(proxied("m1", "/gzip"), headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            raw = await resp.read()
            assert raw[:2] == b"\x1f\x8b"  # still compressed
        async with client.head(proxied("m1", "/version")) as resp:
            assert resp.status == 200 and int(resp.headers["Content-Length"]) > 0
            assert await resp.read() == b""
        for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
            async with client.request(method, proxied("m1", "/echo/m"), data=b"{}") as resp:
                echo = await resp.json()
                assert (echo["method"], echo["body"]) == (method, "{}")


async def test_keep_alive_one_connection_for_many_requests(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session() as client:
        for _ in range(40):
            async with client.get(proxied("m1", "/version")) as resp:
                assert resp.status == 200
        assert len(member.connections) == 1  # one TCP connection, so one TLS handshake
        assert pool(gw).built == 1


async def test_transport_is_rebuilt_only_when_the_connection_changes(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member)) as gw, gw.session() as client:

        async def call() -> str:
            async with client.get(proxied("m1", "/echo/x")) as resp:
                headers: list[list[str]] = (await resp.json())["headers"]
                return {k.lower(): v for k, v in headers}["authorization"]

        await call()
        first = pool(gw)._transports["m1"]
        annotated = {"status.cluster.core.oam.dev/healthy": "true"}
        gw.registry.apply("MODIFIED", token_secret("m1", member, rv=2, annotations=annotated))
        await call()
        assert pool(gw).built == 1 and len(member.connections) == 1
        member.tokens["rotated"] = "member-admin"
        gw.registry.apply("MODIFIED", token_secret("m1", member, rv=3, token="rotated"))
        assert await call() == "Bearer rotated"
        assert pool(gw).built == 2
        await eventually(lambda: first.session.closed)  # retired once idle
        gw.registry.apply("DELETED", token_secret("m1", member, rv=4))
        async with client.get(proxied("m1", "/version")) as resp:
            assert resp.status == 404


async def test_x509_client_certificate(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    pair = member.client_cert("gateway-x509")
    secret = token_secret(
        "m1", member, credential_type="X509Certificate", data={"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    )
    async with gateway(tmp_path, secret) as gw, gw.session() as client:
        async with client.get(proxied("m1", "/version")) as resp:
            assert resp.status == 200
        assert member.requests[-1].user == "cert:gateway-x509"
        assert "Authorization" not in member.requests[-1].headers


# --- errors -----------------------------------------------------------------------------------


async def test_unknown_cluster_and_cluster_proxy(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    konnectivity = cluster_secret("kp", labels={"cluster.core.oam.dev/cluster-endpoint-type": "ClusterProxy"})
    async with gateway(tmp_path, token_secret("m1", member), konnectivity) as gw:
        code, status = await status_of(gw, proxied("nope", "/version"))
        assert code == 404 and status["reason"] == "NotFound"
        code, status = await status_of(gw, proxied("kp", "/version"))
        assert code == 503 and "without a Konnectivity proxy-server (--proxy-host)" in status["message"]


async def test_request_timeout_for_non_streaming_calls(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with gateway(tmp_path, token_secret("m1", member), request_timeout=0.5) as gw:
        code, status = await status_of(gw, proxied("m1", "/slow?seconds=5"))
        assert code == 504 and '"m1" did not answer within 0.5s' in status["message"]
        await eventually(lambda: member.cancelled == ["slow"])


async def test_expired_client_certificate_is_503(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    pair = member.client_cert("old", expired=True)
    secret = token_secret(
        "m1", member, credential_type="X509Certificate", data={"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    )
    async with gateway(tmp_path, secret) as gw:
        code, status = await status_of(gw, proxied("m1", "/version"))
        assert code == 503 and "expired at" in status["message"] and '"m1"' in status["message"]
    assert member.requests == []


async def test_exec_credentials(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    def credential(status: dict[str, str]) -> str:
        return json.dumps({"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1", "status": status})

    good = credential({"token": member.token})
    pair = member.client_cert("exec-cert-user")
    cert_out = credential({"clientCertificateData": pair.cert_pem.decode(), "clientKeyData": pair.key_pem.decode()})
    secrets = [
        exec_secret(tmp_path, member, "good", f"print({good!r})"),
        exec_secret(tmp_path, member, "fails", "sys.exit(2)"),
        exec_secret(tmp_path, member, "hangs", "time.sleep(30)"),
        exec_secret(tmp_path, member, "garbage", "print('not json at all')"),
        exec_secret(tmp_path, member, "certexec", f"print({cert_out!r})"),
    ]
    async with gateway(tmp_path, *secrets, exec_timeout=1.0) as gw, gw.session() as client:

        async def get(path: str) -> int:
            async with client.get(path) as resp:
                await resp.read()
                return resp.status

        assert set(await asyncio.gather(*(get(proxied("good", "/version")) for _ in range(20)))) == {200}
        for _ in range(10):
            assert await get(proxied("good", "/version")) == 200
        assert (tmp_path / "good.runs").read_text() == "x"  # one plugin run for 30 requests
        for _ in range(3):
            assert await get(proxied("certexec", "/version")) == 200
        assert member.requests[-1].user == "cert:exec-cert-user"
        for name, reason in (
            ("fails", "failed with exit code 2"),
            ("hangs", "did not finish within 1s"),
            ("garbage", "invalid output"),
        ):
            code, status = await status_of(gw, proxied(name, "/version"))
            assert code == 503, name
            assert reason in status["message"] and f'"{name}"' in status["message"]


# --- proxy-url --------------------------------------------------------------------------------


async def test_proxy_url_http_connect_and_socks5(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    connect_log: list[str] = []
    socks_log: list[str] = []
    async with http_connect_proxy(connect_log) as hport, socks5_proxy(socks_log) as sport:
        secrets = [
            token_secret("viahttp", member, data={"proxy-url": f"http://user:pw@127.0.0.1:{hport}"}),
            token_secret("viasocks", member, data={"proxy-url": f"socks5://127.0.0.1:{sport}"}),
        ]
        async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
            for name in ("viahttp", "viasocks"):
                for _ in range(3):
                    async with client.get(proxied(name, "/version")) as resp:
                        assert resp.status == 200, name
                # An upgrade dials its own connection: through the same proxy (the member refuses it here).
                upgrade = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
                async with client.post(proxied(name, "/echo/exec"), headers=upgrade) as resp:
                    assert resp.status == 200 and (await resp.json())["method"] == "POST", name
    assert len(connect_log) == 2  # one kept-alive tunnel for the session, one for the upgrade
    for head in connect_log:
        assert head.startswith(f"CONNECT 127.0.0.1:{member.port} ")
        assert f"Proxy-Authorization: Basic {base64.b64encode(b'user:pw').decode()}" in head
    assert socks_log == [f"127.0.0.1:{member.port}"] * 2
    assert member.requests and all(r.headers["Authorization"] == f"Bearer {member.token}" for r in member.requests)
