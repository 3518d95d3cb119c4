"""The `gateway-apiserver` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .config import Config, ConfigError, parse_config
from .observability.logs import configure_logging
from .process import event_loop_factory, run_workers
from .serving import gc_policy


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse flags, run until SIGINT/SIGTERM. Exit 2 on a bad configuration.

    Two subcommands have their own flags: `kubeconfig` prints a kubeconfig for member clusters
    (client/kubeconfig_export.py), `addon-manager` runs the OCM add-on manager (addon/main.py)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["kubeconfig"]:
        from .client.kubeconfig_export import main as kubeconfig_main

        return kubeconfig_main(args[1:])
    if args[:1] == ["addon-manager"]:
        from .addon.main import main as addon_manager

        return addon_manager(args[1:])
    try:
        config = parse_config(args)
    except ConfigError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 2
    for warning in config.warnings:  # once, here: not again in each worker
        print(f"gateway-apiserver: warning: {warning}", file=sys.stderr)
    _configure_logging(config)
    if config.workers == 1:
        return serve(config)
    from .server import listening_socket, serving_tls  # imported after the flags: a flag error is reported at once

    try:
        # Checked once here, so a port in use or a bad certificate is one line, not one per worker;
        # and a self-signed certificate is minted once, so every worker serves the same one.
        listening_socket(config).close()
        serving_tls(config)
    except ConfigError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 2
    return run_workers(config, worker_main)


def worker_main(config: Config) -> int:
    """One `--workers` process (spawned: logging is configured again)."""
    _configure_logging(config)
    code = serve(config)
    sys.exit(code)


def serve(config: Config) -> int:
    """Run one gateway process on the chosen event loop; the command's exit code."""
    try:
        loop_factory, loop_name = event_loop_factory(config.event_loop)
    except RuntimeError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).debug("event loop: %s", loop_name)
    gc_policy.collect_less_often()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_run(config))
    except ConfigError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Start-up failures are ConfigErrors naming their flag; anything else is still one line, exit 2.
        print(f"gateway-apiserver: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 2
    return 0


def _configure_logging(config: Config) -> None:
    configure_logging(config.log_format, config.log_level, with_pid=config.workers > 1)  # the pid: which worker said it


async def _run(config: Config) -> None:
    """Serve; the first SIGTERM/SIGINT starts the graceful shutdown, a second one stops at once."""
    from .server import serve_forever

    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await serve_forever(config, stop)
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("stopped at once on a second signal")
    else:
        logging.getLogger(__name__).info("shut down")
