"""deploy/components/monitoring: an optional ServiceMonitor for the Prometheus Operator, and the RBAC its scraper needs."""

from __future__ import annotations

import pytest

from tests.deploy.rendering import Rendered, render_deploy
from tests.fakes.kube_rbac import Rbac, User, request_attributes, service_account_user

READER = "gateway-apiserver:metrics-reader"
PROMETHEUS = service_account_user("monitoring", "prometheus-k8s")  # kube-prometheus's Prometheus


@pytest.fixture(scope="module")
def with_monitoring() -> Rendered:
    return render_deploy(["deploy/components/monitoring"])


@pytest.fixture(scope="module")
def base() -> Rendered:
    return render_deploy()


def test_the_component_adds_a_service_monitor_and_the_scraper_rbac_and_changes_nothing_else(
    with_monitoring: Rendered, base: Rendered
) -> None:
    assert set(with_monitoring) - set(base) == {
        ("ServiceMonitor", "gateway-apiserver"),
        ("ClusterRole", READER),
        ("ClusterRoleBinding", READER),
    }
    # Each rendering issues fresh certificates: the TLS Secret and the APIService caBundle differ by those only.
    fresh = {("Secret", "gateway-apiserver-tls"), ("APIService", "v1alpha1.cluster.core.oam.dev")}
    assert {key: with_monitoring[key] for key in base if key not in fresh} == {k: v for k, v in base.items() if k not in fresh}
    assert fresh <= set(base)


def test_the_service_monitor_scrapes_the_gateway_service_over_verified_tls(with_monitoring: Rendered, base: Rendered) -> None:
    monitor = with_monitoring[("ServiceMonitor", "gateway-apiserver")]
    service = base[("Service", "gateway-apiserver")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == "vela-system"
    assert monitor["spec"]["selector"] == {"matchLabels": service["metadata"]["labels"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert (endpoint["scheme"], endpoint["path"]) == ("https", "/metrics")
    # The CA the Deployment's certificate is issued by, from the TLS Secret the base generates; no insecureSkipVerify.
    secret = base[("Secret", "gateway-apiserver-tls")]
    assert endpoint["tlsConfig"] == {
        "serverName": "gateway-apiserver.vela-system.svc",
        "ca": {"secret": {"name": secret["metadata"]["name"], "key": "ca.crt"}},
    }
    assert "ca.crt" in secret["data"]


def test_prometheus_may_get_metrics_and_nothing_else(with_monitoring: Rendered) -> None:
    rbac = Rbac.from_documents(with_monitoring.values())

    def allowed(method: str, path: str, user: User = PROMETHEUS) -> bool:
        return rbac.authorize(user, request_attributes(method, path, {}))[0]

    assert allowed("GET", "/metrics")
    assert not allowed("POST", "/metrics") and not allowed("GET", "/metrics/extra") and not allowed("GET", "/debug/pprof")
    assert not allowed("GET", "/apis/cluster.core.oam.dev/v1alpha1/clustergateways")
    assert not allowed("GET", "/metrics", user=service_account_user("default", "default"))
    assert with_monitoring[("ClusterRole", READER)]["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


def test_the_base_grants_no_one_metrics(base: Rendered) -> None:
    rbac = Rbac.from_documents(base.values())
    assert not rbac.authorize(PROMETHEUS, request_attributes("GET", "/metrics", {}))[0]
