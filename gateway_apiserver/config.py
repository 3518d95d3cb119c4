"""Command-line configuration, with flags compatible with cluster-gateway where they overlap."""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

FEATURE_GATES: dict[str, bool] = {
    "HealthinessCheck": False,
    "SecretCache": True,
    "ClientIdentityPenetration": False,
    "OCMClusterCache": True,
}
# Gates of the kube-apiserver's generic server that the reference accepts and that deployments pass
# (the KubeVela chart sets APIPriorityAndFairness=false): accepted, checked as booleans, no effect here.
INERT_FEATURE_GATES = frozenset({"APIPriorityAndFairness"})
# Go's strconv.ParseBool, as the reference's flags parse booleans.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
# Flags of the reference that this build accepts but cannot honour yet: refusing them beats
# silently running without the security they promise.
NOT_YET_SUPPORTED: dict[str, str] = {}


class ConfigError(Exception):
    """An invalid flag or configuration; the message is one line."""


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
    authorize_proxy_subpath: bool = False
    virtual_cluster_with_control_plane: bool = True
    # The proxy subresource.
    cluster_gateway_proxy_config: Path | None = None
    proxy_connect_timeout: float = 10.0
    proxy_request_timeout: float = 60.0
    # OCM ManagedClusters (hosting mode): --ocm-integration, and how the ManagedCluster source paces itself.
    ocm_integration: bool = False
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


def parse_bool(value: str) -> bool:
    """Parse a boolean the way Go flags do."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


_DURATION = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration (`10s`, `1m30s`, `500ms`, `-5s`, `0`) in seconds; the sign is kept for the range checks."""
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (want e.g. 10s, 1m)")
    return sign * sum(float(n) * _DURATION[u] for n, u in parts)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_feature_gates(text: str) -> dict[str, bool]:
    """`A=true,B=false` over the defaults; unknown gates and bad values are errors."""
    gates = dict(FEATURE_GATES)
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--feature-gates: missing bool value for {key}")
        if key not in FEATURE_GATES and key not in INERT_FEATURE_GATES:
            raise ConfigError(f"--feature-gates: unrecognized feature gate: {key}")
        if value not in _TRUE | _FALSE:
            raise ConfigError(f"--feature-gates: invalid value of {key}={value}, err: invalid syntax")
        if key in FEATURE_GATES:
            gates[key] = value in _TRUE
    return gates


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (also used to check the README's commands)."""
    p = _Parser(
        prog="gateway-apiserver",
        description="Multi-cluster Kubernetes API gateway: serves clustergateways.cluster.core.oam.dev "
        "from Secrets, as an aggregated API server or standalone.",
    )
    boolean = {"nargs": "?", "const": True, "type": parse_bool, "metavar": "BOOL"}
    p.add_argument("--secret-namespace", default="vela-system", help="namespace of the cluster Secrets (default: %(default)s)")
    p.add_argument("--secure-port", type=int, default=9443, help="HTTPS port (default: %(default)s)")
    p.add_argument("--bind-address", default=None, help="address to listen on (default: 0.0.0.0; 127.0.0.1 when standalone)")
    p.add_argument("--tls-cert-file", type=Path, help="serving certificate (PEM, may hold the chain)")
    p.add_argument("--tls-private-key-file", type=Path, help="serving private key (PEM)")
    p.add_argument(
        "--cert-dir",
        type=Path,
        default=Path("apiserver.local.config/certificates"),
        help="where a self-signed certificate is written when no --tls-cert-file is given (default: %(default)s)",
    )
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig of the hosting cluster (default: in-cluster configuration)")
    p.add_argument(
        "--feature-gates",
        default="",
        help="comma-separated Gate=bool pairs: " + ", ".join(f"{k}={str(v).lower()}" for k, v in FEATURE_GATES.items()),
    )
    p.add_argument(
        "--standalone",
        default=False,
        **boolean,  # type: ignore[arg-type]
        help="serve Secrets from files instead of a hosting cluster; binds 127.0.0.1, no delegated auth",
    )
    p.add_argument("--secrets-dir", type=Path, help="standalone: directory of Secret manifests (YAML/JSON)")
    p.add_argument(
        "--kubeconfig-clusters", type=Path, help="standalone: turn each context of this kubeconfig into a ClusterGateway"
    )
    p.add_argument(
        "--service-name",
        default="gateway-apiserver",
        help="Service name the self-signed certificate covers (default: %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="(default: %(default)s)")
    p.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks (default: %(default)s)")
    p.add_argument(
        "--min-request-timeout",
        type=int,
        default=1800,
        help="a watch without timeoutSeconds lasts between 1x and 2x this many seconds (default: %(default)s)",
    )
    # Delegated authentication and authorization, as the kube-apiserver's generic server names them.
    p.add_argument(
        "--requestheader-client-ca-file",
        type=Path,
        help="front-proxy CA; overrides the kube-system/extension-apiserver-authentication ConfigMap",
    )
    p.add_argument("--requestheader-allowed-names", type=_csv, help="front-proxy client certificate CNs allowed (comma list)")
    p.add_argument("--requestheader-username-headers", type=_csv, help="(default from the ConfigMap: X-Remote-User)")
    p.add_argument("--requestheader-group-headers", type=_csv, help="(default from the ConfigMap: X-Remote-Group)")
    p.add_argument("--requestheader-extra-headers-prefix", type=_csv, help="(default from the ConfigMap: X-Remote-Extra-)")
    p.add_argument("--client-ca-file", type=Path, help="CA for client certificates (user = CN, groups = O)")
    p.add_argument(
        "--authentication-skip-lookup",
        default=False,
        **boolean,  # type: ignore[arg-type]
        help="do not read the extension-apiserver-authentication ConfigMap",
    )
    p.add_argument(
        "--anonymous-auth",
        default=True,
        **boolean,  # type: ignore[arg-type]
        help="let requests without credentials through as system:anonymous (default: true)",
    )
    p.add_argument(
        "--authentication-token-webhook-cache-ttl",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="how long TokenReview answers are cached (default: 10s)",
    )
    p.add_argument(
        "--authorization-webhook-cache-authorized-ttl",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="how long SubjectAccessReview allows are cached (default: 10s)",
    )
    p.add_argument(
        "--authorization-webhook-cache-unauthorized-ttl",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="how long SubjectAccessReview denials are cached (default: 10s)",
    )
    # Accepted for compatibility with cluster-gateway; refused until implemented (see NOT_YET_SUPPORTED).
    p.add_argument(
        "--cluster-gateway-proxy-config",
        type=Path,
        help="ClusterGatewayProxyConfiguration file: identity-exchange rules for impersonation",
    )
    p.add_argument(
        "--proxy-connect-timeout",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="connect (TCP, TLS, proxy) timeout to a member cluster (default: 10s)",
    )
    p.add_argument(
        "--proxy-request-timeout",
        type=parse_duration,
        default=60.0,
        metavar="DURATION",
        help="timeout of a non-streaming proxied request; watches, follow and upgrades have none (default: 60s)",
    )
    p.add_argument(
        "--event-loop",
        default="auto",
        choices=["auto", "uvloop", "asyncio"],
        help="event loop: uvloop when installed (auto), or the standard asyncio loop (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the same port with SO_REUSEPORT, each with its own registry (default: %(default)s)",
    )
    p.add_argument(
        "--read-header-timeout",
        type=parse_duration,
        default=32.0,
        metavar="DURATION",
        help="a connection must complete its TLS handshake, and each request its headers, within this; "
        "0s: no limit (default: 32s, as the kube-apiserver)",
    )
    p.add_argument(
        "--idle-timeout",
        type=parse_duration,
        default=90.0,
        metavar="DURATION",
        help="close a keep-alive connection idle this long between requests; 0s: never (default: 90s, as the kube-apiserver)",
    )
    p.add_argument(
        "--shutdown-delay-duration",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="on SIGTERM, keep serving this long with /readyz failing before new connections are refused (default: 0s)",
    )
    p.add_argument(
        "--shutdown-grace-period",
        type=parse_duration,
        default=60.0,
        metavar="DURATION",
        help="on shutdown, how long requests in flight may take to finish; watches and tunnels are ended at once (default: 60s)",
    )
    p.add_argument(
        "--ocm-integration",
        default=False,
        **boolean,  # type: ignore[arg-type]
        help="take each cluster's endpoint and CA from the OCM ManagedCluster of its name (needs get/list/watch "
        "managedclusters, see deploy/components/ocm) (default: false)",
    )
    p.add_argument(
        "--authorize-proxy-subpath",
        default=False,
        **boolean,  # type: ignore[arg-type]
        help="also authorize a proxied request's inner path against the hosting cluster (default: false)",
    )
    p.add_argument(
        # The reference's spelling, typo included: installations pass it as is.
        "--virtual-clutser-with-control-plane",
        dest="virtual_cluster_with_control_plane",
        default=True,
        **boolean,  # type: ignore[arg-type]
        help="list the hosting cluster itself as the VirtualCluster `local` (default: true)",
    )
    return p


def parse_config(argv: list[str]) -> Config:
    """Parse and validate the command line; ConfigError with a one-line message naming the flag otherwise."""
    parser = build_parser()
    ns = parser.parse_args(_join_dash_values(parser, argv))
    for attr, flag in NOT_YET_SUPPORTED.items():
        if getattr(ns, attr) not in (None, False):
            raise ConfigError(f"{flag} is not supported by this build yet")
    _check_label("--secret-namespace", ns.secret_namespace, _DNS1123_LABEL, _DNS1123_LABEL_MESSAGE)
    _check_label("--service-name", ns.service_name, _DNS1035_LABEL, _DNS1035_LABEL_MESSAGE)
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
        ("--cluster-gateway-proxy-config", ns.cluster_gateway_proxy_config),
        ("--kubeconfig-clusters", ns.kubeconfig_clusters),
    ):
        if path is not None:
            _check_readable_file(flag, path)
    if ns.secrets_dir is not None:
        _check_directory("--secrets-dir", ns.secrets_dir, must_exist=True)
    _check_directory("--cert-dir", ns.cert_dir, must_exist=False)
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
            )
            if v is not None
        ]
        if delegated:
            raise ConfigError(f"{delegated[0]}: standalone mode has no delegated authentication")
        bind = bind or "127.0.0.1"
        if not _is_loopback(bind):
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
            _check_ca_bundle(flag, path)
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        raise ConfigError(f"--bind-address {bind}: not an IP address") from None
    if not 1 <= ns.workers <= 64:
        raise ConfigError(f"--workers {ns.workers}: must be between 1 and 64")
    if not (math.isfinite(ns.bookmark_interval) and ns.bookmark_interval > 0):
        raise ConfigError(f"--bookmark-interval {ns.bookmark_interval:g}: must be a positive number of seconds")
    if ns.min_request_timeout <= 0:
        raise ConfigError(f"--min-request-timeout {ns.min_request_timeout}: must be greater than 0")
    for flag, seconds in (
        ("--proxy-connect-timeout", ns.proxy_connect_timeout),
        ("--proxy-request-timeout", ns.proxy_request_timeout),
    ):
        if seconds <= 0:
            raise ConfigError(f"{flag} {_format_seconds(seconds)}: must be a positive duration")
    for flag, seconds in (
        ("--authentication-token-webhook-cache-ttl", ns.authentication_token_webhook_cache_ttl),
        ("--authorization-webhook-cache-authorized-ttl", ns.authorization_webhook_cache_authorized_ttl),
        ("--authorization-webhook-cache-unauthorized-ttl", ns.authorization_webhook_cache_unauthorized_ttl),
    ):
        if seconds < 0:
            raise ConfigError(f"{flag} {_format_seconds(seconds)}: must not be negative (0 turns the cache off)")
    return Config(
        secret_namespace=ns.secret_namespace,
        secure_port=ns.secure_port,
        bind_address=bind,
        tls_cert_file=ns.tls_cert_file,
        tls_private_key_file=ns.tls_private_key_file,
        cert_dir=ns.cert_dir,
        kubeconfig=ns.kubeconfig,
        feature_gates=parse_feature_gates(ns.feature_gates),
        standalone=bool(ns.standalone),
        secrets_dir=ns.secrets_dir,
        kubeconfig_clusters=ns.kubeconfig_clusters,
        service_name=ns.service_name,
        log_level=ns.log_level,
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
        cluster_gateway_proxy_config=ns.cluster_gateway_proxy_config,
        proxy_connect_timeout=ns.proxy_connect_timeout,
        proxy_request_timeout=ns.proxy_request_timeout,
        event_loop=ns.event_loop,
        workers=ns.workers,
        read_header_timeout=ns.read_header_timeout,
        idle_timeout=ns.idle_timeout,
        shutdown_delay_duration=ns.shutdown_delay_duration,
        shutdown_grace_period=ns.shutdown_grace_period,
        token_cache_ttl=ns.authentication_token_webhook_cache_ttl,
        authorized_cache_ttl=ns.authorization_webhook_cache_authorized_ttl,
        unauthorized_cache_ttl=ns.authorization_webhook_cache_unauthorized_ttl,
    )


# The wording of k8s.io/apimachinery's validation, which kube's own flags print.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
    "and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def _check_label(flag: str, value: str, pattern: re.Pattern[str], message: str) -> None:
    quoted = json.dumps(value, ensure_ascii=False)  # Go's %q: one line, whatever the value holds
    if len(value) > 63:
        raise ConfigError(f"{flag} {quoted}: must be no more than 63 characters")
    if not pattern.fullmatch(value):
        raise ConfigError(f"{flag} {quoted}: {message}")


def _check_readable_file(flag: str, path: Path) -> None:
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None


def _check_ca_bundle(flag: str, path: Path) -> None:
    # Checked now: the files are otherwise first read when the hosting cluster's ConfigMap arrives.
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        raise ConfigError(f'{flag} {path}: not a PEM certificate bundle (no valid "BEGIN CERTIFICATE" block)') from None


def _check_directory(flag: str, path: Path, *, must_exist: bool) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a directory")
    if must_exist and not path.is_dir():
        raise ConfigError(f"{flag} {path}: no such directory")


def _join_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--flag -5s` as `--flag=-5s`: Go's pflag takes the next word as the value whatever it starts with,
    where argparse would call `-5s` a flag and say the value is missing."""
    takes_value = {opt for action in parser._actions if action.nargs is None for opt in action.option_strings}
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word in takes_value:
            value = next(words, None)
            joined.append(word if value is None else f"{word}={value}")
        else:
            joined.append(word)
    return joined


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
