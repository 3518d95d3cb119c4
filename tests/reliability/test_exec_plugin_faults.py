"""Threat model: a cluster's exec credential plugin misbehaves, or leaks.

A plugin is a program the gateway runs with a member's trust; whatever it prints may be a
secret. So: its output never reaches a log line or a client, whatever it does; a plugin that
hangs is bounded and retried, never waited on forever; a broken one gets a 503 Status that
names the plugin's command (never its arguments or environment) and what went wrong; and the
other clusters are served meanwhile. A member's 401 drops the credential, as client-go does;
a request without a body is retried once with a fresh one, so a rotation is invisible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import exec_runs, exec_secret, gateway, proxied, status_body, token_secret

pytestmark = pytest.mark.timeout(60)
V1 = "client.authentication.k8s.io/v1"
SECRET = "s3cr3t-plugin-output-must-never-leak"


def credential(token: str, **extra: Any) -> str:
    """An ExecCredential as a plugin prints it."""
    return json.dumps({"kind": "ExecCredential", "apiVersion": V1, "status": {"token": token}, **extra})


def plugin_failed(name: str, how: str) -> dict[str, Any]:
    """The Status for a failed plugin run."""
    return status_body(503, f'cluster "{name}" has no usable credential: exec plugin "python3" for cluster "{name}" {how}')


async def fetch(client: aiohttp.ClientSession, name: str) -> tuple[int, dict[str, Any], str]:
    """GET /version on cluster `name`: status, JSON body, and the raw response (headers and body)."""
    async with client.get(proxied(name, "/version")) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw), json.dumps(list(resp.headers.items())) + raw.decode()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the log records hold: formatted messages, arguments and tracebacks."""
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


async def test_plugin_stderr_never_reaches_the_log_or_the_client(
    member: FakeMemberAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = credential(member.token)
    secrets = [
        exec_secret(tmp_path, member, "fails", f"sys.stderr.write('token: {SECRET}\\n'); print('{SECRET}'); sys.exit(1)"),
        exec_secret(tmp_path, member, "works", f"sys.stderr.write('debug: {SECRET}\\n'); print({good!r})"),
    ]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        code, body, raw = await fetch(client, "fails")
        assert (code, body) == (503, plugin_failed("fails", "failed with exit code 1"))
        assert SECRET not in raw
        code, _, raw = await fetch(client, "works")
        assert code == 200 and SECRET not in raw
    assert caplog.records, "the failure must be logged (as facts)"
    assert SECRET not in logged(caplog)
    assert 'exec plugin "python3" for cluster "fails" failed with exit code 1 (stderr: ' in logged(caplog)


async def test_a_hanging_plugin_is_bounded_retried_and_hurts_nobody_else(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    secrets = [
        exec_secret(tmp_path, member, "hangs", "time.sleep(60)"),
        exec_secret(tmp_path, member, "works", f"print({credential(member.token)!r})"),
    ]
    # The timeout leaves a healthy plugin (a Python start) ample time on a loaded machine.
    async with gateway(tmp_path, *secrets, exec_timeout=1.5, exec_failure_backoff=1.0) as gw, gw.session() as client:
        started = time.monotonic()
        (code, body, _), *others = await asyncio.gather(fetch(client, "hangs"), *(fetch(client, "works") for _ in range(5)))
        assert (code, body) == (503, plugin_failed("hangs", "did not finish within 1.5s"))
        assert 1.5 <= time.monotonic() - started < 3.0
        assert [c for c, _, _ in others] == [200] * 5
        # Within the backoff the failure is answered at once, without a new run.
        (code, body, _), took = await _timed(fetch(client, "hangs"))
        assert (code, body) == (503, plugin_failed("hangs", "did not finish within 1.5s")) and took < 0.5
        assert exec_runs(tmp_path, "hangs") == 1
        # After it, the next request runs the plugin again (the hung one was killed, not awaited).
        await asyncio.sleep(1.0)
        code, body, _ = await fetch(client, "hangs")
        assert (code, body) == (503, plugin_failed("hangs", "did not finish within 1.5s"))
        assert exec_runs(tmp_path, "hangs") == 2
        assert exec_runs(tmp_path, "works") == 1


async def _timed(awaitable: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("output", "how"),
    [
        (f"{SECRET} is not JSON", f"printed invalid output ({len(SECRET) + 13} bytes, not an ExecCredential JSON)"),
        (
            json.dumps({"kind": "ExecCredential", "apiVersion": V1, "spec": {"x": SECRET}}),
            "returned an ExecCredential without status",
        ),
        (json.dumps({"kind": SECRET, "apiVersion": V1, "status": {"token": "t"}}), "printed JSON that is not an ExecCredential"),
        (
            json.dumps({"kind": "ExecCredential", "apiVersion": SECRET, "status": {"token": "t"}}),
            f"returned an ExecCredential whose apiVersion is not the configured {V1}",
        ),
        (
            json.dumps({"kind": "ExecCredential", "status": {"token": SECRET}}),
            "returned an ExecCredential without apiVersion",
        ),
        (
            json.dumps({"kind": "ExecCredential", "apiVersion": V1, "status": {"token": "t", "expirationTimestamp": SECRET}}),
            "returned an expirationTimestamp that is not an RFC 3339 time",
        ),
    ],
)
async def test_garbage_output_is_a_clear_status_without_the_output(
    member: FakeMemberAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, output: str, how: str
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [
        exec_secret(tmp_path, member, "garbage", f"print({output!r})"),
        token_secret("healthy", member),
    ]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        (code, body, raw), (healthy_code, _, _) = await asyncio.gather(fetch(client, "garbage"), fetch(client, "healthy"))
    assert (code, body) == (503, plugin_failed("garbage", how))
    assert healthy_code == 200
    assert SECRET not in raw and SECRET not in logged(caplog)


async def test_a_failing_plugin_is_a_clear_status(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    secrets = [exec_secret(tmp_path, member, "fails", "sys.exit(1)"), token_secret("healthy", member)]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        (code, body, _), (healthy_code, _, _) = await asyncio.gather(fetch(client, "fails"), fetch(client, "healthy"))
    assert (code, body) == (503, plugin_failed("fails", "failed with exit code 1"))
    assert healthy_code == 200


def counting_plugin(tmp_path: Path, name: str) -> str:
    """A plugin body whose n-th run prints the token `exec-token-<n>`."""
    return (
        f"n = len(open({str(tmp_path / (name + '.runs'))!r}).read())\n"
        f"print(json.dumps({{'kind': 'ExecCredential', 'apiVersion': {V1!r}, 'status': {{'token': f'exec-token-{{n}}'}}}}))"
    )


async def test_a_member_401_to_a_bodiless_request_runs_the_plugin_again_and_retries_once(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    member.tokens["exec-token-1"] = "plugin-user"
    secrets = [exec_secret(tmp_path, member, "rotating", counting_plugin(tmp_path, "rotating"))]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        code, _, _ = await fetch(client, "rotating")
        assert code == 200
        # The member revokes the first token and accepts the next one: the caller never sees the 401.
        del member.tokens["exec-token-1"]
        member.tokens["exec-token-2"] = "plugin-user"
        for _ in range(3):
            code, _, _ = await fetch(client, "rotating")
            assert code == 200
    assert exec_runs(tmp_path, "rotating") == 2
    sent = [r.headers["Authorization"] for r in member.requests]
    assert sent == ["Bearer exec-token-1", "Bearer exec-token-1"] + ["Bearer exec-token-2"] * 3


async def test_a_member_401_to_a_request_with_a_body_is_answered_and_the_next_request_is_fresh(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    member.tokens["exec-token-1"] = "plugin-user"
    secrets = [exec_secret(tmp_path, member, "rotating", counting_plugin(tmp_path, "rotating"))]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        assert (await fetch(client, "rotating"))[0] == 200
        del member.tokens["exec-token-1"]
        member.tokens["exec-token-2"] = "plugin-user"
        # A body cannot be replayed (it is streamed): the member's own 401 is the answer.
        async with client.post(proxied("rotating", "/upload"), data=b"x" * 1000) as resp:
            body = await resp.json()
        assert (resp.status, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")
        assert (await fetch(client, "rotating"))[0] == 200
    assert exec_runs(tmp_path, "rotating") == 2
    sent = [r.headers["Authorization"] for r in member.requests]
    assert sent == ["Bearer exec-token-1", "Bearer exec-token-1", "Bearer exec-token-2"]


async def test_a_retry_is_made_once_only(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    member.tokens["exec-token-1"] = "plugin-user"
    secrets = [exec_secret(tmp_path, member, "rotating", counting_plugin(tmp_path, "rotating"))]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        assert (await fetch(client, "rotating"))[0] == 200
        del member.tokens["exec-token-1"]  # and the member accepts no later token either
        code, body, _ = await fetch(client, "rotating")
        assert (code, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")  # the member's own 401
    assert exec_runs(tmp_path, "rotating") == 2
    sent = [r.headers["Authorization"] for r in member.requests]
    assert sent == ["Bearer exec-token-1", "Bearer exec-token-1", "Bearer exec-token-2"]


async def test_a_401_to_an_upgrade_also_refreshes_the_credential(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    member.tokens["exec-token-1"] = "plugin-user"
    secrets = [exec_secret(tmp_path, member, "rotating", counting_plugin(tmp_path, "rotating"))]
    async with gateway(tmp_path, *secrets) as gw, gw.session() as client:
        assert (await fetch(client, "rotating"))[0] == 200
        del member.tokens["exec-token-1"]
        member.tokens["exec-token-2"] = "plugin-user"
        upgrade = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
        async with client.post(proxied("rotating", "/api/v1/namespaces/default/pods/p1/exec"), headers=upgrade) as resp:
            assert (resp.status, (await resp.json())["reason"]) == (401, "Unauthorized")  # relayed, no tunnel
        assert (await fetch(client, "rotating"))[0] == 200
    assert exec_runs(tmp_path, "rotating") == 2
    sent = [r.headers["Authorization"] for r in member.requests]
    assert sent == ["Bearer exec-token-1", "Bearer exec-token-1", "Bearer exec-token-2"]
