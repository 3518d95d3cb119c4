"""RequestHeaderConfig (ConfigMap keys, flag overrides) and AuthenticationConfigWatcher against the fake kube-apiserver."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import Configuration

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.registry.informer import load_hosting_config
from gateway_apiserver.security.authentication import Authenticator
from gateway_apiserver.security.identity import ANONYMOUS
from gateway_apiserver.security.requestheader import (
    AuthenticationConfigWatcher,
    RequestHeaderConfig,
    RequestHeaderConfigError,
    RequestHeaderFlags,
)
from tests.fakes.kube_apiserver import AUTH_CONFIGMAP, FakeKubeAPIServer
from tests.fakes.kube_rbac import deploy_documents, deploy_rbac
from tests.fakes.pki import CertKey, issue_client_cert, make_ca

pytestmark = pytest.mark.timeout(30)

FRONT_PROXY_CA = make_ca("front-proxy-ca")
CLIENT_CA = make_ca("kubernetes-ca")


def configmap_data(fake: FakeKubeAPIServer) -> dict[str, str]:
    return dict(fake.store.get("configmaps", *AUTH_CONFIGMAP)["data"])


# --- from_configmap -------------------------------------------------------------------------


def test_from_configmap_reads_the_keys_kube_writes(kube_apiserver: FakeKubeAPIServer) -> None:
    kube_apiserver.set_authentication_configmap(
        client_ca_pem=CLIENT_CA.cert_pem, requestheader_ca_pem=FRONT_PROXY_CA.cert_pem, uid_headers=["X-Remote-Uid"]
    )
    data = configmap_data(kube_apiserver)
    assert data["requestheader-allowed-names"] == '["front-proxy-client"]'  # JSON array strings, as kube
    config = RequestHeaderConfig.from_configmap(data)
    assert config == RequestHeaderConfig(
        ca_pem=FRONT_PROXY_CA.cert_pem,
        allowed_names=("front-proxy-client",),
        username_headers=("X-Remote-User",),
        group_headers=("X-Remote-Group",),
        extra_prefixes=("X-Remote-Extra-",),
        uid_headers=("X-Remote-Uid",),
        client_ca_pem=CLIENT_CA.cert_pem,
    )
    assert "front-proxy-ca" in config.describe()
    assert "BEGIN CERTIFICATE" not in repr(config)


def test_missing_and_null_keys_are_empty_without_defaults() -> None:
    assert RequestHeaderConfig.from_configmap({}) == RequestHeaderConfig()
    config = RequestHeaderConfig.from_configmap(
        {"requestheader-allowed-names": "null", "requestheader-username-headers": "", "requestheader-group-headers": "[]"}
    )
    assert config == RequestHeaderConfig()
    assert RequestHeaderConfig.from_configmap({"requestheader-username-headers": '[" X-User ", ""]'}).username_headers == (
        "X-User",
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"requestheader-allowed-names": "front-proxy-client"}, "'requestheader-allowed-names': invalid JSON"),
        ({"requestheader-group-headers": '{"a": 1}'}, "'requestheader-group-headers': expected a JSON array of strings"),
        ({"requestheader-username-headers": "[1, 2]"}, "expected a JSON array of strings"),
        ({"requestheader-client-ca-file": "not a pem"}, "'requestheader-client-ca-file': not a PEM certificate bundle"),
        ({"client-ca-file": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "'client-ca-file'"),
    ],
)
def test_bad_configmap_values_give_clear_errors(data: dict[str, str], fragment: str) -> None:
    with pytest.raises(RequestHeaderConfigError) as info:
        RequestHeaderConfig.from_configmap(data)
    assert fragment in str(info.value)


def test_flags_override_single_keys(tmp_path: Path) -> None:
    base = RequestHeaderConfig.from_configmap(
        {
            "requestheader-client-ca-file": FRONT_PROXY_CA.cert_pem.decode(),
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "client-ca-file": CLIENT_CA.cert_pem.decode(),
        }
    )
    assert base.merged(RequestHeaderFlags()) == base
    other_ca = make_ca("other-front-proxy-ca")
    (tmp_path / "fp.crt").write_bytes(other_ca.cert_pem)
    merged = base.merged(
        RequestHeaderFlags(
            requestheader_client_ca_file=tmp_path / "fp.crt",
            requestheader_allowed_names="proxy-a, proxy-b",
            requestheader_extra_headers_prefix=["X-Extra-", "X-Remote-Extra-"],
        )
    )
    assert merged.ca_pem == other_ca.cert_pem
    assert merged.allowed_names == ("proxy-a", "proxy-b")
    assert merged.extra_prefixes == ("X-Extra-", "X-Remote-Extra-")
    # Keys without a flag come from the ConfigMap.
    assert (merged.username_headers, merged.group_headers, merged.client_ca_pem) == (
        ("X-Remote-User",),
        ("X-Remote-Group",),
        CLIENT_CA.cert_pem,
    )
    # An empty --requestheader-allowed-names is given: any CN.
    assert base.merged(RequestHeaderFlags(requestheader_allowed_names="")).allowed_names == ()


def test_unreadable_ca_flag_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RequestHeaderConfigError, match=r"--client-ca-file=.*missing\.crt"):
        RequestHeaderConfig().merged(RequestHeaderFlags(client_ca_file=tmp_path / "missing.crt"))
    (tmp_path / "bad.crt").write_text("garbage")
    with pytest.raises(RequestHeaderConfigError, match=r"--requestheader-client-ca-file=.*not a PEM"):
        RequestHeaderConfig().merged(RequestHeaderFlags(requestheader_client_ca_file=str(tmp_path / "bad.crt")))


# --- the watcher ------------------------------------------------------------------------------


class Changes:
    """Records on_change calls."""

    def __init__(self) -> None:
        self.configs: list[RequestHeaderConfig] = []
        self.fail_next = False

    def __call__(self, config: RequestHeaderConfig) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom")
        self.configs.append(config)

    @property
    def last(self) -> RequestHeaderConfig:
        return self.configs[-1]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


@pytest.fixture
async def hosting(kube_apiserver: FakeKubeAPIServer, tmp_path: Path) -> Configuration:
    return await load_hosting_config(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))


Start = Callable[..., AuthenticationConfigWatcher]


@pytest.fixture
async def start_watcher(hosting: Configuration) -> AsyncIterator[Start]:
    tasks: list[asyncio.Task[None]] = []

    def start(on_change: Callable[[RequestHeaderConfig], object], **knobs: Any) -> AuthenticationConfigWatcher:
        options: dict[str, Any] = {"watch_timeout": 30.0, "backoff_base": 0.05, "backoff_cap": 0.3, **knobs}
        watcher = AuthenticationConfigWatcher(hosting, on_change, **options)
        tasks.append(asyncio.create_task(watcher.run()))
        return watcher

    yield start
    for task in tasks:
        task.cancel()
    async with asyncio.timeout(2):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)  # cancellation ends it cleanly


async def test_watcher_follows_rotation_deletion_and_restarts(
    kube_apiserver: FakeKubeAPIServer, start_watcher: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway_apiserver.security.requestheader")
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=FRONT_PROXY_CA.cert_pem)
    changes = Changes()
    watcher = start_watcher(changes)
    await asyncio.wait_for(watcher.synced.wait(), 5)
    assert changes.last.ca_pem == FRONT_PROXY_CA.cert_pem
    assert list(changes.last.allowed_names) == ["front-proxy-client"]

    rotated = make_ca("front-proxy-ca-2")
    bundle = rotated.cert_pem + FRONT_PROXY_CA.cert_pem  # kube keeps the old CA in the bundle while rotating
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=bundle, allowed_names=["front-proxy-client", "p2"])
    await wait_for(lambda: changes.last.ca_pem == bundle)
    assert changes.last.allowed_names == ("front-proxy-client", "p2")

    # Rotated while the API server was down, and history lost: the watch gets 410 and the watcher relists.
    await kube_apiserver.stop()
    final = make_ca("front-proxy-ca-3")
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=final.cert_pem)
    kube_apiserver.compact()
    await kube_apiserver.start()
    await wait_for(lambda: changes.last.ca_pem == final.cert_pem)
    assert watcher.lists == 2

    kube_apiserver.delete_authentication_configmap()
    await wait_for(lambda: changes.last.ca_pem is None)
    assert changes.last == RequestHeaderConfig()
    assert "not found; no front proxy" in caplog.text
    # Nothing changed in between: no duplicate deliveries.
    assert all(a != b for a, b in zip(changes.configs, changes.configs[1:], strict=False))


async def test_missing_configmap_means_no_front_proxy_and_logs_once(
    kube_apiserver: FakeKubeAPIServer, start_watcher: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway_apiserver.security.requestheader")
    changes = Changes()
    watcher = start_watcher(changes)
    await asyncio.wait_for(watcher.synced.wait(), 5)
    assert changes.configs == [RequestHeaderConfig()]
    # A restart that lost history: the watcher relists and sees the same absence; still one log line.
    await kube_apiserver.stop()
    kube_apiserver.create_secret("elsewhere", "unrelated")
    kube_apiserver.compact()
    await kube_apiserver.start()
    await wait_for(lambda: watcher.lists >= 2)
    assert caplog.text.count("not found") == 1
    kube_apiserver.set_authentication_configmap(client_ca_pem=CLIENT_CA.cert_pem)
    await wait_for(lambda: changes.last.client_ca_pem == CLIENT_CA.cert_pem)
    assert changes.last.ca_pem is None  # kube writes no requestheader keys without a requestheader CA


async def test_flags_win_and_invalid_configmap_keeps_previous(
    kube_apiserver: FakeKubeAPIServer, start_watcher: Start, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    (tmp_path / "client-ca.crt").write_bytes(CLIENT_CA.cert_pem)
    flags = RequestHeaderFlags(client_ca_file=tmp_path / "client-ca.crt", requestheader_allowed_names="my-proxy")
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=FRONT_PROXY_CA.cert_pem)
    changes = Changes()
    watcher = start_watcher(changes, flags=flags)
    await asyncio.wait_for(watcher.synced.wait(), 5)
    assert (changes.last.ca_pem, changes.last.client_ca_pem, changes.last.allowed_names) == (
        FRONT_PROXY_CA.cert_pem,
        CLIENT_CA.cert_pem,
        ("my-proxy",),
    )
    data = configmap_data(kube_apiserver)
    kube_apiserver.put_configmap(*AUTH_CONFIGMAP, {**data, "requestheader-group-headers": "X-Remote-Group"})
    await wait_for(lambda: "ignoring invalid ConfigMap" in caplog.text)
    assert len(changes.configs) == 1
    kube_apiserver.put_configmap(*AUTH_CONFIGMAP, {**data, "requestheader-group-headers": json.dumps(["X-G"])})
    await wait_for(lambda: changes.last.group_headers == ("X-G",))


async def test_on_change_failure_and_forbidden_are_survived(
    kube_apiserver: FakeKubeAPIServer, start_watcher: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway_apiserver.security.requestheader")
    # Installed without the RoleBinding to extension-apiserver-authentication-reader: the cluster says 403.
    kube_apiserver.rbac = deploy_rbac([d for d in deploy_documents() if "authentication-reader" not in d["metadata"]["name"]])
    kube_apiserver.refusals_expected = True
    changes = Changes()
    changes.fail_next = True
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=FRONT_PROXY_CA.cert_pem)
    watcher = start_watcher(changes)
    await wait_for(
        lambda: "grant it with a RoleBinding in kube-system to the Role extension-apiserver-authentication-reader" in caplog.text
    )
    assert kube_apiserver.forbidden[0] == (
        'configmaps "extension-apiserver-authentication" is forbidden: '
        'User "system:serviceaccount:vela-system:gateway-apiserver" cannot list resource "configmaps" in API group "" '
        'in the namespace "kube-system"'
    )
    kube_apiserver.rbac = deploy_rbac()  # the binding is applied: the watcher gets through on its next try
    await wait_for(lambda: "on_change failed" in caplog.text)
    assert not watcher.synced.is_set()
    # The next change is delivered.
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=FRONT_PROXY_CA.cert_pem, allowed_names=[])
    await asyncio.wait_for(watcher.synced.wait(), 5)
    assert changes.last.allowed_names == ()


async def test_stalled_watch_is_dropped(kube_apiserver: FakeKubeAPIServer, start_watcher: Start) -> None:
    kube_apiserver.bookmark_interval = None
    changes = Changes()
    watcher = start_watcher(changes, inactivity_timeout=0.5)
    await asyncio.wait_for(watcher.synced.wait(), 5)
    await wait_for(lambda: watcher.watches >= 3)  # reconnected after each silent period
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=FRONT_PROXY_CA.cert_pem)
    await wait_for(lambda: changes.last.ca_pem == FRONT_PROXY_CA.cert_pem)


# --- end to end: rotation reaches the authenticator -----------------------------------------


def front_proxy_cert(ca: CertKey) -> Any:
    return issue_client_cert(ca, "front-proxy-client").cert


async def test_rotated_requestheader_ca_reaches_the_authenticator(
    kube_apiserver: FakeKubeAPIServer, start_watcher: Start
) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    headers = CIMultiDictProxy(CIMultiDict({"X-Remote-User": "alice"}))
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=FRONT_PROXY_CA.cert_pem)
    authenticator = Authenticator()
    watcher = start_watcher(authenticator.update)
    await asyncio.wait_for(watcher.synced.wait(), 5)
    old_cert = front_proxy_cert(FRONT_PROXY_CA)
    assert (await authenticator.authenticate(headers=headers, peer_certificate=old_cert)).name == "alice"

    new_ca = make_ca("front-proxy-ca-rotated")
    kube_apiserver.set_authentication_configmap(requestheader_ca_pem=new_ca.cert_pem)
    await wait_for(lambda: authenticator.config.ca_pem == new_ca.cert_pem)
    assert (await authenticator.authenticate(headers=headers, peer_certificate=front_proxy_cert(new_ca))).name == "alice"
    with pytest.raises(StatusError) as info:  # a certificate from the retired CA: refused
        await authenticator.authenticate(headers=headers, peer_certificate=old_cert)
    assert (info.value.code, info.value.reason) == (401, "Unauthorized")

    kube_apiserver.delete_authentication_configmap()
    await wait_for(lambda: authenticator.config.ca_pem is None)
    assert await authenticator.authenticate(headers=headers, peer_certificate=front_proxy_cert(new_ca)) == ANONYMOUS
