"""Member credentials: client certificates loaded from memory, and exec plugins run sparingly."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import ssl
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.proxy import credentials
from gateway_apiserver.proxy.credentials import (
    CredentialError,
    ExecCredentialProvider,
    ResolvedCredential,
    StaticCredential,
    load_client_certificate,
)
from gateway_apiserver.registry.conversion import secret_to_cluster_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import issue_client_cert, make_ca
from tests.fakes.secrets import cluster_secret

pytestmark = pytest.mark.timeout(30)
V1 = "client.authentication.k8s.io/v1"


def _in(seconds: float) -> str:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def plugin(tmp_path: Path, body: str, name: str = "plugin") -> str:
    """An executable Python plugin; it appends a line to <name>.runs on every run."""
    path = tmp_path / name
    runs = tmp_path / f"{name}.runs"
    header = f"#!{sys.executable}\nimport json, os, sys, time\nopen({str(runs)!r}, 'a').write('run\\n')\n"
    path.write_text(header + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def runs(tmp_path: Path, name: str = "plugin") -> int:
    f = tmp_path / f"{name}.runs"
    return len(f.read_text().splitlines()) if f.exists() else 0


def token_plugin(tmp_path: Path, *, expires: str | None = None, api_version: str = V1, token: str = "exec-token") -> str:
    status: dict[str, Any] = {"token": token}
    if expires:
        status["expirationTimestamp"] = expires
    out = json.dumps({"kind": "ExecCredential", "apiVersion": api_version, "status": status})
    return plugin(tmp_path, f"print({out!r})")


def _dead(pid: int) -> bool:
    """Killed with the plugin's process group: gone, or a zombie waiting for init to reap it."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "\nState:\tZ" in status.read_text()


def config(command: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": V1, "command": command, **extra}


# --- client certificates ---------------------------------------------------------------------


async def test_client_certificate_from_memory_authenticates(tmp_path: Path) -> None:
    async with FakeMemberAPIServer() as member:
        pair = member.client_cert("from-memory")
        ctx = ssl.create_default_context(cadata=member.ca_pem.decode())
        load_client_certificate(ctx, pair.cert_pem, pair.key_pem)
        async with aiohttp.ClientSession() as session, session.get(member.url + "/version", ssl=ctx) as resp:
            assert resp.status == 200
        assert member.requests[-1].user == "cert:from-memory"


def test_fallback_uses_a_private_file_removed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    modes: list[int] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        modes.append(mode)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", spy)
    pair = issue_client_cert(make_ca(), "fallback")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    load_client_certificate(ctx, pair.cert_pem, pair.key_pem)
    assert modes[0] == 0o600  # the key file (later opens are the directory cleanup)
    assert list(tmp_path.iterdir()) == []  # nothing left on disk


def test_mismatched_key_is_a_credential_error() -> None:
    ca = make_ca()
    a, b = issue_client_cert(ca, "a"), issue_client_cert(ca, "b")
    with pytest.raises(CredentialError) as err:
        load_client_certificate(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), a.cert_pem, b.key_pem)
    assert str(err.value) == "the client certificate and key cannot be used: the private key does not match the certificate"


async def test_expired_client_certificate_is_refused_with_its_date() -> None:
    pair = issue_client_cert(make_ca(), "old", expired=True)
    provider = StaticCredential("c1", ResolvedCredential(None, pair.cert_pem, pair.key_pem))
    with pytest.raises(CredentialError, match=r'client certificate of cluster "c1" expired at \d{4}-'):
        await provider.get()


def test_credentials_never_show_in_repr() -> None:
    cred = ResolvedCredential("s3cret-token", b"CERT", b"KEY")
    assert "s3cret" not in repr(cred) and "KEY" not in repr(cred)
    assert cred.headers() == {"Authorization": "Bearer s3cret-token"}


# --- exec plugins ----------------------------------------------------------------------------


async def test_exec_runs_once_for_many_concurrent_calls(tmp_path: Path) -> None:
    provider = ExecCredentialProvider(
        "c1",
        config(
            plugin(
                tmp_path,
                'time.sleep(0.3); print(json.dumps({"kind": "ExecCredential", "apiVersion": "'
                + V1
                + '", "status": {"token": "t1"}}))',
            )
        ),
    )
    results = await asyncio.gather(*(provider.get() for _ in range(50)))
    assert {r.token for r in results} == {"t1"}
    for _ in range(50):
        assert (await provider.get()).token == "t1"
    assert runs(tmp_path) == 1 and provider.runs == 1


async def test_exec_is_cached_until_a_minute_before_expiry(tmp_path: Path) -> None:
    now = [1000.0]
    provider = ExecCredentialProvider("c1", config(token_plugin(tmp_path, expires=_in(600))), clock=lambda: now[0])
    await provider.get()
    now[0] += 500  # 100 s before expiry: still good
    await provider.get()
    assert runs(tmp_path) == 1
    now[0] += 50  # 50 s before expiry: inside the 1-minute margin
    await provider.get()
    assert runs(tmp_path) == 2


async def test_short_lived_credential_is_reused_for_half_its_life(tmp_path: Path) -> None:
    now = [0.0]
    provider = ExecCredentialProvider("c1", config(token_plugin(tmp_path, expires=_in(40))), clock=lambda: now[0])
    await provider.get()
    now[0] += 10
    await provider.get()
    assert runs(tmp_path) == 1
    now[0] += 15
    await provider.get()
    assert runs(tmp_path) == 2


async def test_v1beta1_and_client_certificate_output(tmp_path: Path) -> None:
    pair = issue_client_cert(make_ca(), "exec-user")
    out = {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "status": {"clientCertificateData": pair.cert_pem.decode(), "clientKeyData": pair.key_pem.decode()},
    }
    command = plugin(tmp_path, f"print(json.dumps({out!r}))")
    provider = ExecCredentialProvider("c1", {"apiVersion": out["apiVersion"], "command": command})
    cred = await provider.get()
    assert cred.token is None and cred.client_cert_pem == pair.cert_pem and cred.not_after is not None


async def test_exec_environment_arguments_and_cluster_info(tmp_path: Path) -> None:
    body = """
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    spec = info["spec"]
    parts = [sys.argv[1], os.environ["FROM_CONFIG"], info["apiVersion"], str(spec["interactive"])]
    token = "|".join([*parts, spec["cluster"]["server"]])
    print(json.dumps({"kind": "ExecCredential", "apiVersion": info["apiVersion"], "status": {"token": token}}))
    """
    cfg = config(plugin(tmp_path, body), args=["arg1"], env=[{"name": "FROM_CONFIG", "value": "v"}], provideClusterInfo=True)
    provider = ExecCredentialProvider("c1", cfg, cluster_info={"server": "https://member:6443"})
    assert (await provider.get()).token == f"arg1|v|{V1}|False|https://member:6443"


async def test_failing_plugin_reports_exit_code_and_backs_off(tmp_path: Path) -> None:
    now = [0.0]
    command = plugin(tmp_path, "sys.stderr.write('boom: secret-ish detail\\n'); sys.exit(3)")
    provider = ExecCredentialProvider("c1", config(command), failure_backoff=5, clock=lambda: now[0])
    with pytest.raises(CredentialError, match="failed with exit code 3") as err:
        await provider.get()
    assert "secret-ish" not in str(err.value)
    with pytest.raises(CredentialError):
        await provider.get()
    assert runs(tmp_path) == 1  # not re-run within the backoff
    now[0] += 6
    with pytest.raises(CredentialError):
        await provider.get()
    assert runs(tmp_path) == 2


async def test_hanging_plugin_times_out_and_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    body = f"""
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open({str(pid_file)!r}, "w").write(str(child.pid))
    time.sleep(60)
    """
    provider = ExecCredentialProvider("c1", config(plugin(tmp_path, body)), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(CredentialError, match=r"did not finish within 1s"):
        await provider.get()
    assert time.monotonic() - started < 5  # the 1 s timeout fired, not the plugin's 60 s sleep; 4 s of margin
    child = int(pid_file.read_text())
    await asyncio.sleep(0.2)
    assert _dead(child)


@pytest.mark.parametrize(
    ("stdout", "match"),
    [
        ("hello TOKEN-IN-GARBAGE", "invalid output"),
        ('{"kind": "Other"}', "not an ExecCredential"),
        (
            '{"kind": "ExecCredential", "apiVersion": "TOKEN-IN-GARBAGE", "status": {"token": "x"}}',
            "whose apiVersion is not the configured " + V1,
        ),
        ('{"kind": "ExecCredential", "status": {"token": "TOKEN-IN-GARBAGE"}}', "without apiVersion"),
        ('{"kind": "TOKEN-IN-GARBAGE", "apiVersion": "' + V1 + '", "status": {"token": "x"}}', "not an ExecCredential"),
        ('{"kind": "ExecCredential", "apiVersion": "' + V1 + '"}', "without status"),
        ('{"kind": "ExecCredential", "apiVersion": "' + V1 + '", "status": {}}', "neither status.token"),
        ('{"kind": "ExecCredential", "apiVersion": "' + V1 + '", "status": {"token": ""}}', "empty"),
        ('{"kind": "ExecCredential", "apiVersion": "' + V1 + '", "status": {"clientCertificateData": "x"}}', "both"),
        (
            '{"kind": "ExecCredential", "apiVersion": "'
            + V1
            + '", "status": {"token": "x", "expirationTimestamp": "2001-01-01T00:00:00Z"}}',
            "expired",
        ),
        (
            '{"kind": "ExecCredential", "apiVersion": "'
            + V1
            + '", "status": {"token": "x", "expirationTimestamp": "TOKEN-IN-GARBAGE"}}',
            "an expirationTimestamp that is not an RFC 3339 time",
        ),
        (
            '{"kind": "ExecCredential", "apiVersion": "' + V1 + '", "status": {"token": "TOKEN-IN-GARBAGE\\r\\nX-Injected: 1"}}',
            "a status.token with characters a bearer token cannot have",
        ),
    ],
)
async def test_garbage_output_is_a_clear_error_without_echoing_it(tmp_path: Path, stdout: str, match: str) -> None:
    provider = ExecCredentialProvider("c1", config(plugin(tmp_path, f"print({stdout!r})")))
    with pytest.raises(CredentialError, match=match) as err:
        await provider.get()
    assert "TOKEN-IN-GARBAGE" not in str(err.value)
    assert 'exec plugin "' in str(err.value) and 'cluster "c1"' in str(err.value)


async def test_a_missing_kind_is_filled_in_from_api_version(tmp_path: Path) -> None:
    out = json.dumps({"apiVersion": V1, "status": {"token": "no-kind-token"}})
    provider = ExecCredentialProvider("c1", config(plugin(tmp_path, f"print({out!r})")))
    assert (await provider.get()).token == "no-kind-token"


async def test_missing_command_names_the_install_hint(tmp_path: Path) -> None:
    provider = ExecCredentialProvider("c1", config("no-such-plugin-xyz", installHint="install it from example"))
    with pytest.raises(CredentialError, match="executable not found; install it from example"):
        await provider.get()


async def test_close_cancels_a_running_plugin(tmp_path: Path) -> None:
    provider = ExecCredentialProvider("c1", config(plugin(tmp_path, "time.sleep(60)")), timeout=30)
    waiter = asyncio.create_task(provider.get())
    await asyncio.sleep(0.3)
    await provider.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 5)


async def test_a_cancelled_caller_does_not_cancel_the_shared_run(tmp_path: Path) -> None:
    body = 'time.sleep(0.5); print(json.dumps({"kind": "ExecCredential", "apiVersion": "' + V1 + '", "status": {"token": "t"}}))'
    provider = ExecCredentialProvider("c1", config(plugin(tmp_path, body)))
    first = asyncio.create_task(provider.get())
    second = asyncio.create_task(provider.get())
    await asyncio.sleep(0.1)
    first.cancel()
    assert (await second).token == "t"
    assert runs(tmp_path) == 1
    assert credentials.ExecCredentialProvider is ExecCredentialProvider


def test_cluster_info_carries_the_tls_server_name_as_client_go_does() -> None:
    secret = cluster_secret("c1", endpoint="https://10.0.0.1:6443", token="t", data={"tls-server-name": "member.example"})
    info = credentials.cluster_info(secret_to_cluster_gateway(secret))
    # No ca.crt: the reference connects without verification, and tells the plugin so.
    assert info == {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True, "tls-server-name": "member.example"}
