"""`Config` and `parse_config`: the command line (parser.py) checked and turned into what the server needs.

Every flag the reference's binary accepts is accepted: those with a meaning here are checked below; the
others are listed in reference_flags.py and warn once. Each warning is one line in `Config.warnings`.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..security.authorization import PathAllowList
from ..security.tls_policy import TLSPolicyError, tls_policy
from .checks import (
    DNS1035_LABEL,
    DNS1035_LABEL_MESSAGE,
    DNS1123_LABEL,
    DNS1123_LABEL_MESSAGE,
    ConfigError,
    check_ca_bundle,
    check_directory,
    check_label,
    check_readable_file,
    is_loopback,
    join_dash_values,
)
from .cpu_quota import available_cores
from .feature_gates import FEATURE_GATES, feature_gates_and_warnings, parse_feature_gates
from .flag_values import format_seconds, parse_bool, parse_duration
from .parser import DEFAULT_ALWAYS_ALLOW_PATHS, build_parser
from .reference_flags import inert_warnings

__all__ = ["Config", "ConfigError", "build_parser", "parse_bool", "parse_config", "parse_duration", "parse_feature_gates"]

# klog's -v at and above which debug messages are logged (kube's convention: 4 is debug).
DEBUG_VERBOSITY = 4


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to start."""

    secret_namespace: str = "vela-system"
    secure_port: int = 9443
    bind_address: str = "0.0.0.0"
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    cert_dir: Path = Path("apiserver.local.config/certificates")
    kubeconfig: Path | None = None
    feature_gates: dict[str, bool] = field(default_factory=lambda: dict(FEATURE_GATES))
    standalone: bool = False
    secrets_dir: Path | None = None
    kubeconfig_clusters: Path | None = None
    service_name: str = "gateway-apiserver"
    log_level: str = "info"
    log_format: str = "text"  # "text" or "json"
    bookmark_interval: float = 60.0
    min_request_timeout: int = 1800
    # Delegated authentication and authorization (hosting-cluster mode).
    requestheader_client_ca_file: Path | None = None
    requestheader_allowed_names: tuple[str, ...] | None = None
    requestheader_username_headers: tuple[str, ...] | None = None
    requestheader_group_headers: tuple[str, ...] | None = None
    requestheader_extra_headers_prefix: tuple[str, ...] | None = None
    client_ca_file: Path | None = None
    authentication_skip_lookup: bool = False
    anonymous_auth: bool = True
    token_cache_ttl: float = 10.0
    authorized_cache_ttl: float = 10.0
    unauthorized_cache_ttl: float = 10.0
    tls_reload_interval: float = 5.0
    # Delegation to other clusters than --kubeconfig's, as the generic apiserver's flags name them.
    authentication_kubeconfig: Path | None = None  # TokenReview and the trust ConfigMap
    authorization_kubeconfig: Path | None = None  # SubjectAccessReview
    always_allow_paths: tuple[str, ...] = DEFAULT_ALWAYS_ALLOW_PATHS
    # Serving TLS (Go's names, see security/tls_policy.py).
    tls_min_version: str = ""
    tls_cipher_suites: tuple[str, ...] = ()
    permit_port_sharing: bool = False
    verbosity: int = 0  # klog's -v
    # ClusterProxy (Konnectivity) egress: the proxy-server ClusterProxy clusters are reached through.
    cluster_proxy_host: str = ""
    cluster_proxy_port: int = 8090
    cluster_proxy_ca_cert: str = ""
    cluster_proxy_cert: str = ""
    cluster_proxy_key: str = ""
    # One line per accepted flag or gate that has no effect here; printed once at start.
    warnings: tuple[str, ...] = ()
    authorize_proxy_subpath: bool = False
    virtual_cluster_with_control_plane: bool = True
    # The proxy subresource.
    cluster_gateway_proxy_config: Path | None = None
    proxy_connect_timeout: float = 10.0
    proxy_request_timeout: float = 60.0
    # Built-in health probing (0 s interval: off) and fail-fast (the HealthinessCheck gate).
    health_probe_interval: float = 15.0
    health_probe_timeout: float = 5.0
    health_probe_concurrency: int = 32
    fail_fast_cool_down: float = 10.0
    # OCM ManagedClusters (hosting mode): --ocm-integration, and how the ManagedCluster source paces itself.
    ocm_integration: bool = False
    hide_dangling_cluster_gateways: bool = False  # with --ocm-integration: no ManagedCluster, no ClusterGateway
    proxy_fast_path: bool = True  # plain proxied requests on the fast lane (serving/fast_lane.py, proxy/fast_path.py)
    managed_cluster_discovery_interval: float = 30.0  # how often discovery is asked while the API is absent
    managed_cluster_refresh_interval: float = 5.0  # OCMClusterCache=false: how often ManagedClusters are listed
    managed_cluster_sync_timeout: float = 10.0  # /readyz waits at most this long for the first ManagedCluster answer
    # Process model and event loop.
    event_loop: str = "auto"
    workers: int = 1
    # HTTP serving: connection timeouts (Go's http.Server names; 0 = none) and graceful shutdown.
    read_header_timeout: float = 32.0
    idle_timeout: float = 90.0
    shutdown_delay_duration: float = 0.0
    shutdown_grace_period: float = 60.0


def parse_config(argv: list[str]) -> Config:
    """Parse and validate the command line; ConfigError with a one-line message naming the flag otherwise."""
    parser = build_parser()
    ns = parser.parse_args(join_dash_values(parser, argv))
    check_label("--secret-namespace", ns.secret_namespace, DNS1123_LABEL, DNS1123_LABEL_MESSAGE)
    check_label("--service-name", ns.service_name, DNS1035_LABEL, DNS1035_LABEL_MESSAGE)
    if not 0 < ns.secure_port < 65536:
        raise ConfigError(f"--secure-port {ns.secure_port}: must be between 1 and 65535")
    if (ns.tls_cert_file is None) != (ns.tls_private_key_file is None):
        raise ConfigError("--tls-cert-file and --tls-private-key-file must be given together")
    for flag, path in (
        ("--requestheader-client-ca-file", ns.requestheader_client_ca_file),
        ("--client-ca-file", ns.client_ca_file),
        ("--tls-cert-file", ns.tls_cert_file),
        ("--tls-private-key-file", ns.tls_private_key_file),
        ("--kubeconfig", ns.kubeconfig),
        ("--authentication-kubeconfig", ns.authentication_kubeconfig),
        ("--authorization-kubeconfig", ns.authorization_kubeconfig),
        ("--cluster-gateway-proxy-config", ns.cluster_gateway_proxy_config),
        ("--kubeconfig-clusters", ns.kubeconfig_clusters),
    ):
        if path is not None:
            check_readable_file(flag, path)
    if ns.secrets_dir is not None:
        check_directory("--secrets-dir", ns.secrets_dir, must_exist=True)
    check_directory("--cert-dir", ns.cert_dir, must_exist=False)
    bind = ns.bind_address
    if ns.standalone:
        if ns.secrets_dir is None and ns.kubeconfig_clusters is None:
            raise ConfigError("--standalone needs --secrets-dir and/or --kubeconfig-clusters")
        if ns.kubeconfig is not None:
            raise ConfigError("--kubeconfig names a hosting cluster; it cannot be used with --standalone")
        if ns.ocm_integration:
            raise ConfigError(
                "--ocm-integration reads ManagedClusters from a hosting cluster; it cannot be used with --standalone"
            )
        delegated = [
            f
            for f, v in (
                ("--requestheader-client-ca-file", ns.requestheader_client_ca_file),
                ("--client-ca-file", ns.client_ca_file),
                ("--authentication-kubeconfig", ns.authentication_kubeconfig),
                ("--authorization-kubeconfig", ns.authorization_kubeconfig),
            )
            if v is not None
        ]
        if delegated:
            raise ConfigError(f"{delegated[0]}: standalone mode has no delegated authentication")
        bind = bind or "127.0.0.1"
        if not is_loopback(bind):
            raise ConfigError(f"--bind-address {bind}: standalone mode has no authentication, so it binds loopback only")
    else:
        if ns.secrets_dir is not None or ns.kubeconfig_clusters is not None:
            raise ConfigError("--secrets-dir and --kubeconfig-clusters need --standalone")
        bind = bind or "0.0.0.0"
    for flag, path in (
        ("--requestheader-client-ca-file", ns.requestheader_client_ca_file),
        ("--client-ca-file", ns.client_ca_file),
    ):
        if path is not None:
            check_ca_bundle(flag, path)
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ConfigError(f"--bind-address {bind}: not an IP address") from None
    if ns.hide_dangling_cluster_gateways and not ns.ocm_integration:
        raise ConfigError("--hide-dangling-cluster-gateways hides clusters without a ManagedCluster; it needs --ocm-integration")
    ns.workers = _workers(ns.workers)
    if not (math.isfinite(ns.bookmark_interval) and ns.bookmark_interval > 0):
        raise ConfigError(f"--bookmark-interval {ns.bookmark_interval:g}: must be a positive number of seconds")
    if ns.min_request_timeout <= 0:
        raise ConfigError(f"--min-request-timeout {ns.min_request_timeout}: must be greater than 0")
    for flag, seconds in (
        ("--proxy-connect-timeout", ns.proxy_connect_timeout),
        ("--proxy-request-timeout", ns.proxy_request_timeout),
    ):
        if seconds <= 0:
            raise ConfigError(f"{flag} {format_seconds(seconds)}: must be a positive duration")
    for flag, seconds in (("--health-probe-timeout", ns.health_probe_timeout), ("--fail-fast-cool-down", ns.fail_fast_cool_down)):
        if seconds <= 0:
            raise ConfigError(f"{flag} {format_seconds(seconds)}: must be a positive duration")
    if ns.health_probe_interval < 0:
        raise ConfigError(
            f"--health-probe-interval {format_seconds(ns.health_probe_interval)}: must not be negative (0s turns probing off)"
        )
    if not 1 <= ns.health_probe_concurrency <= 10000:
        raise ConfigError(f"--health-probe-concurrency {ns.health_probe_concurrency}: must be between 1 and 10000")
    for flag, seconds in (
        ("--authentication-token-webhook-cache-ttl", ns.authentication_token_webhook_cache_ttl),
        ("--authorization-webhook-cache-authorized-ttl", ns.authorization_webhook_cache_authorized_ttl),
        ("--authorization-webhook-cache-unauthorized-ttl", ns.authorization_webhook_cache_unauthorized_ttl),
    ):
        if seconds < 0:
            raise ConfigError(f"{flag} {format_seconds(seconds)}: must not be negative (0 turns the cache off)")
    gates, warnings = feature_gates_and_warnings(",".join(ns.feature_gates))
    try:
        policy = tls_policy(ns.tls_min_version, ns.tls_cipher_suites)
    except TLSPolicyError as exc:
        raise ConfigError(str(exc)) from None
    always_allow = (
        DEFAULT_ALWAYS_ALLOW_PATHS if ns.authorization_always_allow_paths is None else ns.authorization_always_allow_paths
    )
    try:
        PathAllowList(always_allow)
    except ValueError as exc:
        raise ConfigError(f"--authorization-always-allow-paths: {exc}") from None
    warnings += [*_cluster_proxy_warnings(ns), *policy.warnings, *inert_warnings(ns)]
    return Config(
        secret_namespace=ns.secret_namespace,
        secure_port=ns.secure_port,
        bind_address=bind,
        tls_cert_file=ns.tls_cert_file,
        tls_private_key_file=ns.tls_private_key_file,
        cert_dir=ns.cert_dir,
        kubeconfig=ns.kubeconfig,
        feature_gates=gates,
        standalone=bool(ns.standalone),
        secrets_dir=ns.secrets_dir,
        kubeconfig_clusters=ns.kubeconfig_clusters,
        service_name=ns.service_name,
        log_level="debug" if ns.v >= DEBUG_VERBOSITY else ns.log_level,
        log_format=ns.log_format,
        verbosity=ns.v,
        bookmark_interval=ns.bookmark_interval,
        min_request_timeout=ns.min_request_timeout,
        requestheader_client_ca_file=ns.requestheader_client_ca_file,
        requestheader_allowed_names=ns.requestheader_allowed_names,
        requestheader_username_headers=ns.requestheader_username_headers,
        requestheader_group_headers=ns.requestheader_group_headers,
        requestheader_extra_headers_prefix=ns.requestheader_extra_headers_prefix,
        client_ca_file=ns.client_ca_file,
        authentication_skip_lookup=bool(ns.authentication_skip_lookup),
        anonymous_auth=bool(ns.anonymous_auth),
        authorize_proxy_subpath=bool(ns.authorize_proxy_subpath),
        virtual_cluster_with_control_plane=bool(ns.virtual_cluster_with_control_plane),
        ocm_integration=bool(ns.ocm_integration),
        hide_dangling_cluster_gateways=bool(ns.hide_dangling_cluster_gateways),
        proxy_fast_path=bool(ns.proxy_fast_path),
        cluster_gateway_proxy_config=ns.cluster_gateway_proxy_config,
        proxy_connect_timeout=ns.proxy_connect_timeout,
        proxy_request_timeout=ns.proxy_request_timeout,
        health_probe_interval=ns.health_probe_interval,
        health_probe_timeout=ns.health_probe_timeout,
        health_probe_concurrency=ns.health_probe_concurrency,
        fail_fast_cool_down=ns.fail_fast_cool_down,
        event_loop=ns.event_loop,
        workers=ns.workers,
        read_header_timeout=ns.read_header_timeout,
        idle_timeout=ns.idle_timeout,
        shutdown_delay_duration=ns.shutdown_delay_duration,
        shutdown_grace_period=ns.shutdown_grace_period,
        token_cache_ttl=ns.authentication_token_webhook_cache_ttl,
        authorized_cache_ttl=ns.authorization_webhook_cache_authorized_ttl,
        unauthorized_cache_ttl=ns.authorization_webhook_cache_unauthorized_ttl,
        authentication_kubeconfig=ns.authentication_kubeconfig,
        authorization_kubeconfig=ns.authorization_kubeconfig,
        always_allow_paths=tuple(always_allow),
        tls_min_version=ns.tls_min_version,
        tls_cipher_suites=tuple(ns.tls_cipher_suites),
        permit_port_sharing=bool(ns.permit_port_sharing),
        cluster_proxy_host=ns.proxy_host,
        cluster_proxy_port=ns.proxy_port,
        cluster_proxy_ca_cert=ns.proxy_ca_cert,
        cluster_proxy_cert=ns.proxy_cert,
        cluster_proxy_key=ns.proxy_key,
        warnings=tuple(warnings),
    )


def _workers(value: str) -> int:
    """`--workers`: a count from 1 to 64, or `auto` for one per core the CPU quota allows (at most 64)."""
    if value == "auto":
        return min(64, available_cores())
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"--workers {value}: must be a number from 1 to 64, or auto") from None
    if not 1 <= count <= 64:
        raise ConfigError(f"--workers {value}: must be between 1 and 64")
    return count


def _cluster_proxy_warnings(ns: argparse.Namespace) -> list[str]:
    """The reference's ValidateClusterProxy: with --proxy-host, the port and the three files must be given.
    The files are read when a ClusterProxy cluster is first dialled, as there (and again when the channel is rebuilt)."""
    if not ns.proxy_host:
        return []
    if ns.proxy_port <= 0:
        raise ConfigError("--proxy-port must be greater than 0")
    for flag, value in (("--proxy-ca-cert", ns.proxy_ca_cert), ("--proxy-cert", ns.proxy_cert), ("--proxy-key", ns.proxy_key)):
        if not value:
            raise ConfigError(f"{flag} must be specified")
    return []
