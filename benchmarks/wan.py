"""A member behind a real network delay, for the suite's `wan` section (issue 18).

A network namespace holds the member; a veth pair joins it to this machine's namespace over a
private /30 (10.213.x.y, never routed anywhere else), and `tc netem` delays every packet on both
ends, so each round trip (TCP handshake, TLS handshake, request) pays twice the delay, as over a WAN.
Where the kernel has no netem qdisc (sch_netem), a TUN pair joined by benchmarks/delay_relay.py, which
holds every packet for the delay in user space, takes the veth pair's place; the results say which.
Building it needs root and `ip` and `tc` (Debian: iproute2); without them the section is skipped with
the reason. The link is always torn down on the way out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


class LinkUnavailable(Exception):
    """The delayed link could not be built here (said in words a reader can act on)."""


def why_not() -> str | None:
    """Why this machine cannot build the delayed link, or None when it may (netem itself is tried while building)."""
    if os.geteuid() != 0:
        return "needs root: it builds a network namespace, a veth pair and tc netem queues (run ./dev bench as root)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} (Debian: apt-get install iproute2)"
    return None


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise LinkUnavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")


class DelayedLink:
    """The namespace, veth pair and netem queues, named after this process so parallel runs do not collide."""

    def __init__(self, delay_ms: float, tag: int | None = None) -> None:
        tag = os.getpid() if tag is None else tag
        self.delay_ms = delay_ms
        self.netns = f"gwbench-{tag}"
        self.host_if, self.member_if = f"gwb{tag % 10**8}h", f"gwb{tag % 10**8}m"  # at most 15 characters
        block = (tag % 16384) * 4  # one /30 of 10.213.0.0/16 per process
        prefix = f"10.213.{block // 256}.{block % 256}"
        self.host_ip, self.member_ip = f"10.213.{block // 256}.{block % 256 + 1}", f"10.213.{block // 256}.{block % 256 + 2}"
        self.subnet = prefix + "/30"
        self.exec_prefix = ("ip", "netns", "exec", self.netns)
        self.built = False
        self.relay: subprocess.Popen[str] | None = None
        self.description = ""

    def build(self) -> None:
        """Namespace, veth pair, addresses, netem on both ends (or the TUN relay without netem); torn down on failure."""
        self.built = True
        try:
            try:
                self._build_with_netem()
            except LinkUnavailable as e:
                if "netem" not in str(e) or "unknown" not in str(e):
                    raise
                self.tear_down()
                self.built = True
                self._build_with_relay("this kernel has no netem qdisc")
        except BaseException:
            self.tear_down()
            raise

    def _addresses(self) -> list[Sequence[str]]:
        in_ns = self.exec_prefix
        return [
            ("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if),
            ("ip", "link", "set", self.host_if, "up"),
            (*in_ns, "ip", "addr", "add", f"{self.member_ip}/30", "dev", self.member_if),
            (*in_ns, "ip", "link", "set", self.member_if, "up"),
            (*in_ns, "ip", "link", "set", "lo", "up"),
        ]

    def _build_with_netem(self) -> None:
        delay = f"{self.delay_ms:g}ms"
        steps: list[Sequence[str]] = [
            ("ip", "netns", "add", self.netns),
            ("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.member_if),
            ("ip", "link", "set", self.member_if, "netns", self.netns),
            *self._addresses(),
            ("tc", "qdisc", "add", "dev", self.host_if, "root", "netem", "delay", delay),
            (*self.exec_prefix, "tc", "qdisc", "add", "dev", self.member_if, "root", "netem", "delay", delay),
        ]
        for step in steps:
            _run(step)
        self.description = f"a veth pair into a network namespace, tc netem delay {self.delay_ms:g} ms on both ends"

    def _build_with_relay(self, why: str) -> None:
        _run(("ip", "netns", "add", self.netns))
        relay = Path(__file__).with_name("delay_relay.py")
        self.relay = subprocess.Popen(
            [sys.executable, str(relay), self.host_if, self.member_if, self.netns, f"{self.delay_ms:g}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.relay.stdout is not None
        if self.relay.stdout.readline().strip() != "ready":
            self.relay.wait(10)
            raise LinkUnavailable(
                f"the delay relay did not start: {self.relay.stderr.read().strip() if self.relay.stderr else ''}"
            )
        for step in self._addresses():
            _run(step)
        self.description = (
            f"a TUN pair into a network namespace, every packet held {self.delay_ms:g} ms each way in user space by "
            f"benchmarks/delay_relay.py ({why})"
        )

    def tear_down(self) -> None:
        """Stop the relay, remove the namespace and the host-side device (removing a veth end removes both);
        quiet about what is already gone."""
        if not self.built:
            return
        if self.relay is not None:
            self.relay.terminate()
            try:
                self.relay.wait(10)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait()
            self.relay = None
        for argv in (("ip", "netns", "del", self.netns), ("ip", "link", "del", self.host_if)):
            subprocess.run(argv, capture_output=True, timeout=30, check=False)
        self.built = False

    def __enter__(self) -> DelayedLink:
        if not self.built:
            self.build()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.tear_down()


def namespaces() -> list[str]:
    """The network namespaces `ip netns` knows (a test checks that none of the benchmark's is left behind)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]
