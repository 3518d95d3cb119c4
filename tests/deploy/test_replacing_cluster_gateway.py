"""Every command of the README's "Replacing cluster-gateway" runs here, against the reference's objects, offline.

The reference's APIService and Service are restated from its three installations (KubeVela's chart,
cluster-gateway's chart, the OCM add-on manager). A kubectl stand-in keeps one "live" object in a
file: `get` prints it, `patch` patches it with the real kubectl (`--local`) and stores the result.
`./dev install` lines run with `--dry-run` in a fresh clone; the switch is the merge `kubectl apply`
makes of our APIService onto the live one.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_apiserver.security.pki import issue_serving_cert, new_ca
from tests.test_install import clone, objects, run

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
SECTION = README[README.index("## Replacing cluster-gateway\n") :]
SECTION = SECTION[: SECTION.index("\n## ", 5)]
NAME = "v1alpha1.cluster.core.oam.dev"
CA_B64 = base64.b64encode(new_ca("reference-ca").cert_pem).decode()


def lines() -> list[str]:
    """The section's shell lines, without comments."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", SECTION, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+# .*$", "", line).strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def line(pattern: str) -> str:
    [found] = [candidate for candidate in lines() if re.search(pattern, candidate)]
    return found


def apiservice(service: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": NAME, "labels": {"api": "cluster-extension-apiserver", "apiserver": "true"}},
        "spec": {"group": "cluster.core.oam.dev", "version": "v1alpha1", "groupPriorityMinimum": 2000, "versionPriority": 10}
        | {"service": service}
        | spec,
    }


KUBEVELA = apiservice(
    {"name": "kubevela-cluster-gateway-service", "namespace": "vela-system", "port": 9443},
    insecureSkipTLSVerify=False,
    caBundle=CA_B64,
)
KUBEVELA["metadata"]["annotations"] = {"meta.helm.sh/release-name": "kubevela", "meta.helm.sh/release-namespace": "vela-system"}
CLUSTER_GATEWAY_CHART = apiservice(
    {"name": "gateway-service", "namespace": "vela-system", "port": 9443}, insecureSkipTLSVerify=True
)
OCM_ADDON = apiservice({"name": "cluster-gateway", "namespace": "vela-system", "port": 9443}, caBundle=CA_B64)
OCM_ADDON["spec"]["groupPriorityMinimum"] = 5000
OCM_ADDON["metadata"]["ownerReferences"] = [
    {
        "apiVersion": "addon.open-cluster-management.io/v1alpha1",
        "kind": "ClusterManagementAddOn",
        "name": "cluster-gateway",
        "uid": "1",
    }
]
KUBEVELA_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "kubevela-cluster-gateway-service", "namespace": "vela-system"},
    "spec": {
        "selector": {
            "app.kubernetes.io/name": "vela-core-cluster-gateway",
            "app.kubernetes.io/instance": "kubevela-cluster-gateway",
        },
        "ports": [{"protocol": "TCP", "port": 9443, "targetPort": 9443, "name": "default"}],
    },
}

STAND_IN = """#!{python}
# kubectl with one live object in $LIVE: `get` prints it, `patch` patches it locally and stores it.
import json, os, subprocess, sys
real, live, args = {real!r}, os.environ["LIVE"], sys.argv[1:]
verb = next(a for a in args if not a.startswith("-") and args[args.index(a) - 1] != "-n")
i = args.index(verb)
rest = args[:i] + args[i + 3 :]  # drop the verb, the resource type and the name
if verb == "get":
    sys.exit(subprocess.run([real, "patch", "--local", "-f", live, "--type", "merge", "-p", "{{}}", *rest]).returncode)
done = subprocess.run([real, "patch", "--local", "-f", live, *rest, "-o", "json"], capture_output=True, text=True)
sys.stderr.write(done.stderr)
if done.returncode == 0:
    open(live, "w").write(done.stdout)
sys.exit(done.returncode)
"""


class Cluster:
    """One live object behind a kubectl stand-in, and a shell to run README lines in."""

    def __init__(self, tmp: Path, live: dict[str, Any]) -> None:
        self.tmp = tmp
        self.live_path = tmp / "live.json"
        self.live_path.write_text(json.dumps(live))
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        kubectl = shutil.which("kubectl")
        assert kubectl
        (bin_dir / "kubectl").write_text(STAND_IN.format(python=sys.executable, real=kubectl))
        (bin_dir / "kubectl").chmod(0o755)
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LIVE": str(self.live_path), "HOME": str(tmp)}

    def sh(self, command: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=cwd or self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        return done.stdout

    @property
    def live(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.live_path.read_text())
        return loaded

    def kubectl_apply(self, ours: dict[str, Any]) -> None:
        """What `kubectl apply` does to an object it did not create: our fields merged onto the live ones."""
        self.sh(f"kubectl patch apiservice {NAME} --type merge -p {shlex.quote(json.dumps(ours))}")


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Our APIService, as step 2 of the section renders it."""
    fresh = clone(tmp_path_factory.mktemp("clone"))
    argv = [*shlex.split(line(r"^\./dev install --namespace vela-system$")), "--dry-run"]
    done = subprocess.run(argv, cwd=fresh, capture_output=True, text=True, timeout=120, check=True)
    return objects(done.stdout)[("APIService", NAME, None)]


def test_the_section_names_the_references_installations() -> None:
    for fact in (
        "`v1alpha1.cluster.core.oam.dev`",
        "`vela-system/kubevela-cluster-gateway-service`",
        "`<release namespace>/gateway-service`",
        "`vela-system/cluster-gateway`",
        "`open-cluster-management-credentials`",
        "`spec.service.namespace`",
        "multicluster.clusterGateway.direct",
    ):
        assert fact in SECTION, fact


def test_every_command_is_run_here_or_needs_a_live_cluster() -> None:
    needs_a_cluster = [
        c for c in lines() if re.search(r"rollout status|scale deployment|get apiservice \S+ -w$|get clustergateways$", c)
    ]
    assert len(needs_a_cluster) == 6
    run_here = [
        c for c in lines() if c not in needs_a_cluster and not c.startswith("./dev install") and not c.startswith("mkdir")
    ]
    assert {c.split()[1] if c.split()[1] != "-n" else c.split()[3] for c in run_here} == {"get", "patch"}
    assert len(run_here) == 8  # each is exercised by a test below


@pytest.mark.parametrize("reference", [KUBEVELA, CLUSTER_GATEWAY_CHART, OCM_ADDON], ids=["kubevela", "chart", "ocm-addon"])
def test_switch_in_one_update_and_roll_back_exactly(tmp_path: Path, ours: dict[str, Any], reference: dict[str, Any]) -> None:
    cluster = Cluster(tmp_path, reference)
    cluster.sh(line(r"jsonpath='\{\.spec\}' > apiservice-spec.json"))
    assert json.loads((tmp_path / "apiservice-spec.json").read_text()) == reference["spec"]

    cluster.kubectl_apply(ours)  # step 2
    spec = cluster.live["spec"]
    assert spec["service"] == {"name": "gateway-apiserver", "namespace": "vela-system", "port": 443}
    # False, not left true: the kube-apiserver refuses insecureSkipTLSVerify with a caBundle.
    assert (spec["caBundle"], spec["insecureSkipTLSVerify"]) == (ours["spec"]["caBundle"], False)
    assert spec["service"]["namespace"] == "vela-system"  # where KubeVela will look for the cluster Secrets
    if "ownerReferences" in reference["metadata"]:
        # apply keeps the add-on's ownerReference: deleting the add-on would delete our APIService.
        assert cluster.live["metadata"]["ownerReferences"] == reference["metadata"]["ownerReferences"]
        cluster.sh(line(r"/metadata/ownerReferences"))
        assert "ownerReferences" not in cluster.live["metadata"]

    cluster.sh(line(r"apiservice-spec.json\)"))  # rollback
    assert cluster.live["spec"] == reference["spec"]


def kubevela_tls_secret() -> dict[str, Any]:
    """The chart's TLS Secret: its certificate job's names and keys (tls.crt, tls.key, ca)."""
    ca = new_ca("kubevela-ca")
    hosts = ["kubevela-cluster-gateway-service", "kubevela-cluster-gateway-service.vela-system.svc"]
    serving = issue_serving_cert(ca, hosts)
    data = {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem, "ca": ca.cert_pem}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kubevela-vela-core-cluster-gateway-tls-v2", "namespace": "vela-system"},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def test_in_place_under_kubevelas_names_serves_kubevelas_certificate(tmp_path: Path) -> None:
    secret = kubevela_tls_secret()
    fresh = clone(tmp_path / "clone")
    cluster = Cluster(tmp_path, secret)
    cluster.sh("mkdir -p certs/out", cwd=fresh)
    for command in [c for c in lines() if "kubevela-vela-core-cluster-gateway-tls-v2" in c]:
        cluster.sh(command, cwd=fresh)
    for key, name in (("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca", "ca.crt")):
        assert (fresh / "certs" / "out" / name).read_bytes() == base64.b64decode(secret["data"][key])

    beside, switch = [c for c in lines() if c.startswith("./dev install --service kubevela-cluster-gateway-service")]
    first = run(fresh, *shlex.split(beside), "--dry-run")
    assert first.returncode == 0, first.stderr
    assert {kind for kind, _, _ in objects(first.stdout)} >= {"Deployment", "Secret"}
    assert not {kind for kind, _, _ in objects(first.stdout)} & {"Service", "APIService"}
    final = run(fresh, *shlex.split(switch), "--dry-run")
    assert final.returncode == 0, final.stderr
    got = objects(final.stdout)
    api = got[("APIService", NAME, None)]["spec"]
    assert api["service"] == {"name": "kubevela-cluster-gateway-service", "namespace": "vela-system", "port": 9443}
    assert base64.b64decode(api["caBundle"]) == base64.b64decode(secret["data"]["ca"])  # the CA KubeVela trusts
    pods = got[("Deployment", "gateway-apiserver", "vela-system")]["spec"]["template"]["metadata"]["labels"]
    service = got[("Service", "kubevela-cluster-gateway-service", "vela-system")]["spec"]
    assert service["selector"] == pods and service["ports"][0]["port"] == 9443


def test_the_service_switch_replaces_the_selector_where_apply_would_merge_it(tmp_path: Path) -> None:
    ours = {"app.kubernetes.io/name": "gateway-apiserver"}
    for name in ("merged", "patched"):
        (tmp_path / name).mkdir()
    merged = Cluster(tmp_path / "merged", KUBEVELA_SERVICE)
    patch = shlex.quote(json.dumps({"spec": {"selector": ours}}))
    merged.sh(f"kubectl -n vela-system patch service kubevela-cluster-gateway-service --type merge -p {patch}")
    assert merged.live["spec"]["selector"] == KUBEVELA_SERVICE["spec"]["selector"] | ours  # matches none of our pods

    cluster = Cluster(tmp_path / "patched", KUBEVELA_SERVICE)
    cluster.sh(line(r'patch service .*"value":\{"app.kubernetes.io/name":"gateway-apiserver"\}'))
    assert cluster.live["spec"]["selector"] == ours
    assert cluster.live["spec"]["ports"] == KUBEVELA_SERVICE["spec"]["ports"]
    cluster.sh(line(r'patch service .*"app.kubernetes.io/instance":"kubevela-cluster-gateway"'))  # rollback
    assert cluster.live["spec"] == KUBEVELA_SERVICE["spec"]


def test_ours_listens_where_the_chart_service_sends_traffic() -> None:
    deployment = next(yaml.safe_load_all((REPO / "deploy" / "deployment.yaml").read_text()))
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    # KubeVela's Service sends port 9443 to targetPort 9443: the container port ours listens on.
    assert container["ports"][0]["containerPort"] == KUBEVELA_SERVICE["spec"]["ports"][0]["targetPort"] == 9443
