"""FileSecretSource: cluster Secrets from a directory of manifests and from kubeconfig contexts."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_apiserver.registry.conversion import secret_to_cluster_gateway
from gateway_apiserver.registry.kubeconfig_contexts import context_object_name
from gateway_apiserver.registry.model import CredentialType, EndpointType
from gateway_apiserver.registry.source import Secret, WatchEventType
from gateway_apiserver.registry.standalone import FileSecretSource
from tests.fakes.gateway import running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.pki import CertKey, issue_client_cert, issue_server_cert, make_ca, write_pair

NS = "vela-system"
CRED = "cluster.core.oam.dev/cluster-credential-type"
ENDPOINT = "cluster.core.oam.dev/cluster-endpoint-type"
POLL = 0.02
PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
EXEC = {"apiVersion": "client.authentication.k8s.io/v1", "command": "get-token", "args": ["--cluster", "c1"]}


def b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def unb64(value: str) -> str:
    return base64.b64decode(value).decode()


class RecordingSink:
    """A SecretSink that keeps the current Secrets and records the state after each call.

    The source must send one `replace` first, then one `apply` per change, never bookmarks.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[Secret], str]] = []
        self.events: list[tuple[WatchEventType, str, str]] = []  # (type, name, resourceVersion)
        self.state: dict[str, Secret] = {}
        self._changed = asyncio.Event()

    def replace(self, secrets: Sequence[Secret], resource_version: str) -> None:
        assert not self.calls, "replace must come once, first"
        self.state = {s["metadata"]["name"]: s for s in secrets}
        self.calls.append((list(secrets), resource_version))
        self._changed.set()

    def apply(self, event_type: WatchEventType, secret: Secret) -> None:
        assert self.calls, "apply before the first replace"
        name, rv = secret["metadata"]["name"], secret["metadata"]["resourceVersion"]
        assert int(rv) > max(int(r) for _, r in self.calls), "event resourceVersions must increase"
        assert (name in self.state) == (event_type != "ADDED"), f"{event_type} {name} does not fit the state"
        if event_type == "DELETED":
            del self.state[name]
        else:
            self.state[name] = secret
        self.events.append((event_type, name, rv))
        self.calls.append((list(self.state.values()), rv))
        self._changed.set()

    def bookmark(self, resource_version: str) -> None:
        raise AssertionError("FileSecretSource never sends bookmarks")

    async def next(self, after: int, timeout: float = 3.0) -> tuple[dict[str, Secret], str]:
        """Wait for replace call number `after + 1`; return its Secrets by name and its RV."""
        async with asyncio.timeout(timeout):
            while len(self.calls) <= after:
                self._changed.clear()
                await self._changed.wait()
        secrets, rv = self.calls[after]
        return {s["metadata"]["name"]: s for s in secrets}, rv

    async def quiet(self, polls: int = 8) -> None:
        """Assert no replace happens during several poll intervals."""
        before = len(self.calls)
        await asyncio.sleep(POLL * polls)
        assert len(self.calls) == before


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    """Start a FileSecretSource; its task is cancelled at teardown."""
    tasks: list[asyncio.Task[None]] = []

    async def _start(secrets_dir: Path | None, kubeconfig: Path | None = None) -> RecordingSink:
        sink = RecordingSink()
        source = FileSecretSource(secrets_dir, kubeconfig, NS, poll_interval=POLL)
        tasks.append(asyncio.create_task(source.run(sink)))
        return sink

    yield _start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_MTIMES = itertools.count(1_700_000_000)  # seconds; each write gets a later one


def write(path: Path, content: str | dict[str, Any] | list[dict[str, Any]]) -> Path:
    """Write a manifest and give it a fresh mtime (so even a same-size rewrite is seen)."""
    if isinstance(content, dict):
        text = yaml.safe_dump(content)
    elif isinstance(content, list):
        text = yaml.safe_dump_all(content)
    else:
        text = content
    path.write_text(text)
    mtime_ns = next(_MTIMES) * 10**9
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def manifest(
    name: str,
    credential: str = "ServiceAccountToken",
    *,
    data: dict[str, str] | None = None,
    string_data: dict[str, str] | None = None,
    namespace: str | None = NS,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Secret manifest as a user writes it; by default a token cluster."""
    meta: dict[str, Any] = {"name": name, "labels": {CRED: credential, **(labels or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque"}
    if data is None and string_data is None:
        string_data = {"endpoint": f"https://{name}.example.com:6443", "token": f"token-of-{name}"}
    if data is not None:
        obj["data"] = {k: b64(v) for k, v in data.items()}
    if string_data is not None:
        obj["stringData"] = string_data
    return obj


@pytest.fixture(scope="module")
def client_pair() -> CertKey:
    return issue_client_cert(make_ca("member-ca"), "gateway")


# --- the Secrets directory ---------------------------------------------------------------------


async def test_first_load_replaces_even_when_empty(tmp_path: Path, start: Callable[..., Any]) -> None:
    sink = await start(tmp_path)
    secrets, rv = await sink.next(0)
    assert secrets == {}
    assert rv == "1"  # never "0", which clients read as "any version"
    await sink.quiet()


async def test_each_credential_type_loads_and_converts(tmp_path: Path, start: Callable[..., Any], client_pair: CertKey) -> None:
    write(tmp_path / "token.yaml", manifest("token-cluster"))
    write(
        tmp_path / "x509.yaml",
        manifest(
            "x509-cluster",
            "X509Certificate",
            data={
                "endpoint": "https://10.0.0.1:6443\n",
                "ca.crt": client_pair.cert_pem.decode(),
                "tls.crt": client_pair.cert_pem.decode(),
                "tls.key": client_pair.key_pem.decode(),
            },
        ),
    )
    write(
        tmp_path / "dynamic.json",
        json.dumps(manifest("exec-cluster", "Dynamic", string_data={"endpoint": "https://e", "exec": json.dumps(EXEC)})),
    )
    write(
        tmp_path / "proxy.yml",
        manifest("proxied", labels={ENDPOINT: "ClusterProxy"}, string_data={"token": "t"}),
    )
    sink = await start(tmp_path)
    secrets, rv = await sink.next(0)

    assert sorted(secrets) == ["exec-cluster", "proxied", "token-cluster", "x509-cluster"]
    assert rv == "4"
    assert sorted(s["metadata"]["resourceVersion"] for s in secrets.values()) == ["1", "2", "3", "4"]
    gateways = {name: secret_to_cluster_gateway(secret) for name, secret in secrets.items()}
    assert gateways["token-cluster"].credential.type is CredentialType.SERVICE_ACCOUNT_TOKEN
    assert gateways["token-cluster"].credential.token == "token-of-token-cluster"
    assert gateways["x509-cluster"].credential.type is CredentialType.X509_CERTIFICATE
    assert gateways["x509-cluster"].address == "https://10.0.0.1:6443"
    assert gateways["exec-cluster"].credential.type is CredentialType.DYNAMIC
    assert gateways["exec-cluster"].credential.exec_config == EXEC
    assert gateways["proxied"].endpoint_type is EndpointType.CLUSTER_PROXY


async def test_synthesised_metadata(tmp_path: Path, start: Callable[..., Any]) -> None:
    path = write(tmp_path / "a.yaml", manifest("a", namespace=None))  # a missing namespace means ours
    os.utime(path, ns=(1_600_000_000_123_456_789,) * 2)
    given = manifest("b")
    given["metadata"].update(uid="given-uid", creationTimestamp="2020-01-02T03:04:05Z", resourceVersion="999")
    write(tmp_path / "b.yaml", given)
    sink = await start(tmp_path)
    secrets, _ = await sink.next(0)

    a = secrets["a"]["metadata"]
    assert a["namespace"] == NS
    assert a["uid"] == str(uuid.uuid5(uuid.UUID("3f9d0c52-6b1e-5a47-8c2d-9e4f1a7b5c60"), f"{NS}/a"))
    assert a["creationTimestamp"] == "2020-09-13T12:26:40Z"  # the file's mtime, as RFC 3339
    b = secrets["b"]["metadata"]
    assert (b["uid"], b["creationTimestamp"]) == ("given-uid", "2020-01-02T03:04:05Z")
    assert b["resourceVersion"] == "2"  # always ours: a foreign RV would not order our changes


async def test_string_data_is_merged_into_data(tmp_path: Path, start: Callable[..., Any]) -> None:
    obj = manifest("c", data={"endpoint": "https://old", "ca": "x"}, string_data={"endpoint": "https://new"})
    write(tmp_path / "c.yaml", obj)
    sink = await start(tmp_path)
    secrets, _ = await sink.next(0)
    secret = secrets["c"]
    assert "stringData" not in secret
    assert {k: unb64(v) for k, v in secret["data"].items()} == {"endpoint": "https://new", "ca": "x"}


async def test_multi_document_files_and_lists(tmp_path: Path, start: Callable[..., Any]) -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-a-secret"}}
    listing = {"apiVersion": "v1", "kind": "List", "items": [manifest("in-list-1"), manifest("in-list-2")]}
    write(tmp_path / "multi.yaml", [manifest("doc-1"), configmap, listing])
    (tmp_path / "multi.yaml").write_text((tmp_path / "multi.yaml").read_text() + "---\n")  # empty last doc
    write(tmp_path / "list.json", json.dumps({"kind": "SecretList", "items": [manifest("in-json-list")]}))
    sink = await start(tmp_path)
    secrets, _ = await sink.next(0)
    assert sorted(secrets) == ["doc-1", "in-json-list", "in-list-1", "in-list-2"]


async def test_what_is_not_served(tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    unlabelled = manifest("unlabelled")
    del unlabelled["metadata"]["labels"]
    write(tmp_path / "unlabelled.yaml", unlabelled)  # the informer's label selector would skip it
    write(tmp_path / "elsewhere.yaml", manifest("elsewhere", namespace="default"))
    write(tmp_path / "notes.txt", manifest("not-a-manifest-suffix"))
    write(tmp_path / ".hidden.yaml", manifest("hidden"))
    (tmp_path / "sub.yaml").mkdir()
    write(tmp_path / "bad-name.yaml", manifest("Bad_Name"))  # the kube-apiserver would refuse these two
    write(tmp_path / "bad-value.yaml", manifest("bad-value", string_data={"token": 12345}))  # type: ignore[dict-item]
    write(tmp_path / "served.yaml", manifest("served"))
    with caplog.at_level(logging.WARNING):
        sink = await start(tmp_path)
        secrets, _ = await sink.next(0)
    assert sorted(secrets) == ["served"]
    warnings = sorted(r.getMessage() for r in caplog.records)
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{tmp_path / 'bad-name.yaml'}: skipping Secret 'Bad_Name': the name is invalid: ")
    assert warnings[1] == f"{tmp_path / 'bad-value.yaml'}: skipping Secret 'bad-value': stringData['token'] must be a string"


async def test_a_bad_manifest_is_skipped_with_one_warning(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    bad = write(tmp_path / "bad.yaml", "kind: Secret\nstringData:\n  token: s3cr3t-value\n   : [unbalanced\n")
    bad_json = write(tmp_path / "bad.json", '{"kind": "Secret", "data": {"token": "s3cr3t-value"')
    write(tmp_path / "good.yaml", manifest("good"))
    with caplog.at_level(logging.WARNING):
        sink = await start(tmp_path)
        secrets, _ = await sink.next(0)
        await sink.quiet()  # not re-parsed, hence not re-logged, while unchanged
    assert sorted(secrets) == ["good"]
    messages = sorted(r.getMessage() for r in caplog.records)
    assert len(messages) == 2
    assert messages[0].startswith(f"{bad_json}: skipped, not valid JSON: ")
    assert messages[1].startswith(f"{bad}: skipped, not valid YAML: ")
    assert all("\n" not in m and "s3cr3t" not in m for m in messages)


async def test_editing_a_file_bumps_only_that_secret(tmp_path: Path, start: Callable[..., Any]) -> None:
    write(tmp_path / "a.yaml", manifest("a"))
    path_b = write(tmp_path / "b.yaml", manifest("b"))
    sink = await start(tmp_path)
    before, rv = await sink.next(0)
    assert rv == "2"

    write(path_b, manifest("b", string_data={"endpoint": "https://moved.example.com", "token": "t"}))
    after, rv = await sink.next(1)
    assert rv == "3"
    assert after["a"] == before["a"]
    assert after["b"]["metadata"]["resourceVersion"] == "3"
    assert after["b"]["metadata"]["uid"] == before["b"]["metadata"]["uid"]
    assert after["b"]["metadata"]["creationTimestamp"] == before["b"]["metadata"]["creationTimestamp"]
    assert unb64(after["b"]["data"]["endpoint"]) == "https://moved.example.com"


async def test_touching_a_file_without_changing_it_changes_nothing(tmp_path: Path, start: Callable[..., Any]) -> None:
    path = write(tmp_path / "a.yaml", manifest("a"))
    sink = await start(tmp_path)
    await sink.next(0)
    write(path, path.read_text())
    await sink.quiet()


async def test_adding_and_deleting_files(tmp_path: Path, start: Callable[..., Any]) -> None:
    path_a = write(tmp_path / "a.yaml", manifest("a"))
    sink = await start(tmp_path)
    await sink.next(0)

    write(tmp_path / "b.yaml", manifest("b"))
    secrets, rv = await sink.next(1)
    assert (sorted(secrets), rv, secrets["b"]["metadata"]["resourceVersion"]) == (["a", "b"], "2", "2")

    path_a.unlink()
    secrets, rv = await sink.next(2)
    assert (sorted(secrets), rv) == (["b"], "3")  # a deletion moves the listing's RV on too
    assert sink.events == [("ADDED", "b", "2"), ("DELETED", "a", "3")]


async def test_an_edit_reaches_an_open_watch_as_modified(tmp_path: Path, start: Callable[..., Any]) -> None:
    from gateway_apiserver.registry.cache import ClusterRegistry

    path = write(tmp_path / "a.yaml", manifest("a"))
    registry = ClusterRegistry(NS)
    source = FileSecretSource(tmp_path, None, NS, poll_interval=POLL)
    task = asyncio.create_task(source.run(registry))
    try:
        await asyncio.wait_for(registry.synced.wait(), 3)
        watcher = registry.watch(since=registry.resource_version)
        write(path, manifest("a", labels={"env": "prod"}))
        await watcher.wait(3)
        [event] = watcher.drain()
        assert event.type == "MODIFIED" and event.object is not None and event.object.labels["env"] == "prod"
        assert not watcher.terminated
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_missing_directory_serves_nothing_until_it_appears(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "later"
    with caplog.at_level(logging.WARNING):
        sink = await start(directory)
        secrets, _ = await sink.next(0)
        await sink.quiet()
    assert secrets == {}
    assert len(caplog.records) == 1 and "cannot list it" in caplog.records[0].getMessage()
    directory.mkdir()
    write(directory / "a.yaml", manifest("a"))
    secrets, _ = await sink.next(1)
    assert sorted(secrets) == ["a"]


async def test_yaml_timestamps_stay_strings(tmp_path: Path, start: Callable[..., Any]) -> None:
    text = yaml.safe_dump(manifest("t")).replace("metadata:\n", "metadata:\n  creationTimestamp: 2021-05-06T07:08:09Z\n")
    write(tmp_path / "t.yaml", text)
    sink = await start(tmp_path)
    secrets, _ = await sink.next(0)
    assert secrets["t"]["metadata"]["creationTimestamp"] == "2021-05-06T07:08:09Z"


# --- kubeconfig contexts -----------------------------------------------------------------------


def kubeconfig(path: Path, contexts: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> Path:
    """Write a kubeconfig with one cluster and one user per context (all named after it)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": f"{n}-cluster", "cluster": c} for n, (c, _) in contexts.items()],
        "users": [{"name": f"{n}-user", "user": u} for n, (_, u) in contexts.items()],
        "contexts": [{"name": n, "context": {"cluster": f"{n}-cluster", "user": f"{n}-user"}} for n in contexts],
        "current-context": next(iter(contexts), ""),
    }
    return write(path, config)


def plain(secret: Secret) -> dict[str, str]:
    return {k: unb64(v) for k, v in secret["data"].items()}


async def test_kubeconfig_contexts_become_secrets(tmp_path: Path, start: Callable[..., Any], client_pair: CertKey) -> None:
    ca_pem = make_ca("server-ca").cert_pem
    certs = tmp_path / "certs"
    cert_path, _ = write_pair(certs, "client", client_pair)
    (certs / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "token").write_text("file-token\n")
    server = "https://127.0.0.1:6443"
    path = kubeconfig(
        tmp_path / "kubeconfig",
        {
            "token": ({"server": server, "certificate-authority-data": b64(ca_pem)}, {"token": "inline-token"}),
            "token-file": ({"server": server, "certificate-authority": "certs/ca.crt"}, {"tokenFile": "token"}),
            "cert-data": (
                {"server": server, "proxy-url": "socks5://proxy:1080"},
                {"client-certificate-data": b64(client_pair.cert_pem), "client-key-data": b64(client_pair.key_pem)},
            ),
            "cert-files": (
                {"server": server, "insecure-skip-tls-verify": True, "certificate-authority": "certs/ca.crt"},
                {"client-certificate": str(cert_path), "client-key": "certs/client.key"},
            ),
            "exec": (
                {"server": server},
                {"exec": {**EXEC, "env": [{"name": "A", "value": "1"}], "provideClusterInfo": True}},
            ),
            "exec-relative": ({"server": server}, {"exec": {**EXEC, "command": "./bin/get-token"}}),
        },
    )
    sink = await start(None, path)
    secrets, _ = await sink.next(0)

    assert sorted(secrets) == ["cert-data", "cert-files", "exec", "exec-relative", "token", "token-file"]
    for name, secret in secrets.items():
        assert secret["metadata"]["namespace"] == NS
        assert secret["metadata"]["name"] == name
        secret_to_cluster_gateway(secret)  # each converts cleanly
    token, token_file = plain(secrets["token"]), plain(secrets["token-file"])
    assert secrets["token"]["metadata"]["labels"] == {CRED: "ServiceAccountToken"}
    assert token == {"endpoint": server, "ca.crt": ca_pem.decode(), "token": "inline-token"}
    assert token_file == {"endpoint": server, "ca.crt": ca_pem.decode(), "token": "file-token"}
    cert_data, cert_files = plain(secrets["cert-data"]), plain(secrets["cert-files"])
    assert secrets["cert-data"]["metadata"]["labels"] == {CRED: "X509Certificate"}
    assert cert_data == {
        "endpoint": server,
        "proxy-url": "socks5://proxy:1080",
        "tls.crt": client_pair.cert_pem.decode(),
        "tls.key": client_pair.key_pem.decode(),
    }
    # insecure-skip-tls-verify: no CA, so the gateway shows the cluster as insecure
    assert cert_files == {k: v for k, v in cert_data.items() if k != "proxy-url"}
    assert secret_to_cluster_gateway(secrets["cert-files"]).insecure
    assert secrets["exec"]["metadata"]["labels"] == {CRED: "Dynamic"}
    assert json.loads(plain(secrets["exec"])["exec"]) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "get-token",  # a PATH lookup stays one
        "args": ["--cluster", "c1"],
        "env": [{"name": "A", "value": "1"}],
        "provideClusterInfo": True,
    }
    assert json.loads(plain(secrets["exec-relative"])["exec"])["command"] == str(tmp_path / "bin/get-token")


async def test_unusable_contexts_are_skipped_with_a_warning(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    good = ({"server": "https://a"}, {"token": "secret-token-value"})
    path = kubeconfig(
        tmp_path / "config",
        {
            "no-credential": ({"server": "https://a"}, {"username": "admin", "password": "pw"}),
            "half-cert": ({"server": "https://a"}, {"client-certificate-data": b64("x")}),
            "no-server": ({}, {"token": "t"}),
            "missing-token-file": ({"server": "https://a"}, {"tokenFile": "nope"}),
            "@@@": good,  # nothing to name a cluster after
            "ok": good,
        },
    )
    with caplog.at_level(logging.WARNING):
        sink = await start(None, path)
        secrets, _ = await sink.next(0)
    assert sorted(secrets) == ["ok"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 5
    skipped = {w.split("skipping context ")[1].split(":")[0] for w in warnings}
    assert skipped == {"'no-credential'", "'half-cert'", "'no-server'", "'missing-token-file'", "'@@@'"}
    assert all(w.startswith(f"kubeconfig {path}: skipping context ") for w in warnings)
    assert not any("secret-token-value" in w or "pw" in w.split(":")[-1] for w in warnings)


async def test_context_names_that_are_not_object_names_are_mapped_predictably(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    good = ({"server": "https://a"}, {"token": "t"})
    long_context = "Team/" + "x" * 300
    contexts = {
        "arn:aws:eks:us-east-1:123456789012:cluster/prod": good,
        "admin@Kind-Prod": good,
        "gke_my-project_europe-west1-b_c1": good,
        "Kind-Cluster": good,  # valid once lower-cased
        "dev.example.com": good,  # already valid: unchanged, dots kept
        "--Odd__Name--": good,
        long_context: good,
        # Clashes: the context that needs no change wins, then the first in sorted order.
        "kind-prod": good,
        "Kind@Prod": good,
        "kind prod": good,
        "KIND:PROD": good,
    }
    path = kubeconfig(tmp_path / "config", contexts)
    with caplog.at_level(logging.INFO, logger="gateway_apiserver.registry.kubeconfig_contexts"):
        sink = await start(None, path)
        secrets, _ = await sink.next(0)
    assert sorted(secrets) == sorted(
        [
            "arn-aws-eks-us-east-1-123456789012-cluster-prod",
            "admin-kind-prod",
            "gke-my-project-europe-west1-b-c1",
            "kind-cluster",
            "dev.example.com",
            "odd-name",
            ("team-" + "x" * 300)[:253],
            "kind-prod",
        ]
    )
    assert all(secret["metadata"]["name"] == name for name, secret in secrets.items())
    messages = [r.getMessage() for r in caplog.records]
    assert f"kubeconfig {path}: context 'admin@Kind-Prod' is served as cluster 'admin-kind-prod'" in messages
    clashes = sorted(m for m in messages if "already is" in m)
    assert clashes == [
        f"kubeconfig {path}: skipping context '{loser}': it would be served as 'kind-prod', which context 'kind-prod' already is"
        for loser in ("KIND:PROD", "Kind@Prod", "kind prod")
    ]


@pytest.mark.parametrize(
    ("context", "name"),
    [
        ("arn:aws:eks:us-east-1:123:cluster/prod", "arn-aws-eks-us-east-1-123-cluster-prod"),
        ("admin@Kind-Prod", "admin-kind-prod"),
        ("My.Cluster", "my.cluster"),
        ("a..b", "a-b"),
        ("a.-b", "a-b"),
        ("ünïcode", "n-code"),
        ("@@@", None),
        ("x" * 260, "x" * 253),
        ("x" * 252 + "/y", "x" * 252),
    ],
)
def test_the_context_name_mapping(context: str, name: str | None) -> None:
    assert context_object_name(context) == name


async def test_kubeconfig_reloads_when_a_file_it_names_changes(tmp_path: Path, start: Callable[..., Any]) -> None:
    token_path = write(tmp_path / "token", "first")
    path = kubeconfig(
        tmp_path / "config",
        {"a": ({"server": "https://a"}, {"tokenFile": "token"}), "b": ({"server": "https://b"}, {"token": "t"})},
    )
    sink = await start(None, path)
    secrets, rv = await sink.next(0)
    assert plain(secrets["a"])["token"] == "first"

    write(token_path, "second")  # a rotated token
    secrets, rv2 = await sink.next(1)
    assert plain(secrets["a"])["token"] == "second"
    assert (int(rv2), secrets["a"]["metadata"]["resourceVersion"], secrets["b"]["metadata"]["resourceVersion"]) == (
        int(rv) + 1,
        rv2,
        "2",
    )

    kubeconfig(path, {"b": ({"server": "https://b"}, {"token": "t"})})
    secrets, _ = await sink.next(2)
    assert sorted(secrets) == ["b"]


async def test_a_name_clash_is_won_by_the_directory(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    write(secrets_dir / "shared.yaml", manifest("shared"))
    path = kubeconfig(
        tmp_path / "config",
        {"shared": ({"server": "https://kubeconfig"}, {"token": "t"}), "own": ({"server": "https://own"}, {"token": "t"})},
    )
    with caplog.at_level(logging.WARNING):
        sink = await start(secrets_dir, path)
        secrets, _ = await sink.next(0)
        write(secrets_dir / "other.yaml", manifest("other"))
        await sink.next(1)
    assert sorted(secrets) == ["own", "shared"]
    assert plain(secrets["shared"])["endpoint"] == "https://shared.example.com:6443"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"Secret 'shared' from kubeconfig {path} is ignored: {secrets_dir / 'shared.yaml'} defines it first"]


async def test_an_unparseable_kubeconfig_is_skipped(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "config", "clusters: [\n  token: abc")
    with caplog.at_level(logging.WARNING):
        sink = await start(None, path)
        secrets, _ = await sink.next(0)
    assert secrets == {}
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"kubeconfig {path}: skipped, not valid YAML: ")


async def test_a_configmap_style_symlink_swap_is_seen(tmp_path: Path, start: Callable[..., Any]) -> None:
    # A mounted ConfigMap updates by re-pointing `..data`; sizes and mtimes may well be equal.
    for version, token in (("..v1", "aaaa"), ("..v2", "bbbb")):
        (tmp_path / version).mkdir()
        path = write(tmp_path / version / "a.yaml", manifest("a", string_data={"endpoint": "https://a", "token": token}))
        os.utime(path, ns=(10**18, 10**18))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "a.yaml").symlink_to("..data/a.yaml")
    sink = await start(tmp_path)
    secrets, _ = await sink.next(0)
    assert plain(secrets["a"])["token"] == "aaaa"

    (tmp_path / "..data.tmp").symlink_to("..v2")
    (tmp_path / "..data.tmp").replace(tmp_path / "..data")
    secrets, _ = await sink.next(1)
    assert plain(secrets["a"])["token"] == "bbbb"


# --- a file caught mid-save ---------------------------------------------------------------------


async def test_a_briefly_invalid_secrets_file_keeps_its_clusters_and_no_context_takes_over(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    shared = write(secrets_dir / "shared.yaml", manifest("shared"))
    path = kubeconfig(tmp_path / "config", {"shared": ({"server": "https://from-kubeconfig"}, {"token": "t"})})
    sink = await start(secrets_dir, path)
    secrets, _ = await sink.next(0)
    assert plain(secrets["shared"])["endpoint"] == "https://shared.example.com:6443"

    with caplog.at_level(logging.WARNING):
        write(shared, "kind: Secret\nstringData:\n  token: s3cr3t-value\n   : [unbalanced\n")  # an editor mid-save
        await sink.quiet()
        write(shared, "")  # `cat new > shared.yaml` truncates first
        await sink.quiet()
    assert sink.events == []  # no DELETED, no ADDED, no takeover by the kubeconfig context
    assert [r.getMessage() for r in caplog.records] == [
        f"Secret 'shared' from kubeconfig {path} is ignored: {shared} defines it first",  # once, at the first load
        f"{shared}: not valid YAML: while parsing a block mapping; did not find expected key at line 4, column 4; "
        "still serving the 1 Secret(s) it last defined until it is fixed or removed",
        f"{shared}: it is empty; still serving the 1 Secret(s) it last defined until it is fixed or removed",
    ]

    write(shared, manifest("shared", string_data={"endpoint": "https://saved.example.com", "token": "t2"}))
    secrets, rv = await sink.next(1)
    assert sink.events == [("MODIFIED", "shared", rv)]
    assert plain(secrets["shared"])["endpoint"] == "https://saved.example.com"


async def test_a_briefly_invalid_kubeconfig_keeps_its_contexts(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = kubeconfig(tmp_path / "config", {"a": ({"server": "https://a"}, {"token": "t"})})
    sink = await start(None, path)
    await sink.next(0)
    with caplog.at_level(logging.WARNING):
        write(path, "clusters: [\n  token: abc")
        await sink.quiet()
    assert sink.events == []
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"kubeconfig {path}: not valid YAML: ")
    assert caplog.records[0].getMessage().endswith("; still serving the 1 Secret(s) it last defined until it is fixed or removed")
    kubeconfig(path, {"b": ({"server": "https://b"}, {"token": "t"})})
    secrets, _ = await sink.next(2)
    assert sorted(secrets) == ["b"]


# --- tls-server-name, end to end --------------------------------------------------------------


async def test_tls_server_name_is_honoured_through_the_proxy(tmp_path: Path) -> None:
    """A member reached by IP whose certificate names only its tls-server-name: kubectl succeeds, so must we."""
    member = FakeMemberAPIServer()
    member.serving = issue_server_cert(member.ca, dns_names=("api.member.internal",), ip_addresses=())
    cluster = {"server": "", "certificate-authority-data": b64(member.ca_pem)}
    async with member:
        cluster["server"] = member.url
        path = kubeconfig(
            tmp_path / "config",
            {
                "named": ({**cluster, "tls-server-name": "api.member.internal"}, {"token": member.token}),
                "unnamed": (cluster, {"token": member.token}),
            },
        )
        source = FileSecretSource(None, path, NS, poll_interval=POLL)
        async with running_gateway(tmp_path, source) as gw, gw.session() as client:
            async with client.get(f"{PROXY}/named/proxy/api/v1/namespaces/default/configmaps") as resp:
                assert resp.status == 200
                assert (await resp.json())["kind"] == "ConfigMapList"
            upgrade = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}  # a tunnel dials on its own
            async with client.post(f"{PROXY}/named/proxy/echo/exec", headers=upgrade) as resp:
                assert resp.status == 200 and (await resp.json())["method"] == "POST"
            async with client.get(f"{PROXY}/unnamed/proxy/api/v1/namespaces/default/configmaps") as resp:
                assert resp.status == 502  # the certificate does not cover 127.0.0.1
                body = await resp.json()
            assert (body["kind"], body["code"], body["reason"]) == ("Status", 502, "BadGateway")
