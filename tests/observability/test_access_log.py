"""One JSON access-log line per request, with the Audit-ID returned to the client, and never a credential."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.secrets import cluster_secret


async def test_each_request_logs_one_structured_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway_apiserver.access")
    async with running_gateway(tmp_path, ManualSecretSource([cluster_secret("c1")])) as gw, gw.session() as s:
        headers = {"Authorization": "Bearer super-secret-token", "Audit-ID": "audit-123", "X-Remote-User": "admin"}
        async with s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1?secret=query-value", headers=headers) as r:
            await r.read()
            assert r.headers["Audit-Id"] == "audit-123"
        async with s.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways/nope") as r:
            await r.read()
            generated = r.headers["Audit-Id"]
        for _ in range(50):
            if len([x for x in caplog.records if x.name == "gateway_apiserver.access"]) >= 2:
                break
            await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway_apiserver.access"]
    first, second = (json.loads(line) for line in lines[:2])
    assert first["user"] == "standalone" and first["verb"] == "get" and first["method"] == "GET"
    assert first["path"] == "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1"
    assert (first["cluster"], first["status"], first["auditID"]) == ("c1", 200, "audit-123")
    assert first["bytes"] > 0 and first["durationMs"] > 0  # sub-ms precision, on uvloop too
    assert (second["status"], second["auditID"]) == (404, generated)
    assert len(generated) == 36  # a UUID when the client sent none
    everything = "\n".join(lines)
    assert "super-secret-token" not in everything and "query-value" not in everything and "admin" not in everything
