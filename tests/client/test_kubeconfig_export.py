"""`gateway-apiserver kubeconfig`: its output drives the real kubectl to member clusters through the hub,
as the hub's own user (token, client certificate, exec plugin)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.hub_users import certificate_user, kubeconfig_with_user
from tests.fakes.kube_apiserver import kubectl_json

from .conftest import CLIENTS, Hub

REPO = Path(__file__).resolve().parents[2]
PROXY = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways/{}/proxy"


async def export(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> tuple[int, str, str]:
    """Run `gateway-apiserver kubeconfig ARGS` as its own process (it may call the hub, which this loop serves)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_apiserver",
        "kubeconfig",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd)},
        cwd=cwd,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def exported(path: Path, *args: str, **kwargs: Any) -> Path:
    code, out, err = await export(*args, **kwargs)
    assert (code, err) == (0, "")
    return _write(path, out)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def configmap_names(kubeconfig: Path, *args: str) -> list[str]:
    listed = await kubectl_json(kubeconfig, *args, "get", "configmaps", "-n", "default")
    return [item["metadata"]["name"] for item in listed["items"]]


async def test_kubectl_reaches_the_member_with_the_hubs_token(hub: Hub) -> None:
    hub_kubeconfig = hub.token_kubeconfig()
    out = await exported(hub.directory / "m1.kubeconfig", "m1", "--hub-kubeconfig", str(hub_kubeconfig))

    assert await configmap_names(out) == ["m1-a", "m1-b"]
    assert hub.proxy_reviews() == [("alice", "m1")]
    config = yaml.safe_load(out.read_text())
    hub_config = yaml.safe_load(hub_kubeconfig.read_text())
    assert config["current-context"] == "m1"
    assert config["clusters"] == [
        {"name": "m1", "cluster": {**hub_config["clusters"][0]["cluster"], "server": hub.gateway.url + PROXY.format("m1")}}
    ]
    assert config["users"] == hub_config["users"]
    assert config["contexts"] == [{"name": "m1", "context": {"cluster": "m1", "user": "hub-user"}}]


async def test_client_certificate_files_named_relative_to_the_hub_kubeconfig_still_work(hub: Hub, tmp_path: Path) -> None:
    _, pair = certificate_user(hub.gateway, "carol", (CLIENTS,))
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    (hub_dir / "carol.crt").write_bytes(pair.cert_pem)
    (hub_dir / "carol.key").write_bytes(pair.key_pem)
    (hub_dir / "ca.crt").write_bytes(hub.gateway.ca_file.read_bytes())
    hub_kubeconfig = kubeconfig_with_user(
        hub_dir / "config", hub.gateway.url, b"", {"client-certificate": "carol.crt", "client-key": "carol.key"}
    )
    config = yaml.safe_load(hub_kubeconfig.read_text())
    del config["clusters"][0]["cluster"]["certificate-authority-data"]
    config["clusters"][0]["cluster"]["certificate-authority"] = "ca.crt"
    hub_kubeconfig.write_text(yaml.safe_dump(config))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = await exported(elsewhere / "m2.kubeconfig", "m2", "--hub-kubeconfig", "../hub/config", cwd=elsewhere)

    assert await configmap_names(out) == ["m2-a", "m2-b"]
    assert hub.proxy_reviews() == [("carol", "m2")]
    written = yaml.safe_load(out.read_text())
    assert written["clusters"][0]["cluster"]["certificate-authority"] == str(hub_dir / "ca.crt")
    assert written["users"][0]["user"] == {
        "client-certificate": str(hub_dir / "carol.crt"),
        "client-key": str(hub_dir / "carol.key"),
    }


async def test_kubectl_runs_the_hubs_exec_plugin_for_the_member(hub: Hub) -> None:
    plugin = hub.exec_user()
    out = await exported(hub.directory / "m1.kubeconfig", "m1", "--hub-kubeconfig", str(hub.kubeconfig("exec", plugin.user())))

    assert await configmap_names(out) == ["m1-a", "m1-b"]
    assert plugin.runs == 1  # run by kubectl: the command itself never ran it
    assert hub.proxy_reviews() == [(plugin.user_name(1), "m1")]


async def test_all_writes_one_context_per_cluster_gateway_from_the_hub(hub: Hub) -> None:
    out = await exported(hub.directory / "all.kubeconfig", "--all", "--hub-kubeconfig", str(hub.token_kubeconfig()))

    config = yaml.safe_load(out.read_text())
    assert [c["name"] for c in config["contexts"]] == ["m1", "m2"]
    assert "current-context" not in config  # a fleet has no default member: kubectl needs --context
    assert await configmap_names(out, "--context", "m2") == ["m2-a", "m2-b"]
    assert await configmap_names(out, "--context", "m1") == ["m1-a", "m1-b"]


async def test_the_context_is_chosen_from_kubeconfig_files_merged_as_kubectl_merges_them(hub: Hub, tmp_path: Path) -> None:
    token = hub.token_kubeconfig()
    other = yaml.safe_load(token.read_text())
    other["contexts"][0]["name"] = "elsewhere"
    other["clusters"][0]["cluster"]["server"] = "https://nonexistent.invalid"
    other["clusters"][0]["name"] = "other"
    other["contexts"][0]["context"]["cluster"] = "other"
    first = tmp_path / "first.kubeconfig"
    first.write_text(yaml.safe_dump({**other, "current-context": "elsewhere"}))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": f"{first}{os.pathsep}{token}"}

    out = await exported(tmp_path / "m2.kubeconfig", "m2", "--context", "hub", env=env)

    assert await configmap_names(out) == ["m2-a", "m2-b"]
    code, text, _ = await export("m2", env=env)  # the current-context of the first file that sets one
    assert code == 0 and yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == "https://nonexistent.invalid" + PROXY.format(
        "m2"
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a CLUSTER or --all"),
        (["m1", "--all"], "give a CLUSTER or --all, not both"),
        (["--nope"], "unrecognized arguments: --nope"),
        (["../m1"], "invalid cluster name '../m1': a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"),
        (["m1", "--hub-kubeconfig", "/nonexistent/config"], "--hub-kubeconfig /nonexistent/config: no such file"),
        (["m1", "--context", "nope"], "--context nope: no such context"),
    ],
)
async def test_a_bad_request_is_one_line_and_exit_2(hub: Hub, args: list[str], message: str) -> None:
    if "--hub-kubeconfig" not in args:
        args = [*args, "--hub-kubeconfig", str(hub.token_kubeconfig())]
    code, out, err = await export(*args)
    assert (code, out) == (2, "")
    assert err.startswith(f"gateway-apiserver kubeconfig: error: {message}") and err.count("\n") == 1, err


async def test_all_says_why_the_hub_did_not_list_its_clusters(hub: Hub, tmp_path: Path) -> None:
    hub.gateway.api.users["dave-token"] = {"username": "dave", "uid": "d", "groups": []}  # may list nothing
    refused = kubeconfig_with_user(tmp_path / "dave", hub.gateway.url, hub.gateway.ca_file.read_bytes(), {"token": "dave-token"})
    code, _, err = await export("--all", "--hub-kubeconfig", str(refused))
    assert code == 2
    assert err == (
        f"gateway-apiserver kubeconfig: error: cannot list clustergateways on the hub {hub.gateway.url}: 403: "
        'clustergateways.cluster.core.oam.dev is forbidden: User "dave" cannot list resource "clustergateways" '
        'in API group "cluster.core.oam.dev" at the cluster scope\n'
    )
    assert "dave-token" not in err

    gone = f"https://127.0.0.1:{_closed_port()}"
    down = kubeconfig_with_user(tmp_path / "down", gone, hub.gateway.ca_file.read_bytes(), {"token": "dave-token"})
    code, _, err = await export("--all", "--hub-kubeconfig", str(down))
    assert code == 2
    assert err.startswith(f"gateway-apiserver kubeconfig: error: cannot reach the hub {gone}: ") and err.count("\n") == 1, err
