"""deploy/components/ocm: an optional kustomize component adding --ocm-integration and read access to ManagedClusters."""

from __future__ import annotations

import pytest
import yaml

from gateway_apiserver.config import build_parser
from tests.deploy.rendering import REPO, Rendered, render_deploy
from tests.fakes.kube_rbac import User, ocm_component_documents, request_attributes, with_ocm_component

COMPONENT = REPO / "deploy" / "components" / "ocm"
READER = "gateway-apiserver:managedclusters-reader"


@pytest.fixture(scope="module")
def with_ocm() -> Rendered:
    return render_deploy(["deploy/components/ocm"])


@pytest.fixture(scope="module")
def base() -> Rendered:
    return render_deploy()


def args(rendered: Rendered) -> list[str]:
    [container] = rendered[("Deployment", "gateway-apiserver")]["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def test_the_component_adds_the_flag_to_the_deployment_and_nothing_else_to_it(with_ocm: Rendered, base: Rendered) -> None:
    assert args(with_ocm) == [*args(base), "--ocm-integration=true"]
    assert build_parser().parse_args(args(with_ocm)).ocm_integration is True  # a flag the gateway accepts
    deployment = with_ocm[("Deployment", "gateway-apiserver")]
    deployment["spec"]["template"]["spec"]["containers"][0]["args"].pop()
    assert deployment == base[("Deployment", "gateway-apiserver")]


def test_the_component_grants_exactly_get_list_watch_on_managedclusters_to_the_gateway(
    with_ocm: Rendered, base: Rendered
) -> None:
    assert set(with_ocm) - set(base) == {("ClusterRole", READER), ("ClusterRoleBinding", READER)}
    assert with_ocm[("ClusterRole", READER)]["rules"] == [
        {"apiGroups": ["cluster.open-cluster-management.io"], "resources": ["managedclusters"], "verbs": ["get", "list", "watch"]}
    ]
    binding = with_ocm[("ClusterRoleBinding", READER)]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gateway-apiserver", "namespace": "vela-system"}]
    # Kustomize applies the component's RBAC as written: the fake hosting apiserver enforces the file itself.
    assert [with_ocm[(d["kind"], d["metadata"]["name"])] for d in ocm_component_documents()] == ocm_component_documents()


def test_the_base_stays_least_privilege(base: Rendered) -> None:
    text = yaml.safe_dump(list(base.values()))
    assert "managedclusters" not in text and "open-cluster-management" not in text
    assert "--ocm-integration=true" not in args(base)


def test_the_component_allows_reading_managedclusters_and_no_writing() -> None:
    from tests.fakes.kube_rbac import gateway_service_account

    rbac, gateway = with_ocm_component(), gateway_service_account()
    path = "/apis/cluster.open-cluster-management.io/v1/managedclusters"

    def allowed(method: str, target: str, query: dict[str, str] | None = None, user: User = gateway) -> bool:
        return rbac.authorize(user, request_attributes(method, target, query or {}))[0]

    assert allowed("GET", path) and allowed("GET", path, {"watch": "1"}) and allowed("GET", f"{path}/east")
    assert not allowed("PUT", f"{path}/east") and not allowed("DELETE", f"{path}/east") and not allowed("POST", path)
    assert not allowed("GET", path, user=User("system:serviceaccount:other:gateway-apiserver"))
    assert "*" not in (COMPONENT / "rbac.yaml").read_text().replace("# ", "")
