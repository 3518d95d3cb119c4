"""The `gateway-apiserver` command: flag errors exit 2 with one line; standalone mode serves and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway_apiserver.config import ConfigError, parse_config, parse_feature_gates

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "gateway_apiserver", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env or {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")},
        cwd=REPO,
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--secure-port", "http"], "argument --secure-port: invalid int value: 'http'"),
        (["--secure-port", "70000"], "--secure-port 70000: must be between 1 and 65535"),
        (["--feature-gates", "Teleport=true"], "unrecognized feature gate: Teleport"),
        (["--feature-gates", "HealthinessCheck=maybe"], "invalid value of HealthinessCheck=maybe"),
        (["--standalone"], "--standalone needs --secrets-dir and/or --kubeconfig-clusters"),
        (["--standalone", "--secrets-dir", "examples/clusters", "--bind-address", "0.0.0.0"], "binds loopback only"),
        (["--secrets-dir", "examples/clusters"], "--secrets-dir and --kubeconfig-clusters need --standalone"),
        (["--standalone", "--secrets-dir", "/does/not/exist"], "--secrets-dir /does/not/exist: no such directory"),
        (["--tls-cert-file", "x.crt"], "must be given together"),
        (["--client-ca-file", "ca.crt"], "--client-ca-file ca.crt: no such file"),
        (["--cluster-gateway-proxy-config", "p.yaml"], "--cluster-gateway-proxy-config p.yaml: no such file"),
        (["--authentication-token-webhook-cache-ttl", "ten"], "invalid duration 'ten'"),
        (
            ["--standalone", "--secrets-dir", "examples/clusters", "--client-ca-file", "README.md"],
            "--client-ca-file: standalone mode has no delegated authentication",
        ),
        (["--kubeconfig", "/nope/kubeconfig"], "--kubeconfig /nope/kubeconfig: no such file"),
        (
            ["--standalone", "--secrets-dir", "examples/clusters", "--ocm-integration"],
            "--ocm-integration reads ManagedClusters from a hosting cluster; it cannot be used with --standalone",
        ),
        (["--ocm-integration=perhaps"], "argument --ocm-integration: invalid boolean value 'perhaps'"),
        (
            ["--hide-dangling-cluster-gateways"],
            "--hide-dangling-cluster-gateways hides clusters without a ManagedCluster; it needs --ocm-integration",
        ),
    ],
)
def test_bad_flags_print_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, stderr = run_cli(*args)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("gateway-apiserver: error: ")
    assert message in stderr


def test_hosting_mode_without_any_cluster_configuration_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["HOME"] = str(tmp_path)
    env.pop("KUBECONFIG", None)
    code, stderr = run_cli("--cert-dir", str(tmp_path / "certs"), "--secure-port", "1", env=env)
    assert code == 2, stderr
    assert stderr.startswith("gateway-apiserver: error: cannot load the hosting cluster configuration")
    assert stderr.count("\n") == 1


def test_a_bad_identity_exchange_rule_fails_at_startup(tmp_path: Path) -> None:
    rules = tmp_path / "proxy-config.yaml"
    rules.write_text(
        "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\n"
        "spec:\n  clientIdentityExchanger:\n    rules:\n    - name: broken\n      type: StaticMappingIdentityExchanger\n"
        "      source: {user: alice}\n"
    )
    code, stderr = run_cli(
        "--standalone",
        "--secrets-dir",
        "examples/clusters",
        "--cert-dir",
        str(tmp_path / "certs"),
        "--cluster-gateway-proxy-config",
        str(rules),
    )
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "broken" in stderr


def test_defaults_match_cluster_gateway() -> None:
    config = parse_config([])
    assert (config.secret_namespace, config.secure_port, config.bind_address) == ("vela-system", 9443, "0.0.0.0")
    assert config.feature_gates == {
        "HealthinessCheck": False,
        "SecretCache": True,
        "ClientIdentityPenetration": False,
        "OCMClusterCache": True,
    }


def test_go_durations() -> None:
    from gateway_apiserver.config import parse_duration

    assert [parse_duration(d) for d in ("10s", "1m30s", "500ms", "2h")] == [10, 90, 0.5, 7200]
    assert parse_config(["--authorization-webhook-cache-authorized-ttl", "1m"]).authorized_cache_ttl == 60


def test_go_style_booleans_and_gates() -> None:
    assert parse_config(["--standalone=true", "--secrets-dir", str(REPO / "examples/clusters")]).standalone
    assert parse_feature_gates("ClientIdentityPenetration=true, HealthinessCheck=T")["ClientIdentityPenetration"]
    with pytest.raises(ConfigError):
        parse_config(["--standalone=perhaps"])


def test_ocm_integration_is_off_by_default_and_a_go_style_boolean() -> None:
    assert parse_config([]).ocm_integration is False
    assert parse_config(["--ocm-integration"]).ocm_integration is True
    assert parse_config(["--ocm-integration=false"]).ocm_integration is False
    # The OCM add-on installer's arguments, as it passes them to cluster-gateway.
    installer = ["--secure-port=9443", "--secret-namespace=open-cluster-management-credentials", "--ocm-integration=true"]
    config = parse_config([*installer, "--feature-gates=HealthinessCheck=true,SecretCache=true"])
    assert (config.ocm_integration, config.feature_gates["OCMClusterCache"]) == (True, True)


def test_hiding_dangling_cluster_gateways_is_off_by_default_and_a_go_style_boolean() -> None:
    assert parse_config(["--ocm-integration"]).hide_dangling_cluster_gateways is False
    assert parse_config(["--ocm-integration", "--hide-dangling-cluster-gateways"]).hide_dangling_cluster_gateways is True
    assert parse_config(["--ocm-integration", "--hide-dangling-cluster-gateways=false"]).hide_dangling_cluster_gateways is False
    assert parse_config(["--hide-dangling-cluster-gateways=false"]).hide_dangling_cluster_gateways is False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_readme_run_command_serves_the_examples_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_apiserver",
        "--standalone",
        "--secrets-dir",
        str(REPO / "examples/clusters"),
        "--secure-port",
        str(port),
        "--cert-dir",
        str(tmp_path / "certs"),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ctx = None
        for _ in range(100):
            if (tmp_path / "certs" / "apiserver.crt").exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "apiserver.crt"))
                    async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/readyz", ssl=ctx) as r:
                        if r.status == 200:
                            break
                except (aiohttp.ClientError, ssl.SSLError, OSError):
                    pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the gateway did not become ready")
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"https://127.0.0.1:{port}/apis/cluster.core.oam.dev/v1alpha1/clustergateways", ssl=ctx) as r,
        ):
            body = await r.json()
        assert r.status == 200
        assert len(body["items"]) >= 3
        code, out, err = await kubectl_with(tmp_path / "certs" / f"kubeconfig-{port}", "get", "clustergateways", "-o", "name")
        assert code == 0, err
        assert "clustergateway.cluster.core.oam.dev/example-token" in out.split()
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as s:
                await s.get(f"https://{_non_loopback_address()}:{port}/readyz", ssl=ctx, timeout=aiohttp.ClientTimeout(total=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0


async def kubectl_with(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={kubeconfig.parent / 'cache'}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


def _non_loopback_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            address = str(s.getsockname()[0])
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address to check the loopback-only binding")
    return address


def test_health_probing_flags_and_their_defaults() -> None:
    standalone = ["--standalone", "--secrets-dir", "examples/clusters"]
    defaults = parse_config(standalone)
    assert (
        defaults.health_probe_interval,
        defaults.health_probe_timeout,
        defaults.health_probe_concurrency,
        defaults.fail_fast_cool_down,
    ) == (15.0, 5.0, 32, 10.0)
    given = parse_config(
        [
            *standalone,
            "--health-probe-interval=0s",
            "--health-probe-timeout=1500ms",
            "--health-probe-concurrency=8",
            "--fail-fast-cool-down=1m",
        ]
    )
    assert (
        given.health_probe_interval,
        given.health_probe_timeout,
        given.health_probe_concurrency,
        given.fail_fast_cool_down,
    ) == (
        0.0,
        1.5,
        8,
        60.0,
    )


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--health-probe-interval=-1s", "--health-probe-interval -1s: must not be negative (0s turns probing off)"),
        ("--health-probe-timeout=0s", "--health-probe-timeout 0s: must be a positive duration"),
        ("--fail-fast-cool-down=0s", "--fail-fast-cool-down 0s: must be a positive duration"),
        ("--health-probe-concurrency=0", "--health-probe-concurrency 0: must be between 1 and 10000"),
    ],
)
def test_health_probing_flags_are_checked(flag: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(["--standalone", "--secrets-dir", "examples/clusters", flag])
    assert str(error.value) == message
