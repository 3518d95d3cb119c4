"""Hostile Secret values, seen through the real API over TLS: refused with a reason, or served redacted, never leaked.

A Secret is written by whoever may write Secrets in the gateway's namespace; every reader of
clustergateways (GET, LIST, watch, Table) must never see a password or a token from it, and a
value that would split an HTTP request must be refused before it reaches the proxy.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.secrets import cluster_secret

pytestmark = pytest.mark.timeout(60)
BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PASSWORD = "S3cr3t-PW-4711"
PROXY_USER = "proxy-account-17"

USERINFO_REASON = (
    "data['endpoint'] carries credentials in its URL (user:password@host), which are not supported; "
    "put the credential in data['token'], or data['tls.crt'] and data['tls.key']"
)


def leaked_forms(secret: str) -> list[str]:
    """Every way a secret could show up in a response body."""
    return [secret, quote(secret), base64.b64encode(secret.encode()).decode(), json.dumps(secret)[1:-1]]


def assert_not_found(status: int, body: dict[str, Any], name: str, reason: str, *, proxy: bool = False) -> None:
    """The 404 for a Secret refused at conversion; the proxy's message starts with the reference's "no such cluster"."""
    prefix = f"no such cluster {name}: " if proxy else ""
    assert status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            f'{prefix}clustergateways.cluster.core.oam.dev "{name}" not found: '
            f"Secret vela-system/{name} cannot be converted: {reason}"
        ),
        "reason": "NotFound",
        "details": {"name": name, "group": "cluster.core.oam.dev", "kind": "clustergateways"},
        "code": 404,
    }


async def every_body(gw: RunningGateway, names: list[str]) -> list[str]:
    """The bodies of every read a client can make: GET, LIST, Tables with objects, a watch."""
    bodies = []
    async with gw.session() as client:
        paths = [BASE, *(f"{BASE}/{n}" for n in names)]
        for path in paths:
            for headers in ({}, {"Accept": TABLE}):
                for query in ("", "?includeObject=Object"):
                    async with client.get(path + query, headers=headers) as resp:
                        bodies.append(await resp.text())
        for headers in ({}, {"Accept": TABLE}):
            async with client.get(f"{BASE}?watch=1&timeoutSeconds=1", headers=headers) as resp:
                assert resp.status == 200
                bodies.append(await resp.text())  # ends when the server times the watch out
    return bodies


async def test_a_password_in_the_endpoint_url_is_refused_and_never_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = [
        cluster_secret("pw-in-endpoint", endpoint=f"https://admin:{PASSWORD}@127.0.0.1:6443"),
        cluster_secret("token-in-endpoint", endpoint=f"https://{PASSWORD}@127.0.0.1:6443"),
        cluster_secret("ok", endpoint="https://127.0.0.1:6443"),
    ]
    async with running_gateway(tmp_path, ManualSecretSource(secrets)) as gw, gw.session() as client:
        for name in ("pw-in-endpoint", "token-in-endpoint"):
            async with client.get(f"{BASE}/{name}") as resp:
                assert_not_found(resp.status, await resp.json(), name, USERINFO_REASON)
            async with client.get(f"{BASE}/{name}/proxy/version") as resp:
                assert_not_found(resp.status, await resp.json(), name, USERINFO_REASON, proxy=True)
        async with client.get(BASE) as resp:
            assert [item["metadata"]["name"] for item in (await resp.json())["items"]] == ["ok"]
        bodies = await every_body(gw, ["ok", "pw-in-endpoint", "token-in-endpoint"])
    for body in bodies:
        for form in leaked_forms(PASSWORD):
            assert form not in body
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"skipping Secret vela-system/pw-in-endpoint: {USERINFO_REASON}" in logged
    assert PASSWORD not in logged


async def test_a_proxy_url_password_is_served_redacted_everywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    proxy_url = f"http://{PROXY_USER}:{PASSWORD}@127.0.0.1:3128"
    secrets = [cluster_secret("via-proxy", data={"proxy-url": proxy_url})]
    async with running_gateway(tmp_path, ManualSecretSource(secrets)) as gw, gw.session() as client:
        async with client.get(f"{BASE}/via-proxy") as resp:
            assert resp.status == 200
            const = (await resp.json())["spec"]["access"]["endpoint"]["const"]
        assert const == {"address": "https://127.0.0.1:6443", "insecure": True, "proxy-url": "http://REDACTED@127.0.0.1:3128"}
        assert gw.registry.get("via-proxy").proxy_url == proxy_url  # the transport still authenticates to the proxy
        bodies = await every_body(gw, ["via-proxy"])
    assert sum("http://REDACTED@127.0.0.1:3128" in body for body in bodies) >= 6  # GETs, LIST, object Tables, watch
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)
    for body in bodies:
        for secret in (PASSWORD, PROXY_USER):
            for form in leaked_forms(secret):
                assert form not in body


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            {"token": "T\r\nX-Injected: yes"},
            "data['token'] contains control, whitespace or non-ASCII characters; "
            "a bearer token is visible ASCII only (it is sent in the Authorization header)",
        ),
        (
            {"endpoint": "https://127.0.0.1:6443/echo\r\nX-Injected: 1"},
            "data['endpoint'] contains control or whitespace characters; a URL must not",
        ),
        (
            {"proxy-url": "http://127.0.0.1:3128\r\nX-Injected: 1"},
            "data['proxy-url'] contains control or whitespace characters; a URL must not",
        ),
        (
            {"endpoint": "http://127.0.0.1:8080"},
            "endpoint 'http://127.0.0.1:8080' is plain http: the ServiceAccountToken credential would cross "
            "the network unencrypted; use an https:// endpoint",
        ),
    ],
)
async def test_values_that_would_bend_a_request_are_refused_by_get_and_by_the_proxy(
    tmp_path: Path, values: dict[str, str], reason: str
) -> None:
    secrets = [cluster_secret("hostile", data=dict(values)), cluster_secret("ok")]
    async with running_gateway(tmp_path, ManualSecretSource(secrets)) as gw, gw.session() as client:
        async with client.get(f"{BASE}/hostile") as resp:
            assert_not_found(resp.status, await resp.json(), "hostile", reason)
        async with client.get(f"{BASE}/hostile/proxy/api/v1/namespaces") as resp:
            assert_not_found(resp.status, await resp.json(), "hostile", reason, proxy=True)
        async with client.get(BASE) as resp:
            assert [item["metadata"]["name"] for item in (await resp.json())["items"]] == ["ok"]
        async with client.get(f"{BASE}/ok") as resp:
            assert resp.status == 200  # the other clusters are still served


async def test_a_token_file_newline_is_forgiven(tmp_path: Path) -> None:
    """`kubectl create secret --from-file=token` keeps the file's newline; client-go trims token files too."""
    async with running_gateway(tmp_path, ManualSecretSource([cluster_secret("c", token="abc.def\n")])) as gw:
        async with gw.session() as client, client.get(f"{BASE}/c") as resp:
            assert resp.status == 200
        assert gw.registry.get("c").credential.token == "abc.def"
