"""The `gateway-apiserver` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .config import Config, ConfigError, parse_config
from .server import serve_forever


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse flags, run until SIGINT/SIGTERM. Exit 2 on a bad configuration."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(_run(config))
    except ConfigError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway-apiserver: error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(config: Config) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if task is not None:
            loop.add_signal_handler(sig, task.cancel)
    try:
        await serve_forever(config)
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("shutting down")
