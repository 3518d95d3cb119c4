"""The rest of the reference's command line: flags it accepts that have no meaning here, and its Kubernetes gates.

cluster-gateway's apiserver is built on sigs.k8s.io/apiserver-runtime, which registers k8s.io/apiserver's
RecommendedOptions (etcd, serving, delegated authentication and authorization, audit, features, core API,
admission, egress selector, tracing) and klog's flags, then adds its own. Flags that mean something here are
parsed in config.py; every other one is listed below, accepted with a value of the same type as in Go, and
reported once with one warning line naming it. The names are the union over the k8s.io/apiserver releases the
reference has shipped with (v0.25 to v0.31); tests/test_reference_command_line.py checks them against that list.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .flag_values import parse_bool, parse_csv, parse_duration

_NO_ETCD = "there is no etcd, ClusterGateways are computed from the cluster Secrets"
_NO_AUDIT = "there is no audit backend; the access log records every request"
_NO_ADMISSION = "there is no admission chain; the API is read-only apart from the health subresource"
_KLOG = "logs go to standard error in this server's format; --log-level and -v choose what is logged"
_HTTP2 = "this server speaks HTTP/1.1 only"

# Go flag kind -> how argparse reads its value (as strictly as Go would).
_KINDS: dict[str, dict[str, Any]] = {
    "bool": {"nargs": "?", "const": True, "type": parse_bool, "metavar": "BOOL"},
    "int": {"type": int, "metavar": "INT"},
    "float": {"type": float, "metavar": "FLOAT"},
    "duration": {"type": parse_duration, "metavar": "DURATION"},
    "string": {"type": str, "metavar": "STRING"},
    "strings": {"type": parse_csv, "metavar": "LIST"},
}


@dataclass(frozen=True, slots=True)
class InertFlag:
    """A flag of the reference that is accepted and has no effect here."""

    name: str  # without the leading dashes, spelled as in Go (klog's use underscores)
    kind: str  # a key of _KINDS
    why: str  # the end of its warning line

    @property
    def flag(self) -> str:
        """`--name`"""
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        """Where argparse keeps the value (None when the flag was not given)."""
        return "inert_" + self.name.replace("-", "_")

    def warning(self) -> str:
        """The one line printed when the flag is given."""
        return f"{self.flag} has no effect here: {self.why}"


def _audit_backend(plugin: str) -> list[InertFlag]:
    kinds = {
        "mode": "string",
        "batch-buffer-size": "int",
        "batch-max-size": "int",
        "batch-max-wait": "duration",
        "batch-throttle-enable": "bool",
        "batch-throttle-qps": "float",
        "batch-throttle-burst": "int",
        "truncate-enabled": "bool",
        "truncate-max-batch-size": "int",
        "truncate-max-event-size": "int",
    }
    return [InertFlag(f"audit-{plugin}-{suffix}", kind, _NO_AUDIT) for suffix, kind in kinds.items()]


INERT_FLAGS: tuple[InertFlag, ...] = (
    # k8s.io/apiserver EtcdOptions (the reference drops etcd with WithoutEtcd after the flags are parsed).
    *(
        InertFlag(name, kind, _NO_ETCD)
        for name, kind in {
            "etcd-servers": "strings",
            "etcd-servers-overrides": "strings",
            "etcd-prefix": "string",
            "etcd-keyfile": "string",
            "etcd-certfile": "string",
            "etcd-cafile": "string",
            "etcd-compaction-interval": "duration",
            "etcd-count-metric-poll-period": "duration",
            "etcd-db-metric-poll-interval": "duration",
            "etcd-healthcheck-timeout": "duration",
            "etcd-readycheck-timeout": "duration",
            "storage-backend": "string",
            "storage-media-type": "string",
            "delete-collection-workers": "int",
            "enable-garbage-collector": "bool",
            "watch-cache": "bool",
            "default-watch-cache-size": "int",
            "watch-cache-sizes": "strings",
            "encryption-provider-config": "string",
            "encryption-provider-config-automatic-reload": "bool",
            "lease-reuse-duration-seconds": "int",
        }.items()
    ),
    # SecureServingOptions.
    InertFlag("tls-sni-cert-key", "string", "one serving certificate (--tls-cert-file) answers every name"),
    InertFlag("disable-http2-serving", "bool", _HTTP2),
    InertFlag("http2-max-streams-per-connection", "int", _HTTP2),
    InertFlag("permit-address-sharing", "bool", "SO_REUSEADDR is always set"),
    # DelegatingAuthenticationOptions.
    InertFlag(
        "authentication-tolerate-lookup-failure",
        "bool",
        "the extension-apiserver-authentication ConfigMap is retried until read, and /readyz fails meanwhile",
    ),
    # AuditOptions.
    InertFlag("audit-policy-file", "string", _NO_AUDIT),
    *(
        InertFlag(name, kind, _NO_AUDIT)
        for name, kind in {
            "audit-log-path": "string",
            "audit-log-maxage": "int",
            "audit-log-maxbackup": "int",
            "audit-log-maxsize": "int",
            "audit-log-format": "string",
            "audit-log-version": "string",
            "audit-log-compress": "bool",
            "audit-webhook-config-file": "string",
            "audit-webhook-initial-backoff": "duration",
            "audit-webhook-batch-initial-backoff": "duration",
            "audit-webhook-version": "string",
        }.items()
    ),
    *_audit_backend("log"),
    *_audit_backend("webhook"),
    # FeatureOptions.
    InertFlag("profiling", "bool", "there are no /debug/pprof endpoints"),
    InertFlag("contention-profiling", "bool", "there are no /debug/pprof endpoints"),
    InertFlag("debug-socket-path", "string", "there are no /debug/pprof endpoints"),
    InertFlag("enable-priority-and-fairness", "bool", "there is no API Priority and Fairness"),
    # AdmissionOptions, EgressSelectorOptions, TracingOptions.
    InertFlag("enable-admission-plugins", "strings", _NO_ADMISSION),
    InertFlag("disable-admission-plugins", "strings", _NO_ADMISSION),
    InertFlag("admission-control-config-file", "string", _NO_ADMISSION),
    InertFlag(
        "egress-selector-config-file",
        "string",
        "member clusters are dialled directly, or through the proxy-url of their Secret",
    ),
    InertFlag("tracing-config-file", "string", "there is no tracing"),
    # sigs.k8s.io/apiserver-runtime's WithLocalDebugExtension.
    InertFlag(
        "standalone-debug-mode",
        "bool",
        "use --standalone to serve Secrets from files on loopback without a hosting cluster",
    ),
    # The reference's own.
    InertFlag("user-agent", "string", "the hosting cluster is called with the client library's User-Agent"),
    # klog (-v is honoured, in config.py).
    *(
        InertFlag(name, kind, _KLOG)
        for name, kind in {
            "vmodule": "string",
            "log_dir": "string",
            "log_file": "string",
            "log_file_max_size": "int",
            "logtostderr": "bool",
            "alsologtostderr": "bool",
            "add_dir_header": "bool",
            "skip_headers": "bool",
            "skip_log_headers": "bool",
            "one_output": "bool",
            "stderrthreshold": "string",
            "log_backtrace_at": "string",
        }.items()
    ),
)


def add_inert_flags(parser: argparse.ArgumentParser) -> None:
    """Accept every flag of INERT_FLAGS (in their own help group), each defaulting to None."""
    group = parser.add_argument_group(
        "accepted for compatibility with cluster-gateway, without effect here (each warns once when given)"
    )
    for inert in INERT_FLAGS:
        group.add_argument(inert.flag, dest=inert.dest, default=None, help=argparse.SUPPRESS, **_KINDS[inert.kind])


def inert_warnings(namespace: argparse.Namespace) -> list[str]:
    """One warning line per inert flag given, in the table's order."""
    return [inert.warning() for inert in INERT_FLAGS if getattr(namespace, inert.dest) is not None]
