"""Writes on `clustergateways/{name}/health`, in hosting mode over real TLS: the health lands on the Secret.

The gateway runs as its ServiceAccount on the fake hosting kube-apiserver (which enforces deploy/rbac.yaml);
callers are authenticated by TokenReview and authorized by SubjectAccessReview.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from gateway_apiserver.proxy.health_probe import HEALTH_PROBER
from tests.fakes.gateway import ManualSecretSource, running_gateway
from tests.fakes.hosting import CLUSTERGATEWAYS, SECRET_NAMESPACE, HostingGateway, add_cluster, hosting_gateway
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_documents, deploy_rbac, with_ocm_component
from tests.fakes.kube_store import PolicyRule
from tests.fakes.secrets import CREDENTIAL_LABEL, cluster_secret

HEALTH = f"{CLUSTERGATEWAYS}/east/health"
SECRET_PATH = f"/api/v1/namespaces/{SECRET_NAMESPACE}/secrets/east"
HEALTHY = "status.cluster.core.oam.dev/healthy"
REASON = "status.cluster.core.oam.dev/healthy-reason"
WRITTEN_AT = "status.cluster.core.oam.dev/healthy-time"
PROBER_TOKEN = "prober-token"
VIEWER_TOKEN = "viewer-token"


@pytest.fixture
async def hosted(tmp_path: Path, kube_apiserver: FakeKubeAPIServer) -> AsyncIterator[HostingGateway]:
    add_cluster(kube_apiserver, "east", "https://east.example:6443", token="token-of-east")
    kube_apiserver.users[PROBER_TOKEN] = {"username": "prober", "uid": "p-1", "groups": ["probers"]}
    kube_apiserver.users[VIEWER_TOKEN] = {"username": "viewer", "uid": "v-1", "groups": ["viewers"]}
    kube_apiserver.policy = [
        PolicyRule(groups=("system:masters",)),
        PolicyRule(users=("prober",), verbs=("get", "update", "patch"), resources=("clustergateways/health",)),
        PolicyRule(users=("viewer",), verbs=("get",), resources=("clustergateways", "clustergateways/health")),
    ]
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        yield gw


def expected_gateway(secret: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The ClusterGateway of Secret `east` at the Secret's resourceVersion, with `status`."""
    meta = secret["metadata"]
    return {
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "kind": "ClusterGateway",
        "metadata": {
            "name": "east",
            "uid": body_uid(meta),
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
            "labels": {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"},
        },
        "spec": {
            "provider": "",
            "access": {
                "endpoint": {"type": "Const", "const": {"address": "https://east.example:6443", "insecure": True}},
                "credential": {"type": "ServiceAccountToken"},
            },
        },
        "status": status,
    }


def body_uid(meta: dict[str, Any]) -> str:
    from gateway_apiserver.registry.conversion import gateway_uid

    return gateway_uid(meta["uid"], SECRET_NAMESPACE, "east")


def stored(api: FakeKubeAPIServer) -> dict[str, Any]:
    return api.store.get("secrets", SECRET_NAMESPACE, "east")


async def call(
    gw: HostingGateway, method: str, body: Any, *, token: str = PROBER_TOKEN, content_type: str = "application/json"
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with gw.session() as s, s.request(method, HEALTH, data=json.dumps(body), headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def failure(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    status["reason"] = reason
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


MERGE = {"metadata": {"annotations": {HEALTHY: "true", REASON: "ConnectionTimeout"}}}


def untimed(patches: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """The Secret patches without the write time each carries (checked here: a UTC time of this test's run)."""
    result = []
    for path, content_type, patch in patches:
        annotations = dict(patch["metadata"]["annotations"])
        written_at = datetime.fromisoformat(annotations.pop(WRITTEN_AT).replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - written_at).total_seconds()) < 60
        result.append((path, content_type, {"metadata": {"annotations": annotations}}))
    return result


async def test_put_stores_only_the_health_on_the_secret_and_answers_the_updated_object(hosted: HostingGateway) -> None:
    body = {
        "apiVersion": "cluster.core.oam.dev/v1alpha1",
        "kind": "ClusterGateway",
        "metadata": {"name": "east", "labels": {"ignored": "yes"}},
        "spec": {"provider": "ignored", "access": {"endpoint": {"type": "Const", "const": {"address": "https://evil"}}}},
        "status": {"healthy": True, "healthyReason": "ConnectionTimeout"},
    }
    code, answer = await call(hosted, "PUT", body)
    assert code == 200, answer
    assert untimed(hosted.api.patches) == [(SECRET_PATH, "application/merge-patch+json", MERGE)]
    secret = stored(hosted.api)
    assert secret["metadata"]["annotations"] == hosted.api.patches[0][2]["metadata"]["annotations"]
    assert answer == expected_gateway(secret, {"healthy": True, "healthyReason": "ConnectionTimeout"})
    assert "token-of-east" not in json.dumps(answer)


async def test_merge_patch_applies_to_the_current_status(hosted: HostingGateway) -> None:
    code, answer = await call(hosted, "PATCH", {"status": {"healthy": True}}, content_type="application/merge-patch+json")
    assert code == 200, answer
    assert untimed(hosted.api.patches) == [
        (SECRET_PATH, "application/merge-patch+json", {"metadata": {"annotations": {HEALTHY: "true", REASON: ""}}})
    ]
    assert answer == expected_gateway(stored(hosted.api), {"healthy": True})


async def test_json_patch_applies_to_the_current_object(hosted: HostingGateway) -> None:
    ops = [
        {"op": "replace", "path": "/status/healthy", "value": True},
        {"op": "add", "path": "/status/healthyReason", "value": "CertificateMismatch"},
    ]
    code, answer = await call(hosted, "PATCH", ops, content_type="application/json-patch+json")
    assert code == 200, answer
    want = {"metadata": {"annotations": {HEALTHY: "true", REASON: "CertificateMismatch"}}}
    assert untimed(hosted.api.patches) == [(SECRET_PATH, "application/merge-patch+json", want)]
    assert answer == expected_gateway(stored(hosted.api), {"healthy": True, "healthyReason": "CertificateMismatch"})


@pytest.mark.parametrize(
    "content_type", ["application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/json"]
)
async def test_other_patch_types_are_415_as_in_kube(hosted: HostingGateway, content_type: str) -> None:
    code, answer = await call(hosted, "PATCH", {"status": {"healthy": True}}, content_type=content_type)
    assert (code, answer) == (
        415,
        failure(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json",
        ),
    )
    assert hosted.api.patches == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "east"}},
            "the body of the request is a ConfigMap of v1, not a ClusterGateway of cluster.core.oam.dev/v1alpha1",
        ),
        ({"metadata": {"name": "west"}}, "the name of the object (west) does not match the name on the URL (east)"),
        ({"status": {"healthy": "yes"}}, 'status.healthy must be a boolean, not "yes"'),
        ({"status": {"healthyReason": 3}}, "status.healthyReason must be a string, not 3"),
        (["not", "an", "object"], "the body of the request must be a ClusterGateway object"),
    ],
)
async def test_a_body_that_is_not_this_cluster_gateway_is_400(hosted: HostingGateway, body: Any, message: str) -> None:
    assert await call(hosted, "PUT", body) == (400, failure(400, "BadRequest", message))
    assert hosted.api.patches == []


NOT_FOUND_DETAILS = {"name": "nope", "group": "cluster.core.oam.dev", "kind": "clustergateways"}


@pytest.mark.parametrize(
    ("method", "content_type"),
    [("GET", None), ("PUT", "application/json"), ("PATCH", "application/merge-patch+json")],
)
async def test_a_missing_cluster_is_404_in_the_words_kubevela_retries_on(
    hosted: HostingGateway, method: str, content_type: str | None
) -> None:
    """As the proxy: the message starts with the reference's "no such cluster NAME: "."""
    headers = {"Authorization": f"Bearer {hosted.api.token}", **({"Content-Type": content_type} if content_type else {})}
    body = None if method == "GET" else "{}"
    async with hosted.session() as s, s.request(method, f"{CLUSTERGATEWAYS}/nope/health", data=body, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (
            404,
            failure(
                404, "NotFound", 'no such cluster nope: clustergateways.cluster.core.oam.dev "nope" not found', NOT_FOUND_DETAILS
            ),
        )
    assert hosted.api.patches == []


async def test_a_caller_without_update_on_health_is_403(hosted: HostingGateway) -> None:
    code, answer = await call(hosted, "PUT", {"status": {"healthy": True}}, token=VIEWER_TOKEN)
    assert code == 403
    assert (answer["reason"], answer["code"]) == ("Forbidden", 403)
    assert answer["message"].startswith(
        'clustergateways.cluster.core.oam.dev "east" is forbidden: User "viewer" cannot update resource '
        '"clustergateways/health" in API group "cluster.core.oam.dev" at the cluster scope'
    ), answer["message"]
    assert hosted.reviews()[-1] == {
        "user": "viewer",
        "uid": "v-1",
        "groups": ["viewers", "system:authenticated"],
        "resourceAttributes": {
            "verb": "update",
            "group": "cluster.core.oam.dev",
            "version": "v1alpha1",
            "resource": "clustergateways",
            "subresource": "health",
            "name": "east",
        },
    }
    assert hosted.api.patches == []


async def test_a_watcher_sees_modified_with_the_new_status(hosted: HostingGateway) -> None:
    headers = {"Authorization": f"Bearer {hosted.api.token}"}
    async with hosted.session() as s:
        async with s.get(CLUSTERGATEWAYS, headers=headers) as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        async with s.get(f"{CLUSTERGATEWAYS}?watch=1&resourceVersion={rv}&timeoutSeconds=5", headers=headers) as watch:
            code, answer = await call(hosted, "PUT", {"status": {"healthy": True, "healthyReason": "Probed"}})
            assert code == 200
            line = await asyncio.wait_for(watch.content.readline(), 5)
    event = json.loads(line)
    assert event == {"type": "MODIFIED", "object": answer}


async def kubectl(gw: HostingGateway, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = gw.write_kubeconfig(tmp_path / "prober.kubeconfig", token=PROBER_TOKEN)
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={tmp_path / 'kubectl-cache'}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kubectl_replace_raw_then_get_raw(hosted: HostingGateway, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"kind": "ClusterGateway", "apiVersion": "cluster.core.oam.dev/v1alpha1",
                                "metadata": {"name": "east"}, "status": {"healthy": True}}))  # fmt: skip
    code, out, err = await kubectl(hosted, tmp_path, "replace", "--raw", HEALTH, "-f", str(body))
    assert code == 0, err
    assert json.loads(out) == expected_gateway(stored(hosted.api), {"healthy": True})
    code, out, err = await kubectl(hosted, tmp_path, "get", "--raw", HEALTH)
    assert code == 0, err
    assert json.loads(out)["status"] == {"healthy": True}


async def test_the_kubernetes_client_puts_and_patches_the_health_subresource(hosted: HostingGateway) -> None:
    config = kubernetes.client.Configuration()
    config.host = hosted.url
    config.ssl_ca_cert = str(hosted.ca_file)
    config.api_key = {"authorization": f"Bearer {PROBER_TOKEN}"}

    def send(api: kubernetes.client.ApiClient, method: str, content_type: str, body: Any) -> Any:
        # The generated client's own request path (serialize with BearerToken auth, send, read), as its
        # CustomObjectsApi methods do: their `name` argument would escape the "/" before "health".
        request = api.param_serialize(
            method=method,
            resource_path=HEALTH,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request)
        response.read()
        return api.response_deserialize(response, {"200": "object"}).data

    def put_then_patch() -> tuple[Any, Any]:
        with kubernetes.client.ApiClient(config) as api:
            gateway = {"kind": "ClusterGateway", "apiVersion": "cluster.core.oam.dev/v1alpha1"}
            put = send(api, "PUT", "application/json", {**gateway, "status": {"healthy": True, "healthyReason": "Probed"}})
            patched = send(api, "PATCH", "application/merge-patch+json", {"status": {"healthy": False}})
            return put, patched

    put, patched = await asyncio.to_thread(put_then_patch)
    assert put["status"] == {"healthy": True, "healthyReason": "Probed"}
    assert patched == expected_gateway(stored(hosted.api), {"healthy": False, "healthyReason": "Probed"})
    assert [p[2] for p in untimed(hosted.api.patches)] == [
        {"metadata": {"annotations": {HEALTHY: "true", REASON: "Probed"}}},
        {"metadata": {"annotations": {HEALTHY: "false", REASON: "Probed"}}},
    ]


@pytest.mark.parametrize(("method", "content_type"), [("PUT", "application/json"), ("PATCH", "application/merge-patch+json")])
async def test_standalone_mode_refuses_health_writes_with_405_and_the_reason(
    tmp_path: Path, method: str, content_type: str
) -> None:
    source = ManualSecretSource([cluster_secret("east", 1)], "1")
    async with running_gateway(tmp_path, source) as gw, gw.session() as s:
        body = json.dumps({"status": {"healthy": True}})
        async with s.request(method, HEALTH, data=body, headers={"Content-Type": content_type}) as resp:
            assert resp.headers["Allow"] == "GET, HEAD"
            assert (resp.status, await resp.json()) == (
                405,
                failure(
                    405,
                    "MethodNotAllowed",
                    f'{method} is not supported on the health of clustergateways.cluster.core.oam.dev "east" in '
                    "standalone mode: there is no cluster Secret in a hosting cluster to store it on",
                ),
            )
        async with s.get(HEALTH) as resp:
            assert (resp.status, (await resp.json())["status"]) == (200, {"healthy": False})


def is_secret_patch(request: Any) -> bool:
    return bool(request.method == "PATCH")


async def test_a_conflicting_secret_patch_is_retried(hosted: HostingGateway) -> None:
    hosted.api.inject_failure(409, count=2, when=is_secret_patch)
    code, answer = await call(hosted, "PUT", {"status": {"healthy": True}})
    assert code == 200, answer
    assert [r for r in hosted.api.requests if r.startswith("PATCH")] == [f"PATCH {SECRET_PATH}"] * 3
    assert answer == expected_gateway(stored(hosted.api), {"healthy": True})


async def test_a_hosting_cluster_failure_is_500_without_the_secret(hosted: HostingGateway) -> None:
    hosted.api.inject_failure(500, when=is_secret_patch)
    assert await call(hosted, "PUT", {"status": {"healthy": True}}) == (
        500,
        failure(500, "InternalError", "the hosting cluster refused the Secret patch (500): injected failure 500"),
    )
    assert "annotations" not in stored(hosted.api)["metadata"]


async def test_a_secret_deleted_before_the_informer_noticed_is_404(hosted: HostingGateway) -> None:
    hosted.api.inject_failure(404, when=is_secret_patch)
    assert await call(hosted, "PUT", {"status": {"healthy": True}}) == (
        404,
        failure(
            404,
            "NotFound",
            'no such cluster east: clustergateways.cluster.core.oam.dev "east" not found',
            {"name": "east", "group": "cluster.core.oam.dev", "kind": "clustergateways"},
        ),
    )


async def test_without_patch_on_secrets_in_deploy_the_write_fails_naming_the_refusal(hosted: HostingGateway) -> None:
    documents = deploy_documents()
    for doc in documents:
        for rule in doc.get("rules") or []:
            if "secrets" in rule.get("resources", []):
                rule["verbs"] = [verb for verb in rule["verbs"] if verb != "patch"]
    hosted.api.rbac = deploy_rbac(documents)
    hosted.api.refusals_expected = True
    sa = "system:serviceaccount:vela-system:gateway-apiserver"
    assert await call(hosted, "PUT", {"status": {"healthy": True}}) == (
        500,
        failure(
            500,
            "InternalError",
            f'the hosting cluster refused the Secret patch (403): secrets "east" is forbidden: User "{sa}" cannot patch '
            'resource "secrets" in API group "" in the namespace "vela-system"',
        ),
    )


MEMBER_VERSION = "v1.32.0-fake-member"  # what the fake member's /version says


@pytest.mark.parametrize(
    ("method", "content_type", "body", "status"),
    [
        ("PUT", "application/json", {"status": {"healthy": False, "healthyReason": "Unauthorized"}}, (False, "Unauthorized")),
        (
            "PATCH",
            "application/merge-patch+json",
            {"status": {"healthyReason": "ConnectionTimeout"}},
            (True, "ConnectionTimeout"),
        ),
        ("PATCH", "application/json-patch+json", [{"op": "replace", "path": "/status/healthy", "value": False}], (False, None)),
    ],
)
async def test_a_writes_answer_shows_the_status_a_get_shows_right_after_it(
    kube_apiserver: FakeKubeAPIServer, member: Any, tmp_path: Path, method: str, content_type: str, body: Any, status: Any
) -> None:
    """The prober's facts (lastProbeTime, kubernetesVersion) stay in the answer, as in the object the write leads to."""
    add_cluster(kube_apiserver, "east", member.url, token=member.token, ca_pem=member.ca_pem)
    kube_apiserver.users[PROBER_TOKEN] = {"username": "prober", "uid": "p-1", "groups": ["probers"]}
    kube_apiserver.policy = [
        PolicyRule(users=("prober",), verbs=("get", "update", "patch"), resources=("clustergateways/health",))
    ]
    async with hosting_gateway(tmp_path, kube_apiserver) as gw:
        assert gw.server.app is not None
        await gw.server.app[HEALTH_PROBER].probe_all()  # one round now; the fixture runs no rounds of its own
        probed = dict(gw.server.registry.get("east").manifest["status"])
        assert probed == {"healthy": True, "lastProbeTime": probed["lastProbeTime"], "kubernetesVersion": MEMBER_VERSION}

        code, answer = await call(gw, method, body, content_type=content_type)
        assert code == 200, answer
        healthy, reason = status
        want = {"healthy": healthy, **({"healthyReason": reason} if reason else {})}
        assert answer["status"] == {**want, "lastProbeTime": probed["lastProbeTime"], "kubernetesVersion": MEMBER_VERSION}
        # A GET at the answer's resourceVersion waits for the informer, then shows that same object.
        params = {"resourceVersion": answer["metadata"]["resourceVersion"]}
        headers = {"Authorization": f"Bearer {kube_apiserver.token}"}
        async with gw.session() as client, client.get(f"{CLUSTERGATEWAYS}/east", params=params, headers=headers) as resp:
            assert resp.status == 200
            got = await resp.json()
        assert got["status"] == answer["status"]
        # Its resourceVersion may be later than the Secret's: the registry's own versions also count probe changes.
        unversioned = [{**obj, "metadata": {**obj["metadata"], "resourceVersion": ""}} for obj in (got, answer)]
        assert unversioned[0] == unversioned[1]


async def test_under_ocm_integration_the_answer_takes_the_endpoint_from_the_managed_cluster(
    kube_apiserver: FakeKubeAPIServer, tmp_path: Path
) -> None:
    """A Secret without an endpoint is a cluster through its ManagedCluster: the write's answer is that cluster too."""
    kube_apiserver.rbac = with_ocm_component()
    kube_apiserver.policy = [PolicyRule(groups=("system:masters",))]
    kube_apiserver.install_managed_cluster_crd()
    kube_apiserver.create_managed_cluster("east", url="https://east-from-ocm.invalid:6443")
    kube_apiserver.create_secret(SECRET_NAMESPACE, "east", labels={CREDENTIAL_LABEL: "ServiceAccountToken"}, data={"token": "t"})
    async with hosting_gateway(tmp_path, kube_apiserver, ocm_integration=True) as gw:
        body = {"status": {"healthy": True, "healthyReason": ""}}
        code, answer = await call(gw, "PUT", body, token=kube_apiserver.token)
    assert code == 200, answer
    assert answer["spec"]["access"]["endpoint"]["const"]["address"] == "https://east-from-ocm.invalid:6443"
    assert answer["status"] == {"healthy": True}
