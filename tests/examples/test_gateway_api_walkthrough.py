"""examples/gateway-api/, run as a user runs it: its bash scripts and the real kubectl, from the hub's
kubeconfig through a hosting-mode gateway (TokenReview, SubjectAccessReview) into three fake member
clusters over TLS (`config`, `blue`, `orange`), which store the CRDs and custom resources for real.

Afterwards each cluster holds exactly what the walkthrough says, and a second run writes nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fakes.hosting import HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import client_ssl_context

pytestmark = pytest.mark.timeout(150)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway-api"
HUB_TOKEN = "hub-user-token"  # the user's token in the hub kubeconfig
CLUSTERS = ("config", "blue", "orange")
GATEWAYS = "gateways.gateway.networking.k8s.io"
HTTPROUTES = "httproutes.gateway.networking.k8s.io"
EXPORTS = "serviceexports.multicluster.x-k8s.io"
IMPORTS = "serviceimports.multicluster.x-k8s.io"
ASSOCIATION = "application-networking.k8s.aws/lattice-vpc-association"
SHARING_KEY = "acnodal.io/epic-sharing-key"
README_UID = "36cec0c9-aa55-4df5-ab87-ed26d638fd94"  # the uid in the README's sample output


@dataclass
class Walkthrough:
    """The hub's kubeconfig, the gateway, and the member clusters by ClusterGateway name."""

    hub_kubeconfig: Path
    home: Path
    gateway: HostingGateway
    members: dict[str, FakeMemberAPIServer]

    async def run(self, script: str) -> str:
        """Run one of the example's scripts with HUB_KUBECONFIG set; its stdout (it must succeed)."""
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "HUB_KUBECONFIG": str(self.hub_kubeconfig)}
        proc = await asyncio.create_subprocess_exec(
            "bash", str(EXAMPLE / script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        try:
            async with asyncio.timeout(60):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0, err.decode()
        return out.decode()

    def objects(self, cluster: str, resource: str, namespace: str = "default") -> dict[str, dict[str, Any]]:
        """The objects of `resource` (`<plural>.<group>`) stored in `cluster`, by name (all in `namespace`)."""
        stored = self.members[cluster].store.objects.get(resource, {})
        assert {ns for ns, _ in stored} <= {namespace}
        return {name: obj for (_, name), obj in stored.items()}


@pytest.fixture
async def walkthrough(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[Walkthrough]:
    """Three empty members behind a hosting-mode gateway. The hub user has exactly the rights the example's
    README asks for: get and patch on clustergateways/proxy, and list on clustergateways for the fan-out."""
    kube_apiserver.users[HUB_TOKEN] = {"username": "hub-user", "uid": "h-1", "groups": []}
    proxy = ("clustergateways/proxy",)
    kube_apiserver.policy = [
        PolicyRule(users=("hub-user",), verbs=("get", "patch"), api_groups=("cluster.core.oam.dev",), resources=proxy),
        # Step 4's fan-out names the clusters it asked, so it also needs to list them.
        PolicyRule(users=("hub-user",), verbs=("list",), api_groups=("cluster.core.oam.dev",), resources=("clustergateways",)),
    ]
    members = {name: FakeMemberAPIServer() for name in CLUSTERS}
    for name, member in members.items():
        await member.start()
        add_cluster(kube_apiserver, name, member.url, token=member.token, ca_pem=member.ca_pem)
    try:
        async with hosting_gateway(tmp_path, kube_apiserver) as gateway:
            (home := tmp_path / "home").mkdir()
            kubeconfig = gateway.write_kubeconfig(tmp_path / "hub.kubeconfig", token=HUB_TOKEN)
            yield Walkthrough(kubeconfig, home, gateway, members)
    finally:
        for member in members.values():
            await member.stop()


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("annotations") or {})


async def test_the_walkthrough_leaves_each_cluster_as_its_readme_says(walkthrough: Walkthrough) -> None:
    await walkthrough.run("walkthrough.sh")

    for cluster in CLUSTERS:  # the four CRDs everywhere, applied through the gateway and Established
        crds = walkthrough.objects(cluster, "customresourcedefinitions.apiextensions.k8s.io", "")
        assert sorted(crds) == sorted([GATEWAYS, HTTPROUTES, EXPORTS, IMPORTS])
        for crd in crds.values():
            conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
            assert conditions == {"NamesAccepted": "True", "Established": "True"}

    # EPIC: blue's Gateway uid is the sharing key of orange's Gateway of the same name.
    shared_a = walkthrough.objects("blue", GATEWAYS)["shared-gateway"]
    shared_b = walkthrough.objects("orange", GATEWAYS)["shared-gateway"]
    assert annotations_of(shared_a) == {}
    assert annotations_of(shared_b) == {SHARING_KEY: shared_a["metadata"]["uid"]}
    assert shared_b["metadata"]["uid"] != shared_a["metadata"]["uid"]

    # Lattice: Gateways with their VPC association per cluster.
    association = {
        cluster: {name: annotations_of(gw).get(ASSOCIATION) for name, gw in walkthrough.objects(cluster, GATEWAYS).items()}
        for cluster in CLUSTERS
    }
    assert association == {
        "config": {"gateway-1": "false", "gateway-2": "false"},
        "blue": {"gateway-1": "true", "shared-gateway": None},
        "orange": {"gateway-2": "true", "shared-gateway": None},
    }

    routes = walkthrough.objects("config", HTTPROUTES)
    assert sorted(routes) == ["httproute-1", "httproute-2", "httproute-3"]
    assert routes["httproute-2"]["spec"]["parentRefs"] == [
        {"name": "gateway-1", "sectionName": "http"},
        {"name": "gateway-2", "sectionName": "http"},
    ]
    assert [r["spec"]["parentRefs"] for r in (routes["httproute-1"], routes["httproute-3"])] == [
        [{"name": "gateway-1", "sectionName": "http"}],
        [{"name": "gateway-2", "sectionName": "http"}],
    ]
    assert routes["httproute-2"]["spec"]["rules"] == [
        {
            "backendRefs": [
                {"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "service-1", "port": 80, "weight": 90},
                {"kind": "Service", "name": "service-1", "port": 80, "weight": 10},
            ]
        }
    ]

    service_import = walkthrough.objects("config", IMPORTS)
    assert list(service_import) == ["service-1"]
    assert service_import["service-1"]["spec"] == {
        "type": "ClusterSetIP",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
    }
    assert {cluster: sorted(walkthrough.objects(cluster, EXPORTS)) for cluster in CLUSTERS} == {
        "config": [],
        "blue": ["service-1"],
        "orange": ["service-1"],
    }
    assert {cluster: sorted(walkthrough.objects(cluster, IMPORTS)) for cluster in CLUSTERS} == {
        "config": ["service-1"],
        "blue": [],
        "orange": [],
    }


async def test_every_object_is_server_side_applied_by_the_walkthrough_alone(walkthrough: Walkthrough) -> None:
    await walkthrough.run("walkthrough.sh")

    for cluster, member in walkthrough.members.items():
        owners = {key: [(e["manager"], e["operation"]) for e in entries] for key, entries in member.custom.managed.items()}
        stored = {(resource, ns, name) for resource, objects in member.store.objects.items() for ns, name in objects}
        custom = {key for key in stored if key[0] not in ("configmaps", "pods")}
        assert set(owners) == custom, cluster
        assert set(map(tuple, owners.values())) == {(("gateway-api-walkthrough", "Apply"),)}, cluster
        assert {member.store.get(*key)["metadata"]["generation"] for key in custom} == {1}, cluster


async def test_running_the_walkthrough_again_writes_nothing(walkthrough: Walkthrough) -> None:
    await walkthrough.run("walkthrough.sh")
    before = {cluster: (member.store.rv, len(member.store.log)) for cluster, member in walkthrough.members.items()}
    uid = walkthrough.objects("blue", GATEWAYS)["shared-gateway"]["metadata"]["uid"]

    await walkthrough.run("walkthrough.sh")

    assert {cluster: (member.store.rv, len(member.store.log)) for cluster, member in walkthrough.members.items()} == before
    assert annotations_of(walkthrough.objects("orange", GATEWAYS)["shared-gateway"]) == {SHARING_KEY: uid}


async def test_listing_shows_each_clusters_objects_in_turn(walkthrough: Walkthrough) -> None:
    await walkthrough.run("walkthrough.sh")
    uid = walkthrough.objects("blue", GATEWAYS)["shared-gateway"]["metadata"]["uid"]

    out = await walkthrough.run("list-clusters.sh")

    rows: dict[str, list[list[str]]] = {}
    for line in out.splitlines():
        if line.startswith("== "):
            cluster = rows.setdefault(line[3:], [])
        elif not line.startswith("KIND "):
            cluster.append(line.split())
    readme = (EXAMPLE / "README.md").read_text()
    example_output = readme.split("## Step 3", 1)[1].split("```\n", 2)[1]  # the README shows this very output
    assert out == example_output.replace(README_UID, uid)
    header = "KIND NAME VPC-ASSOCIATION SHARING-KEY PARENTS BACKENDS WEIGHTS"
    assert [line.split() for line in out.splitlines() if line.startswith("KIND ")] == [header.split()] * 3
    assert rows == {
        "config": [
            ["Gateway", "gateway-1", "false", "<none>", "<none>", "<none>", "<none>"],
            ["Gateway", "gateway-2", "false", "<none>", "<none>", "<none>", "<none>"],
            ["HTTPRoute", "httproute-1", "<none>", "<none>", "gateway-1", "ServiceImport", "<none>"],
            ["HTTPRoute", "httproute-2", "<none>", "<none>", "gateway-1,gateway-2", "ServiceImport,Service", "90,10"],
            ["HTTPRoute", "httproute-3", "<none>", "<none>", "gateway-2", "ServiceImport", "<none>"],
            ["ServiceImport", "service-1", "<none>", "<none>", "<none>", "<none>", "<none>"],
        ],
        "blue": [
            ["Gateway", "gateway-1", "true", "<none>", "<none>", "<none>", "<none>"],
            ["Gateway", "shared-gateway", "<none>", "<none>", "<none>", "<none>", "<none>"],
            ["ServiceExport", "service-1", "<none>", "<none>", "<none>", "<none>", "<none>"],
        ],
        "orange": [
            ["Gateway", "gateway-2", "true", "<none>", "<none>", "<none>", "<none>"],
            ["Gateway", "shared-gateway", "<none>", uid, "<none>", "<none>", "<none>"],
            ["ServiceExport", "service-1", "<none>", "<none>", "<none>", "<none>", "<none>"],
        ],
    }


async def test_crds_a_cluster_already_has_are_kept(walkthrough: Walkthrough) -> None:
    """blue already runs the Gateway API project's CRDs (here: serving v1beta1 as well, installed by Helm):
    the walkthrough leaves them alone and installs only the Multi-Cluster Services CRDs there."""
    blue = walkthrough.members["blue"]
    installed = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl_context(blue.ca_pem))) as http:
        for crd in yaml.safe_load_all((EXAMPLE / "crds" / "gateway-api.yaml").read_text()):
            versions = crd["spec"]["versions"]
            crd["spec"]["versions"] = [*versions, {**versions[0], "name": "v1beta1", "storage": False}]
            url = f"{blue.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions?fieldManager=helm"
            async with http.post(url, json=crd, headers={"Authorization": f"Bearer {blue.token}"}) as resp:
                assert resp.status == 201, await resp.text()
                installed[crd["metadata"]["name"]] = (await resp.json())["metadata"]["resourceVersion"]

    out = await walkthrough.run("walkthrough.sh")

    assert "blue: gateway-api.yaml already installed, kept" in out.splitlines()
    crds = walkthrough.objects("blue", "customresourcedefinitions.apiextensions.k8s.io", "")
    assert sorted(crds) == sorted([GATEWAYS, HTTPROUTES, EXPORTS, IMPORTS])
    assert {name: crds[name]["metadata"]["resourceVersion"] for name in installed} == installed
    assert [v["name"] for v in crds[GATEWAYS]["spec"]["versions"]] == ["v1", "v1beta1"]
    assert annotations_of(walkthrough.objects("blue", GATEWAYS)["gateway-1"]) == {ASSOCIATION: "true"}


async def test_the_fan_out_shows_every_clusters_objects_and_outcome_in_one_request_per_resource(
    walkthrough: Walkthrough,
) -> None:
    await walkthrough.run("walkthrough.sh")
    uid = walkthrough.objects("blue", GATEWAYS)["shared-gateway"]["metadata"]["uid"]

    out = await walkthrough.run("fan-out.sh")

    readme = (EXAMPLE / "README.md").read_text()
    example_output = readme.split("## Step 4", 1)[1].split("```\n", 2)[1]  # the README shows this very output
    assert out == example_output.replace(README_UID, uid)
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["CLUSTER", "KIND", "NAME", "VPC-ASSOCIATION", "SHARING-KEY", "PARENTS", "BACKENDS", "WEIGHTS"]
    assert ["orange", "Gateway", "shared-gateway", "<none>", uid, "<none>", "<none>", "<none>"] in lines
    assert [
        "config",
        "HTTPRoute",
        "httproute-2",
        "<none>",
        "<none>",
        "gateway-1,gateway-2",
        "ServiceImport,Service",
        "90,10",
    ] in lines
    # Every cluster's outcome for every request, in the order asked: blue and orange hold no routes or imports.
    counts = {"gateways": (2, 2, 2), "httproutes": (0, 3, 0), "serviceexports": (1, 0, 1), "serviceimports": (0, 1, 0)}
    expected = [
        f'{resource}: Success: cluster "{cluster}": {n} item{"" if n == 1 else "s"}'
        for resource, per_cluster in counts.items()
        for cluster, n in zip(("blue", "config", "orange"), per_cluster, strict=True)
    ]
    assert out.split("\n\n", 1)[1].splitlines() == expected
