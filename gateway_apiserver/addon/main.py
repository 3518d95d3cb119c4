"""`gateway-apiserver addon-manager`: run the OCM add-on manager until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from ..observability.logs import configure_logging
from ..registry.informer import HostingConfigError, load_hosting_config
from .manager import ManagerSettings, run_manager
from .probe import serving_probe


def build_parser() -> argparse.ArgumentParser:
    """The subcommand's flags."""
    parser = argparse.ArgumentParser(
        prog="gateway-apiserver addon-manager",
        description="Install the gateway as an Open Cluster Management add-on from a ClusterGatewayConfiguration, "
        "rotate its serving certificate and feed it cluster Secrets from ManagedServiceAccounts.",
    )
    parser.add_argument("--kubeconfig", help="the hub's kubeconfig (default: the in-cluster ServiceAccount)")
    parser.add_argument(
        "--gateway-kubeconfig",
        help="reach the gateway's API with this kubeconfig to read cluster health (default: through the hub's aggregator)",
    )
    parser.add_argument("--configuration", default="cluster-gateway", help="the ClusterGatewayConfiguration to install")
    parser.add_argument("--resync-period", type=float, default=30.0, help="seconds between full passes (drift repair)")
    parser.add_argument(
        "--probe-serving-certificate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="look at the certificate the gateway's Service presents before dropping an old CA from the caBundle",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str]) -> int:
    """Entry point of the subcommand; its exit code (2 on a bad flag or kubeconfig)."""
    args = build_parser().parse_args(argv)
    problem = "--resync-period must be positive" if args.resync_period <= 0 else None
    for flag, path in (("--kubeconfig", args.kubeconfig), ("--gateway-kubeconfig", args.gateway_kubeconfig)):
        if path and not Path(path).is_file():
            problem = problem or f"{flag} {path}: no such file"
    if problem is not None:
        print(f"gateway-apiserver addon-manager: error: {problem}", file=sys.stderr)
        return 2
    configure_logging("text", args.log_level, with_pid=False)
    settings = ManagerSettings(
        configuration=args.configuration,
        resync=args.resync_period,
        probe=serving_probe() if args.probe_serving_certificate else None,
    )

    async def run() -> None:
        hosting = await load_hosting_config(args.kubeconfig)
        gateway = await load_hosting_config(args.gateway_kubeconfig) if args.gateway_kubeconfig else None
        task = asyncio.create_task(run_manager(hosting, gateway, settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logging.getLogger(__name__).info("add-on manager stopped")

    try:
        asyncio.run(run())
    except HostingConfigError as exc:
        print(f"gateway-apiserver addon-manager: error: {exc}", file=sys.stderr)
        return 2
    return 0
