"""The gateway with a part of its request path left out, for the suite's `costs` section: a part's cost is
the full gateway's CPU per 1,000 proxied GETs minus this variant's, both measured in the same run.

    python benchmarks/gateway_variant.py --without metrics,log-context -- <the gateway's own flags>

Parts (benchmark-only: the product has no switch for them):
  metrics      the proxy handler is not instrumented and responses are not remembered for their byte counts
               (observability/metrics.py), and the fast lane counts nothing (proxy/fast_path.py); /metrics is still served
  log-context  no request_context middleware (observability/logs.py), and the fast lane sets no log context:
               log lines would not name the request
  tunnel-reuse ClusterProxy connections are not kept alive (force_close): every request dials a new tunnel and
               does a new TLS handshake with the member, as cluster-gateway does (for `./dev bench konnectivity`;
               the gRPC channel to the proxy-server stays shared)

Runs the gateway in this process (so --workers 1 only: spawned workers would import the product afresh).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

import gateway_apiserver.server as server_module
from gateway_apiserver import cli
from gateway_apiserver.observability import logs, metrics
from gateway_apiserver.proxy import fast_path, handler
from gateway_apiserver.proxy import transport as transport_module
from gateway_apiserver.proxy.konnectivity.connector import KonnectivityConnector

PARTS = ("metrics", "log-context", "tunnel-reuse")


class TunnelPerRequestConnector(KonnectivityConnector):
    """The ClusterProxy connector without keep-alive: each request's connection (and tunnel) is closed after it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("keepalive_timeout", None)  # aiohttp refuses it together with force_close
        super().__init__(*args, force_close=True, **kwargs)


def leave_out(parts: set[str]) -> None:
    """Rewire the product before it builds its application."""
    if "metrics" in parts:
        handler.instrument = lambda app, handler, cluster_of: handler  # type: ignore[attr-defined]
        fast_path.METRICS = web.AppKey("no-metrics-on-the-fast-lane", metrics.GatewayMetrics)  # type: ignore[attr-defined]
    if "log-context" in parts:
        fast_path.enter_request = lambda request: None  # type: ignore[attr-defined,assignment,return-value]
        fast_path.leave_request = lambda token: None  # type: ignore[attr-defined]
    if "tunnel-reuse" in parts:
        transport_module.KonnectivityConnector = TunnelPerRequestConnector  # type: ignore[attr-defined]
    build_app: Callable[..., web.Application] = server_module.build_app  # type: ignore[attr-defined]

    def built(*args: Any, **kwargs: Any) -> web.Application:
        app = build_app(*args, **kwargs)
        if "metrics" in parts:
            app.on_response_prepare.remove(metrics._remember_prepared)
        if "log-context" in parts:
            app.middlewares.remove(logs.request_context)
        return app

    server_module.build_app = built  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--without", required=True, help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    parser.add_argument("gateway_flags", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    parts = {p for p in args.without.split(",") if p}
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    flags = args.gateway_flags[1:] if args.gateway_flags[:1] == ["--"] else args.gateway_flags
    if "--workers" in flags and flags[flags.index("--workers") + 1] != "1":
        parser.error("--workers 1 only: the parts are left out in this process")
    leave_out(parts)
    return cli.main(flags)


if __name__ == "__main__":
    sys.exit(main())
