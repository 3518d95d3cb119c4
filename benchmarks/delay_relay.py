"""A user-space stand-in for `tc netem`, for kernels without sch_netem (benchmarks/wan.py uses it then).

Two TUN devices, HOST_IF left in this network namespace and MEMBER_IF moved into NETNS, joined by
this process: every IP packet read from one is written to the other DELAY_MS later, in order. So
every packet pays the delay each way, as with netem on both ends of a veth pair: a TCP handshake,
a TLS handshake and each request each cost a round trip of twice the delay. The asyncio event
loop's timers round up to whole milliseconds, so the delay is DELAY_MS to DELAY_MS + 1 (the suite
records a measured TCP connect time beside it).

Run (root): python benchmarks/delay_relay.py HOST_IF MEMBER_IF NETNS DELAY_MS   (prints "ready"; SIGTERM ends it)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def open_tun(name: str) -> int:
    """A TUN device of this name (IP packets, no extra header), its fd non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class DelayedPipe:
    """Packets read from `source` are written to `sink` `delay` seconds later, first in first out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, source: int, sink: int, delay: float) -> None:
        self.loop, self.source, self.sink, self.delay = loop, source, sink, delay
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        loop.add_reader(source, self.read)

    def read(self) -> None:
        while True:
            try:
                packet = os.read(self.source, 65536)
            except BlockingIOError:
                return
            self.queue.append((self.loop.time() + self.delay, packet))
            if self.timer is None:
                self.timer = self.loop.call_at(self.queue[0][0], self.send_due)

    def send_due(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, packet = self.queue.popleft()
            with contextlib.suppress(OSError):  # a full queue drops the packet, as a congested link would
                os.write(self.sink, packet)
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self.send_due)


async def relay(host_fd: int, member_fd: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    DelayedPipe(loop, host_fd, member_fd, delay)
    DelayedPipe(loop, member_fd, host_fd, delay)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


def main() -> int:
    host_if, member_if, netns, delay_ms = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    try:
        host_fd, member_fd = open_tun(host_if), open_tun(member_if)
    except OSError as e:
        print(f"delay_relay: no TUN device (/dev/net/tun): {e}", file=sys.stderr)
        return 1
    moved = subprocess.run(["ip", "link", "set", member_if, "netns", netns], capture_output=True, text=True, check=False)
    if moved.returncode != 0:
        print(f"delay_relay: moving {member_if} into {netns}: {moved.stderr.strip()}", file=sys.stderr)
        return 1
    asyncio.run(relay(host_fd, member_fd, delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
