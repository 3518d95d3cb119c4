"""The argument parser: every flag the gateway accepts, with its type, default and help."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from .checks import ConfigError
from .feature_gates import FEATURE_GATES
from .flag_values import parse_bool, parse_csv, parse_duration
from .reference_flags import add_inert_flags

# The kube generic apiserver's default --authorization-always-allow-paths.
DEFAULT_ALWAYS_ALLOW_PATHS = ("/healthz", "/readyz", "/livez")
# The positional word the KubeVela chart passes first (the reference's binary ignores positionals).
COMMAND_WORD = "apiserver"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (also used to check the README's commands)."""
    p = _Parser(
        prog="gateway-apiserver",
        allow_abbrev=False,  # as Go's flags: a flag is named in full
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
        COMMAND_WORD,
        nargs="?",
        choices=[COMMAND_WORD],
        help="accepted as a first word, as the KubeVela chart passes it (the reference's binary ignores it)",
    )
    p.add_argument(
        "--feature-gates",
        action="append",
        default=[],
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
    p.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines as text, or as one JSON object each (default: %(default)s)",
    )
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
    p.add_argument(
        "--requestheader-allowed-names", type=parse_csv, help="front-proxy client certificate CNs allowed (comma list)"
    )
    p.add_argument("--requestheader-username-headers", type=parse_csv, help="(default from the ConfigMap: X-Remote-User)")
    p.add_argument("--requestheader-group-headers", type=parse_csv, help="(default from the ConfigMap: X-Remote-Group)")
    p.add_argument("--requestheader-extra-headers-prefix", type=parse_csv, help="(default from the ConfigMap: X-Remote-Extra-)")
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
        "--health-probe-interval",
        type=parse_duration,
        default=15.0,
        metavar="DURATION",
        help="probe each member's /readyz (else /healthz) and /version this often, jittered; 0s: no probing (default: 15s)",
    )
    p.add_argument(
        "--health-probe-timeout",
        type=parse_duration,
        default=5.0,
        metavar="DURATION",
        help="a probe not answered within this is ConnectionTimeout (default: 5s)",
    )
    p.add_argument(
        "--health-probe-concurrency",
        type=int,
        default=32,
        help="probes in flight at once, over all clusters (default: %(default)s)",
    )
    p.add_argument(
        "--fail-fast-cool-down",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="HealthinessCheck=true: one trial request to an unhealthy cluster is let through this often (default: 10s)",
    )
    p.add_argument(
        "--event-loop",
        default="auto",
        choices=["auto", "uvloop", "asyncio"],
        help="event loop: uvloop when installed (auto), or the standard asyncio loop (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        default="1",
        metavar="N|auto",
        help="processes serving the same port with SO_REUSEPORT, each with its own registry; auto: one per core "
        "the container's CPU quota allows (default: %(default)s)",
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
        "--hide-dangling-cluster-gateways",
        default=False,
        **boolean,  # type: ignore[arg-type]
        help="with --ocm-integration: serve no ClusterGateway whose ManagedCluster is missing (default: false)",
    )
    p.add_argument(
        "--proxy-fast-path",
        default=True,
        **boolean,  # type: ignore[arg-type]
        help="serve plain proxied requests on the fast lane (raw HTTP/1.1 on both legs); false: aiohttp serves "
        "every request (default: true)",
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
    p.add_argument(
        "--authentication-kubeconfig",
        type=Path,
        help="cluster for TokenReview and the extension-apiserver-authentication ConfigMap (default: --kubeconfig's)",
    )
    p.add_argument("--authorization-kubeconfig", type=Path, help="cluster for SubjectAccessReview (default: --kubeconfig's)")
    p.add_argument(
        "--authorization-always-allow-paths",
        type=parse_csv,
        default=None,
        metavar="LIST",
        help="non-resource paths authorized without a SubjectAccessReview: exact, or a prefix ending in * "
        "(default: " + ",".join(DEFAULT_ALWAYS_ALLOW_PATHS) + ")",
    )
    p.add_argument(
        "--tls-min-version",
        default="",
        help="VersionTLS12 (default) or VersionTLS13 (Go's names; OpenSSL still refuses TLS 1.0/1.1)",
    )
    p.add_argument("--tls-cipher-suites", type=parse_csv, default=(), metavar="LIST", help="Go's cipher suite names, for TLS 1.2")
    p.add_argument(
        "--permit-port-sharing",
        default=False,
        **boolean,  # type: ignore[arg-type]
        help="bind the port with SO_REUSEPORT, so other processes may too (default: false)",
    )
    p.add_argument("-v", "--v", type=int, default=0, metavar="LEVEL", help="klog verbosity: 4 and more log debug messages")
    # cluster-gateway's ClusterProxy (Konnectivity) egress: checked as the reference checks it; not used yet.
    p.add_argument("--proxy-host", default="", help="ClusterProxy: the Konnectivity proxy server's host")
    p.add_argument("--proxy-port", type=int, default=8090, help="ClusterProxy: its port (default: %(default)s)")
    p.add_argument("--proxy-ca-cert", default="", help="ClusterProxy: CA of the proxy server")
    p.add_argument("--proxy-cert", default="", help="ClusterProxy: client certificate for the proxy server")
    p.add_argument("--proxy-key", default="", help="ClusterProxy: client key for the proxy server")
    add_inert_flags(p)
    return p
