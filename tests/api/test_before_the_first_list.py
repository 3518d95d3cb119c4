"""Before the first list of Secrets, the gateway knows nothing: it says so, and never answers "no clusters".

An empty list, a 404 or an empty watch would tell a controller that its clusters are gone. As the
kube-apiserver does while its watch cache initializes, every read answers 429 with Retry-After,
which client-go and kubectl obey by retrying.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.secrets import cluster_secret

BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
VCS = "/apis/cluster.core.oam.dev/v1alpha1/virtualclusters"
INITIALIZING = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "storage is (re)initializing: the first list of cluster Secrets has not completed",
    "reason": "TooManyRequests",
    "details": {"retryAfterSeconds": 1},
    "code": 429,
}


@pytest.mark.parametrize(
    "path",
    [
        BASE,
        f"{BASE}?watch=1",
        f"{BASE}/a",
        f"{BASE}/a/health",
        "/apis/cluster.core.oam.dev/v1alpha1/watch/clustergateways",
        f"{BASE}/a/proxy/api/v1/namespaces",
        VCS,
        f"{VCS}?watch=1",
        f"{VCS}/a",
        f"{VCS}/local",
    ],
)
async def test_every_read_answers_429_with_retry_after_until_the_first_list(tmp_path: Path, path: str) -> None:
    source = ManualSecretSource([cluster_secret("a")], "3", sync=False)
    async with running_gateway(tmp_path, source) as gw, gw.session() as s:
        async with s.get(path) as resp:
            assert (resp.status, resp.headers["Retry-After"], await resp.json()) == (429, "1", INITIALIZING)
        gw.registry.replace([cluster_secret("a")], "3")
        await asyncio.wait_for(gw.server.virtual_clusters.synced.wait(), 5)
        for read in (f"{BASE}/a", f"{VCS}/a"):
            async with s.get(read) as resp:
                assert resp.status == 200
                assert (await resp.json())["metadata"]["name"] == "a"


async def test_kubectl_waits_for_the_first_list_instead_of_seeing_no_clusters(tmp_path: Path) -> None:
    source = ManualSecretSource([cluster_secret("a")], "3", sync=False)
    async with running_gateway(tmp_path, source) as gw:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(gw.kubeconfig)}
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "get", "clustergateways", "-o", "name", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(1.5)  # kubectl is retrying on the 429s meanwhile
        gw.registry.replace([cluster_secret("a")], "3")
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert (proc.returncode, out.decode()) == (0, "clustergateway.cluster.core.oam.dev/a\n"), err.decode()
