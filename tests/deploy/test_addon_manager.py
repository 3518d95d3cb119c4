"""deploy/addon-manager/: the ClusterGatewayConfiguration CRD, the manager's Deployment and RBAC, rendered as applied."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from gateway_apiserver.addon.main import build_parser
from gateway_apiserver.addon.spec import ClusterProxy, GatewaySpec, parse_spec
from tests.fakes.crd_rules import Served, validate_crd
from tests.fakes.ocm_addon import CLUSTER_GATEWAY_CONFIGURATIONS, cluster_gateway_configuration, cluster_proxy_egress

ADDON_MANAGER = Path(__file__).resolve().parents[2] / "deploy" / "addon-manager"


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ADDON_MANAGER)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}


def schema(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    crd = rendered[("CustomResourceDefinition", "clustergatewayconfigurations.proxy.open-cluster-management.io")]
    result: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def test_the_kustomization_renders_the_crd_the_manager_and_its_rbac(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert sorted(rendered) == [
        ("ClusterRole", "open-cluster-management:cluster-gateway:addon-manager"),
        ("ClusterRoleBinding", "open-cluster-management:cluster-gateway:addon-manager"),
        ("CustomResourceDefinition", "clustergatewayconfigurations.proxy.open-cluster-management.io"),
        ("Deployment", "cluster-gateway-addon-manager"),
        ("Namespace", "open-cluster-management-addon"),
        ("ServiceAccount", "cluster-gateway-addon-manager"),
    ]


def test_the_crd_serves_what_the_fake_hub_serves(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    crd = rendered[("CustomResourceDefinition", "clustergatewayconfigurations.proxy.open-cluster-management.io")]
    validate_crd(crd, None)
    served = Served.of(crd)
    fake = CLUSTER_GATEWAY_CONFIGURATIONS
    assert (served.info.group, served.info.version, served.info.kind, served.info.namespaced, served.status_subresource) == (
        fake.group,
        fake.version,
        fake.kind,
        fake.namespaced,
        fake.status_subresource,
    )


@pytest.mark.parametrize(
    "body",
    [
        cluster_gateway_configuration(),
        cluster_gateway_configuration(egress=cluster_proxy_egress()),
        cluster_gateway_configuration(managed_service_account=None),
        yaml.safe_load((ADDON_MANAGER / "clustergatewayconfiguration.yaml").read_text()),
    ],
)
def test_configurations_the_manager_reads_fit_the_schema(
    rendered: dict[tuple[str, str], dict[str, Any]], body: dict[str, Any]
) -> None:
    jsonschema.validate(body, schema(rendered))
    parse_spec(body)


def test_the_sample_configuration_reads_as_documented() -> None:
    body = yaml.safe_load((ADDON_MANAGER / "clustergatewayconfiguration.yaml").read_text())
    body["metadata"]["generation"] = 1
    assert parse_spec(body) == GatewaySpec(
        name="cluster-gateway",
        generation=1,
        image="ghcr.io/gateway-apiserver/gateway-apiserver:0.1.0",
        install_namespace="open-cluster-management-cluster-gateway",
        secret_namespace="open-cluster-management-credentials",
        managed_service_account="cluster-gateway",
        cluster_proxy=None,
    )
    body["spec"]["egress"] = cluster_proxy_egress()
    assert parse_spec(body).cluster_proxy == ClusterProxy(
        "proxy-entrypoint.open-cluster-management-cluster-proxy",
        8090,
        "open-cluster-management-cluster-proxy",
        "proxy-client",
        "proxy-server-ca",
    )


def test_the_schema_refuses_an_unknown_egress(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    body = cluster_gateway_configuration(egress={"type": "Tunnel"})
    with pytest.raises(jsonschema.ValidationError) as caught:
        jsonschema.validate(body, schema(rendered))
    assert caught.value.message == "'Tunnel' is not one of ['Direct', 'ClusterProxy']"


def test_the_deployment_runs_the_subcommand_as_the_service_account_the_rbac_binds(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = rendered[("Deployment", "cluster-gateway-addon-manager")]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"][0] == "addon-manager"
    build_parser().parse_args(container["args"][1:])  # exits 2 on an unknown flag
    account = rendered[("ServiceAccount", "cluster-gateway-addon-manager")]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert deployment["metadata"]["namespace"] == account["metadata"]["namespace"]
    binding = rendered[("ClusterRoleBinding", "open-cluster-management:cluster-gateway:addon-manager")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]


def test_no_rule_uses_a_wildcard(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    rules = rendered[("ClusterRole", "open-cluster-management:cluster-gateway:addon-manager")]["rules"]
    assert all("*" not in value for rule in rules for key in ("apiGroups", "resources", "verbs") for value in rule[key])


def test_the_readme_flag_table_lists_exactly_the_subcommands_flags() -> None:
    text = (ADDON_MANAGER / "README.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| `--")]
    documented = {flag for line in table for flag in re.findall(r"`(--[a-z-]+)`", line.split("|")[1])}
    known = {o for a in build_parser()._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert documented == known
