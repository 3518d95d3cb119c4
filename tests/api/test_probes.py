"""Probes and /version: /readyz fails until the first Secret listing has loaded."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.secrets import cluster_secret


async def test_readyz_fails_until_the_first_list_then_passes(tmp_path: Path) -> None:
    source = ManualSecretSource([cluster_secret("a")], "3", sync=False)
    async with running_gateway(tmp_path, source) as gw, gw.session() as s:
        async with s.get("/readyz?verbose") as resp:
            body = await resp.text()
            assert resp.status == 500
        assert "[+]ping ok" in body
        assert "[-]cluster-registry-synced failed: the first list of cluster Secrets has not completed" in body
        assert body.endswith("readyz check failed\n")
        async with s.get("/livez") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")

        gw.registry.replace([cluster_secret("a")], "3")
        async with s.get("/readyz") as resp:
            assert (resp.status, await resp.text()) == (200, "ok")
        async with s.get("/readyz?verbose") as resp:
            assert "[+]cluster-registry-synced ok" in await resp.text()
        async with s.get("/readyz/cluster-registry-synced") as resp:
            assert resp.status == 200


async def test_healthz_livez_and_version(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource()) as gw, gw.session() as s:
        for path in ("/healthz", "/livez", "/healthz/ping"):
            async with s.get(path) as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
        async with s.get("/version") as resp:
            version = await resp.json()
        assert version["gitVersion"].startswith("v0.")
        assert set(version) >= {"major", "minor", "gitVersion", "goVersion", "compiler", "platform"}
        async with s.get("/readyz/nonexistent") as resp:
            body = await resp.json()
            assert (resp.status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
