"""The process model: which event loop runs the server, and `--workers N` processes on one port.

Each worker is a whole, stateless gateway (its own Secret informer, registry and member
connections) listening on the same port with SO_REUSEPORT, so the kernel spreads new
connections over the workers. The parent only supervises: it starts the workers, restarts
one that dies after it was serving, and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from .config import Config
from .observability.metrics import WorkersMetricsDirectory

log = logging.getLogger(__name__)

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# A worker that dies this soon after its start failed to start: restarting it would only spin.
STARTUP_GRACE = 10.0
STOP_TIMEOUT = 15.0


def event_loop_factory(choice: str) -> tuple[LoopFactory, str]:
    """The loop factory for `--event-loop` and its name; `auto` takes uvloop when it is installed.

    uvloop runs the same code about a third faster (its loop, transports and TLS are in C).
    """
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise RuntimeError("--event-loop uvloop: the uvloop package is not installed") from None
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


Worker = Callable[[Config], int]


def run_workers(config: Config, worker: Worker, *, startup_grace: float = STARTUP_GRACE) -> int:
    """Run `worker(config)` in `config.workers` processes; return the exit code for the command.

    A worker exiting within `startup_grace` seconds of its start (a bad configuration, a port
    in use) stops them all with its exit code; one dying later is restarted.
    """
    ctx = multiprocessing.get_context("spawn")  # no state (loops, sessions, threads) crosses into a worker
    stopping = False

    def start() -> tuple[BaseProcess, float]:
        proc = ctx.Process(target=worker, args=(config,), name="gateway-worker", daemon=False)
        proc.start()
        return proc, time.monotonic()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    metrics = WorkersMetricsDirectory()  # /metrics: a scrape reaching any worker answers for all of them
    workers = [start() for _ in range(config.workers)]
    pids = ", ".join(str(p.pid) for p, _ in workers)
    log.info("started %d workers on port %d (pids %s)", len(workers), config.secure_port, pids)
    code = 0
    try:
        while not stopping:
            multiprocessing.connection.wait([p.sentinel for p, _ in workers], timeout=0.5)
            for i, (proc, started) in enumerate(workers):
                if proc.is_alive() or stopping:
                    continue
                exitcode = proc.exitcode or 0
                metrics.worker_exited(proc.pid)
                if time.monotonic() - started < startup_grace:
                    log.error("worker %d exited with code %d while starting; stopping all workers", proc.pid, exitcode)
                    code, stopping = exitcode or 1, True
                    break
                log.warning("worker %d exited with code %d; starting a new one", proc.pid, exitcode)
                workers[i] = start()
    finally:
        # Each worker shuts down gracefully: give it its delay and grace period, and a margin.
        _stop(workers, config.shutdown_delay_duration + config.shutdown_grace_period + STOP_TIMEOUT)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        metrics.close()
    return code


def _stop(workers: list[tuple[BaseProcess, float]], timeout: float) -> None:
    for proc, _ in workers:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: each worker drains and closes like a single process does
    deadline = time.monotonic() + timeout
    for proc, _ in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.warning("worker %d did not stop in %.0fs; killing it", proc.pid, timeout)
            proc.kill()
            proc.join()
