"""The reference's whole command line is accepted: what it means here is honoured, the rest warns once.

The reference (oam-dev/cluster-gateway's cmd/apiserver) is a sigs.k8s.io/apiserver-runtime binary: k8s.io/apiserver's
RecommendedOptions, the feature-gate flag, klog's flags, apiserver-runtime's --standalone-debug-mode, and its own.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_apiserver.config import ConfigError, build_parser, parse_config
from gateway_apiserver.config.feature_gates import KUBERNETES_FEATURE_GATES
from gateway_apiserver.config.reference_flags import INERT_FLAGS
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import RESOURCE_NOT_FOUND
from tests.fakes.pki import issue_server_cert, make_ca, write_pair
from tests.test_cli import free_port, run_cli

REPO = Path(__file__).resolve().parent.parent

# k8s.io/apiserver's RecommendedOptions.AddFlags, union over v0.25.3, v0.26.3, v0.27.2, v0.29.2 and v0.31.10 (the
# versions the reference's releases from v1.7 to its main branch build with), read from pkg/server/options/*.go.
GENERIC_APISERVER_FLAGS = [
    "admission-control-config-file",
    "audit-log-batch-buffer-size",
    "audit-log-batch-max-size",
    "audit-log-batch-max-wait",
    "audit-log-batch-throttle-burst",
    "audit-log-batch-throttle-enable",
    "audit-log-batch-throttle-qps",
    "audit-log-compress",
    "audit-log-format",
    "audit-log-maxage",
    "audit-log-maxbackup",
    "audit-log-maxsize",
    "audit-log-mode",
    "audit-log-path",
    "audit-log-truncate-enabled",
    "audit-log-truncate-max-batch-size",
    "audit-log-truncate-max-event-size",
    "audit-log-version",
    "audit-policy-file",
    "audit-webhook-batch-buffer-size",
    "audit-webhook-batch-initial-backoff",
    "audit-webhook-batch-max-size",
    "audit-webhook-batch-max-wait",
    "audit-webhook-batch-throttle-burst",
    "audit-webhook-batch-throttle-enable",
    "audit-webhook-batch-throttle-qps",
    "audit-webhook-config-file",
    "audit-webhook-initial-backoff",
    "audit-webhook-mode",
    "audit-webhook-truncate-enabled",
    "audit-webhook-truncate-max-batch-size",
    "audit-webhook-truncate-max-event-size",
    "audit-webhook-version",
    "authentication-kubeconfig",
    "authentication-skip-lookup",
    "authentication-token-webhook-cache-ttl",
    "authentication-tolerate-lookup-failure",
    "authorization-always-allow-paths",
    "authorization-kubeconfig",
    "authorization-webhook-cache-authorized-ttl",
    "authorization-webhook-cache-unauthorized-ttl",
    "bind-address",
    "cert-dir",
    "client-ca-file",
    "contention-profiling",
    "debug-socket-path",
    "default-watch-cache-size",
    "delete-collection-workers",
    "disable-admission-plugins",
    "disable-http2-serving",
    "egress-selector-config-file",
    "enable-admission-plugins",
    "enable-garbage-collector",
    "enable-priority-and-fairness",
    "encryption-provider-config",
    "encryption-provider-config-automatic-reload",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-compaction-interval",
    "etcd-count-metric-poll-period",
    "etcd-db-metric-poll-interval",
    "etcd-healthcheck-timeout",
    "etcd-keyfile",
    "etcd-prefix",
    "etcd-readycheck-timeout",
    "etcd-servers",
    "etcd-servers-overrides",
    "http2-max-streams-per-connection",
    "kubeconfig",
    "lease-reuse-duration-seconds",
    "permit-address-sharing",
    "permit-port-sharing",
    "profiling",
    "requestheader-allowed-names",
    "requestheader-client-ca-file",
    "requestheader-extra-headers-prefix",
    "requestheader-group-headers",
    "requestheader-username-headers",
    "secure-port",
    "storage-backend",
    "storage-media-type",
    "tls-cert-file",
    "tls-cipher-suites",
    "tls-min-version",
    "tls-private-key-file",
    "tls-sni-cert-key",
    "tracing-config-file",
    "watch-cache",
    "watch-cache-sizes",
    "feature-gates",
]
# klog/v2 v2.130.1 InitFlags, added by the reference's config.AddLogFlags (Go names, underscores kept).
KLOG_FLAGS = [
    "log_dir",
    "log_file",
    "log_file_max_size",
    "logtostderr",
    "alsologtostderr",
    "v",
    "add_dir_header",
    "skip_headers",
    "one_output",
    "skip_log_headers",
    "stderrthreshold",
    "vmodule",
    "log_backtrace_at",
]
# The reference's pkg/config/args_*.go and main.go, and apiserver-runtime's WithLocalDebugExtension.
REFERENCE_OWN_FLAGS = [
    "secret-namespace",
    "virtual-clutser-with-control-plane",
    "proxy-host",
    "proxy-port",
    "proxy-ca-cert",
    "proxy-cert",
    "proxy-key",
    "authorize-proxy-subpath",
    "user-agent",
    "cluster-gateway-proxy-config",
    "ocm-integration",
    "standalone-debug-mode",
]

# A value of each Go kind, as an installer would write it.
SAMPLE_VALUES = {"bool": "true", "int": "3", "float": "1.5", "duration": "5s", "string": "x", "strings": "a,b"}

VELA_CORE_PROXY_CONFIG = "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\nspec: {}\n"


def test_every_flag_of_the_reference_is_a_flag_here() -> None:
    known = {option for action in build_parser()._actions for option in action.option_strings}
    reference = {f"--{name}" for name in GENERIC_APISERVER_FLAGS + KLOG_FLAGS + REFERENCE_OWN_FLAGS}
    assert reference - known == set()
    assert "-v" in known  # pflag gives a one-letter Go flag its shorthand


def test_the_flags_without_effect_are_exactly_the_reference_flags_not_honoured_here() -> None:
    inert = {flag.name for flag in INERT_FLAGS}
    assert inert <= set(GENERIC_APISERVER_FLAGS + KLOG_FLAGS + REFERENCE_OWN_FLAGS)
    honoured_here = {
        "authentication-kubeconfig", "authorization-kubeconfig", "authorization-always-allow-paths", "tls-min-version",
        "tls-cipher-suites", "permit-port-sharing", "v", "requestheader-allowed-names", "requestheader-client-ca-file",
        "requestheader-extra-headers-prefix", "requestheader-group-headers", "requestheader-username-headers",
    }  # fmt: skip
    assert inert.isdisjoint(honoured_here)


@pytest.mark.parametrize("inert", INERT_FLAGS, ids=lambda flag: flag.name)
def test_a_flag_without_effect_is_accepted_with_one_warning_naming_it(inert: Any) -> None:
    value = SAMPLE_VALUES[inert.kind]
    config = parse_config([f"{inert.flag}={value}", f"{inert.flag}={value}"])  # given twice: still one line
    assert config.warnings == (f"{inert.flag} has no effect here: {inert.why}",)
    assert config == parse_config([]).__class__(warnings=config.warnings)  # and nothing else changed


def test_flags_without_effect_still_check_their_values_as_go_does() -> None:
    with pytest.raises(ConfigError, match=r"^argument --audit-log-maxage: invalid int value: 'ten'$"):
        parse_config(["--audit-log-maxage=ten"])
    with pytest.raises(ConfigError, match=r"^argument --profiling: invalid boolean value 'maybe'$"):
        parse_config(["--profiling=maybe"])
    with pytest.raises(ConfigError, match=r"^argument --etcd-compaction-interval: invalid duration 'soon'"):
        parse_config(["--etcd-compaction-interval=soon"])


def test_go_bool_flags_take_no_value_or_an_equals_value() -> None:
    assert len(parse_config(["--profiling"]).warnings) == 1
    assert len(parse_config(["--logtostderr=false"]).warnings) == 1


def test_kubernetes_feature_gates_warn_once_each_and_change_nothing() -> None:
    config = parse_config(["--feature-gates=APIPriorityAndFairness=false,WatchList=true", "--feature-gates=WatchList=false"])
    assert config.feature_gates == parse_config([]).feature_gates
    assert config.warnings == (
        "--feature-gates: APIPriorityAndFairness is a gate of the Kubernetes generic apiserver and has no effect here",
        "--feature-gates: WatchList is a gate of the Kubernetes generic apiserver and has no effect here",
    )
    assert {"APIPriorityAndFairness", "AllAlpha", "AllBeta", "ComponentSLIs"} <= KUBERNETES_FEATURE_GATES


def test_repeated_feature_gates_merge_as_pflag_does() -> None:
    gates = parse_config(["--feature-gates=HealthinessCheck=true", "--feature-gates=SecretCache=false"]).feature_gates
    assert (gates["HealthinessCheck"], gates["SecretCache"]) == (True, False)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--feature-gates=Teleport=true"], "--feature-gates: unrecognized feature gate: Teleport"),
        (
            ["--feature-gates=APIPriorityAndFairness=maybe"],
            "--feature-gates: invalid value of APIPriorityAndFairness=maybe, err: invalid syntax",
        ),
        (["--etcd-server=x"], "unrecognized arguments: --etcd-server=x"),  # no abbreviations, as Go
        (["--secure=9443"], "unrecognized arguments: --secure=9443"),
        (["--log-dir=/tmp"], "unrecognized arguments: --log-dir=/tmp"),  # klog's name has an underscore
        (["controller"], "argument apiserver: invalid choice: 'controller' (choose from 'apiserver')"),
        (["apiserver", "apiserver"], "unrecognized arguments: apiserver"),
        (["--tls-cipher-suites=TLS_FAST"], "--tls-cipher-suites: cipher suite TLS_FAST not supported or doesn't exist"),
        (
            ["--tls-min-version=TLSv1.2"],
            '--tls-min-version: unknown tls version "TLSv1.2" '
            "(possible values: VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13)",
        ),
        (["--authorization-always-allow-paths=/a*/b"], '--authorization-always-allow-paths: only trailing * allowed in "/a*/b"'),
        (["--proxy-host=proxy", "--proxy-port=0"], "--proxy-port must be greater than 0"),
        (["--proxy-host=proxy", "--proxy-cert=c", "--proxy-key=k"], "--proxy-ca-cert must be specified"),
        (["--proxy-host=proxy", "--proxy-ca-cert=ca", "--proxy-key=k"], "--proxy-cert must be specified"),
        (["--proxy-host=proxy", "--proxy-ca-cert=ca", "--proxy-cert=c"], "--proxy-key must be specified"),
        (["--v=loud"], "argument -v/--v: invalid int value: 'loud'"),
        (["--authorization-kubeconfig=/nope"], "--authorization-kubeconfig /nope: no such file"),
    ],
)
def test_a_truly_unknown_flag_gate_or_value_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    code, stderr = run_cli(*args)
    assert (code, stderr) == (2, f"gateway-apiserver: error: {line}\n")


def test_delegation_kubeconfigs_name_a_hosting_cluster_so_not_standalone(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    for flag in ("--authentication-kubeconfig", "--authorization-kubeconfig"):
        with pytest.raises(ConfigError, match=f"^{flag}: standalone mode has no delegated authentication$"):
            parse_config(["--standalone", f"--secrets-dir={REPO / 'examples/clusters'}", f"{flag}={kubeconfig}"])


def test_v_4_and_more_log_debug_messages() -> None:
    assert [parse_config(args).log_level for args in (["-v", "2"], ["-v=4"], ["--v=6"], ["-v3"])] == [
        "info",
        "debug",
        "debug",
        "info",
    ]
    assert parse_config(["--v=1", "--log-level=warning"]).log_level == "warning"
    assert parse_config(["-v", "5"]).warnings == ()  # honoured: no warning


def test_always_allow_paths_default_to_the_kube_generic_servers() -> None:
    assert parse_config([]).always_allow_paths == ("/healthz", "/readyz", "/livez")
    assert parse_config(["--authorization-always-allow-paths="]).always_allow_paths == ()


def vela_core_args(tmp_path: Path) -> list[str]:
    """The vela-core chart's cluster-gateway args (secureTLS on, ClientIdentityPenetration true)."""
    proxy_config = tmp_path / "proxy-config.yaml"
    proxy_config.write_text(VELA_CORE_PROXY_CONFIG)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.touch()
    key.touch()
    return [
        "apiserver", "--secure-port=9443", "--secret-namespace=vela-system",
        "--feature-gates=APIPriorityAndFairness=false,ClientIdentityPenetration=true",
        f"--cluster-gateway-proxy-config={proxy_config}", f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
    ]  # fmt: skip


def test_the_vela_core_chart_args_parse_with_their_meaning(tmp_path: Path) -> None:
    config = parse_config(vela_core_args(tmp_path))
    assert (config.secure_port, config.secret_namespace) == (9443, "vela-system")
    assert config.feature_gates["ClientIdentityPenetration"] is True
    assert config.always_allow_paths == ("/healthz", "/readyz", "/livez", "/metrics")
    assert config.cluster_gateway_proxy_config == tmp_path / "proxy-config.yaml"
    assert config.warnings == (
        "--feature-gates: APIPriorityAndFairness is a gate of the Kubernetes generic apiserver and has no effect here",
    )


def test_the_ocm_addon_args_parse_with_cluster_proxy_egress_and_no_warning(tmp_path: Path) -> None:
    config = parse_config(
        [
            "--secure-port=9443", "--secret-namespace=open-cluster-management-credentials", "--ocm-integration=true",
            "--feature-gates=HealthinessCheck=true,SecretCache=true", "--proxy-host=proxy-entrypoint.ocm", "--proxy-port=8090",
            "--proxy-ca-cert=/etc/ca/ca.crt", "--proxy-cert=/etc/tls/tls.crt", "--proxy-key=/etc/tls/tls.key",
        ]
    )  # fmt: skip
    assert (config.ocm_integration, config.feature_gates["HealthinessCheck"], config.feature_gates["SecretCache"]) == (
        True,
        True,
        True,
    )
    assert (config.cluster_proxy_host, config.cluster_proxy_port) == ("proxy-entrypoint.ocm", 8090)
    # As the reference, the files are read when a ClusterProxy cluster is first dialled, not at start.
    assert (config.cluster_proxy_ca_cert, config.cluster_proxy_cert, config.cluster_proxy_key) == (
        "/etc/ca/ca.crt",
        "/etc/tls/tls.crt",
        "/etc/tls/tls.key",
    )
    assert config.warnings == ()


async def test_the_real_command_with_the_vela_core_args_serves_and_warns_once(
    tmp_path: Path, kube_apiserver: FakeKubeAPIServer
) -> None:
    """`python -m gateway_apiserver` with the chart's args (its port and files swapped for test ones, plus the
    hosting cluster a pod would find in-cluster): it serves, an anonymous /metrics scrape is not sent to
    SubjectAccessReview, and the warnings come once, before anything else."""
    serving_ca = make_ca("serving-ca")
    args = vela_core_args(tmp_path)
    write_pair(tmp_path, "tls", issue_server_cert(serving_ca))
    kube_apiserver.set_authentication_configmap(client_ca_pem=make_ca("client-ca").cert_pem)
    port = free_port()
    args[args.index("--secure-port=9443")] = f"--secure-port={port}"
    kubeconfig = kube_apiserver.write_kubeconfig(tmp_path / "hosting.kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway_apiserver", *args, f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
        "--etcd-servers=http://127.0.0.1:2379", "--audit-log-path=-", "--profiling",
        cwd=REPO, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    ctx = ssl.create_default_context(cadata=serving_ca.cert_pem.decode())
    try:
        async with aiohttp.ClientSession(base_url=f"https://127.0.0.1:{port}") as session:
            for _ in range(200):
                try:
                    async with session.get("/readyz", ssl=ctx) as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the gateway did not become ready")
            async with session.get("/metrics", ssl=ctx) as resp:
                assert (resp.status, resp.headers["Content-Type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
        assert kube_apiserver.access_review_log == []
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    warnings = [line for line in err.decode().splitlines() if "warning:" in line]
    assert warnings == [
        "gateway-apiserver: warning: --feature-gates: APIPriorityAndFairness is a gate of the Kubernetes generic "
        "apiserver and has no effect here",
        "gateway-apiserver: warning: --etcd-servers has no effect here: there is no etcd, ClusterGateways are "
        "computed from the cluster Secrets",
        "gateway-apiserver: warning: --audit-log-path has no effect here: there is no audit backend; the access log "
        "records every request",
        "gateway-apiserver: warning: --profiling has no effect here: there are no /debug/pprof endpoints",
    ]
    assert err.decode().splitlines()[: len(warnings)] == warnings


NOT_FOUND = RESOURCE_NOT_FOUND


def test_permit_port_sharing_lets_another_socket_bind_the_same_port() -> None:
    from dataclasses import replace

    from gateway_apiserver.server import listening_socket

    port = free_port()
    sharing = replace(parse_config(["--permit-port-sharing", "--bind-address=127.0.0.1"]), secure_port=port)
    first, second = listening_socket(sharing), listening_socket(sharing)
    try:
        first.listen()
        second.listen()
        with pytest.raises(ConfigError, match=f"^--secure-port {port}: address 127.0.0.1:{port} is already in use$"):
            listening_socket(replace(sharing, permit_port_sharing=False))
    finally:
        first.close()
        second.close()
