"""`--log-format text|json`: every line has a time, a level, a logger and a message, and a line written
while a request is handled names that request (its audit ID, cluster and user), in both formats."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.config import parse_config
from gateway_apiserver.observability.logs import JsonFormatter, TextFormatter
from gateway_apiserver.security.identity import UserInfo
from tests.fakes.hosting import CLUSTERGATEWAYS, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.log_capture import PARSERS, captured_log, parse_json_lines
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import eventually, exec_secret, identity_gateway, proxied, status_body, token_secret

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]
TOKENS = {"alice-token": UserInfo("alice", groups=("devs",))}
EXEC_FAILED = 'exec plugin "python3" for cluster "{}" failed with exit code 1 (stderr: 0 bytes, not logged)'


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    """The member every cluster of these tests points at."""
    async with FakeMemberAPIServer() as server:
        yield server


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_lines_written_while_serving_a_request_name_its_audit_id_cluster_and_user(
    member: FakeMemberAPIServer, tmp_path: Path, log_format: str
) -> None:
    secrets = [
        exec_secret(tmp_path, member, "east", "sys.exit(1)"),
        exec_secret(tmp_path, member, "west", "sys.exit(1)"),
        token_secret("healthy", member),
    ]
    with captured_log(log_format) as output:
        async with identity_gateway(tmp_path, *secrets, users=TOKENS) as gw:
            audit_ids = {}
            # One keep-alive connection: a request's fields never stick to the next one on it.
            async with gw.session(headers={"Authorization": "Bearer alice-token"}) as client:
                for cluster in ("east", "west", "healthy"):
                    async with client.get(proxied(cluster, "/version")) as resp:
                        await resp.read()
                        assert resp.status == (200 if cluster == "healthy" else 503)
                        audit_ids[cluster] = resp.headers["Audit-Id"]
            access = '"gateway_apiserver.access"' if log_format == "json" else " gateway_apiserver.access: "
            await eventually(lambda: output.getvalue().count(access) >= 3)
    lines = PARSERS[log_format](output.getvalue())

    for cluster in ("east", "west"):
        (failure,) = [line for line in lines if line["message"] == EXEC_FAILED.format(cluster)]
        assert failure["level"] == "WARNING" and failure["logger"] == "gateway_apiserver.proxy.credentials"
        assert (failure["auditID"], failure["cluster"], failure["user"]) == (audit_ids[cluster], cluster, "alice")
    access_lines = [line for line in lines if line["logger"] == "gateway_apiserver.access"]
    if log_format == "json":  # a text line's message is the access record as compact JSON (its fields, parsed)
        assert {line["message"] for line in access_lines} == {"request"}
    assert [(line["auditID"], line["cluster"], line["user"], line["status"]) for line in access_lines] == [
        (audit_ids["east"], "east", "alice", 503),
        (audit_ids["west"], "west", "alice", 503),
        (audit_ids["healthy"], "healthy", "alice", 200),
    ]
    # A line about no request (the serving certificate made at start-up) has no request fields.
    (startup,) = [line for line in lines if line["logger"] == "gateway_apiserver.security.tls"]
    assert startup["message"].startswith("generated a self-signed serving certificate for ")
    assert not {"auditID", "cluster", "user"} & startup.keys()


def record(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    """A WARNING record of logger `gateway_apiserver.test`, as `log.warning(message, *args)` makes it."""
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("gateway_apiserver.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        line = JsonFormatter().format(record("failed on %s", "c1", exc=exc))
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("WARNING", "gateway_apiserver.test", "failed on c1")
    assert parsed["error"].startswith("Traceback (most recent call last):") and parsed["error"].endswith("ValueError: boom")


def test_a_text_line_stays_one_line_whatever_the_client_chose() -> None:
    entry = record("client left during GET %s", "/api/x\n2026-12-03 10:00:00,000 ERROR forged: \x1b[31m")
    entry.structured_fields = {"auditID": "a-1", "cluster": "c 1", "user": 'eve"\nFAKE LINE'}
    line = TextFormatter().format(entry)
    assert line.endswith(
        " gateway_apiserver.test: client left during GET /api/x\\n2026-12-03 10:00:00,000 ERROR forged: \\u001b[31m"
        ' auditID="a-1" cluster="c 1" user="eve\\"\\nFAKE LINE"'
    )
    assert "\n" not in line


def test_the_log_format_flag_defaults_to_text_and_accepts_json() -> None:
    assert parse_config([]).log_format == "text"
    assert parse_config(["--log-format", "json"]).log_format == "json"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway_apiserver", "--log-format", "yaml"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith("argument --log-format: invalid choice: 'yaml' (choose from 'text', 'json')")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_command_writes_json_lines_at_the_verbosity_asked(tmp_path: Path) -> None:
    port = free_port()
    args = ["--standalone", "--secrets-dir", str(REPO / "examples/clusters"), "--secure-port", str(port)]
    args += ["--cert-dir", str(tmp_path / "certs"), "--log-format", "json", "-v", "4"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway_apiserver", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        for attempt in range(150):  # each attempt its own audit ID: an early one may get 503 before the 200
            audit_id = f"cli-readyz-{attempt}"
            try:
                ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "apiserver.crt"))
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"https://127.0.0.1:{port}/readyz", ssl=ctx, headers={"Audit-ID": audit_id}) as r,
                ):
                    if r.status == 200:
                        break
            except (aiohttp.ClientError, ssl.SSLError, OSError):
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the gateway did not become ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    lines = parse_json_lines(err.decode())
    assert "DEBUG" in {line["level"] for line in lines}  # -v 4 logs debug messages
    (access,) = [line for line in lines if line["logger"] == "gateway_apiserver.access" and line["auditID"] == audit_id]
    assert (access["message"], access["path"], access["status"], access["user"]) == ("request", "/readyz", 200, "standalone")
    assert lines[-1]["message"] == "shut down"


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_every_line_of_a_request_names_the_user_its_access_line_names(
    kube_apiserver: FakeKubeAPIServer, tmp_path: Path, log_format: str
) -> None:
    """Before authentication, and when it refuses the caller (401), a request has no user: "" on all its
    lines. An anonymous caller is `system:anonymous` on all its lines, as in the kube-apiserver's audit log."""
    refused, anonymous = "refused-token-1", "anonymous-1"
    with captured_log(log_format) as output:
        async with hosting_gateway(tmp_path, kube_apiserver) as gw, gw.session() as client:
            headers = {"Authorization": "Bearer not-a-token-of-this-cluster", "Audit-ID": refused}
            async with client.get(CLUSTERGATEWAYS, headers=headers) as resp:
                assert (resp.status, await resp.json()) == (401, status_body(401, "Unauthorized", "Unauthorized"))
            # The hosting cluster fails the anonymous caller's SubjectAccessReview: a line written after authentication.
            kube_apiserver.inject_failure(500, when=lambda request: request.path.endswith("/subjectaccessreviews"))
            async with client.get(CLUSTERGATEWAYS, headers={"Audit-ID": anonymous}) as resp:
                message = "authorization failed: the SubjectAccessReview could not be made: ConnectionError"
                assert (resp.status, await resp.json()) == (500, status_body(500, message, "InternalError"))
            await eventually(lambda: output.getvalue().count(anonymous) >= 2 and output.getvalue().count(refused) >= 2)
    lines = PARSERS[log_format](output.getvalue())

    def of(audit_id: str) -> list[tuple[str, str, str]]:
        return [(line["logger"], line["message"], line["user"]) for line in lines if line.get("auditID") == audit_id]

    access_message = "request" if log_format == "json" else None
    assert [(logger, user) for logger, _, user in of(refused)] == [
        ("gateway_apiserver.security.authentication", ""),
        ("gateway_apiserver.security.authentication", ""),
        ("gateway_apiserver.access", ""),
    ]
    assert [message for _, message, _ in of(refused)][:2] == [
        "bearer token rejected by TokenReview",
        "unable to authenticate the request: invalid bearer token",
    ]
    assert [(logger, user) for logger, _, user in of(anonymous)] == [
        ("gateway_apiserver.security.authorization", "system:anonymous"),
        ("gateway_apiserver.access", "system:anonymous"),
    ]
    assert of(anonymous)[0][1] == "SubjectAccessReview failed: ConnectionError"
    if access_message is not None:
        assert of(anonymous)[1][1] == of(refused)[2][1] == access_message
