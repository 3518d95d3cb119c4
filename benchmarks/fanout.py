"""Fan-out benchmark: one list across N clusters, against listing each cluster in turn through the proxy.

Starts the benchmark member (benchmarks/member.py, with --latency-ms of processing per answer) and the
gateway in standalone mode, each in its own process, with N cluster Secrets that all point at the
member (one transport and connection per cluster, as for N real clusters). Then, for each round:

- fan-out: `GET clustergateways/-/proxy/api/v1/namespaces` (every cluster's 1,001 Namespaces in one List);
- in turn: `GET clustergateways/cluster-i/proxy/api/v1/namespaces` for i = 1..N, one after the other,
  as a client without the fan-out does (each answer read whole before the next request);

and reports the time to the first item (the first cluster's first Namespace has arrived) and the time
to the last, p50 over the rounds, with the gateway's peak RSS during the fan-outs. Both answers are
checked: N x 1,000 items, every cluster Successful.

Usage: ./dev bench fanout [--members 100] [--rounds 5] [--latency-ms 20] [--json FILE] [--note TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import (
    PROXY,
    ROOT,
    LocalMember,
    Member,
    RSSSampler,
    cpu_seconds,
    free_port,
    percentiles,
    process_tree,
)
from benchmarks.member import NAMESPACES
from benchmarks.recording import provenance, reproducing_command, write_results

FANOUT = PROXY.format(name="-") + "/api/v1/namespaces"
FIRST_ITEM = b'"items":[{'
ITEMS = NAMESPACES + 1  # the member's Namespaces and `default`


class FleetGateway:
    """The gateway (standalone) with `members` cluster Secrets, all for the one benchmark member."""

    def __init__(self, work: Path, member: Member, members: int) -> None:
        self.work, self.member, self.members = work, member, members
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.ssl: ssl.SSLContext | None = None

    def names(self) -> list[str]:
        return [f"cluster-{i:03d}" for i in range(self.members)]

    async def start(self) -> None:
        secrets = self.work / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        for name in self.names():
            (secrets / f"{name}.yaml").write_text(yaml.safe_dump(self.member.secret(name)))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway_apiserver", "--standalone", "--secrets-dir", str(secrets),
            "--secure-port", str(self.port), "--cert-dir", str(self.work / "certs"), "--log-level", "warning",
            cwd=ROOT,
        )  # fmt: skip
        cert = self.work / "certs" / "apiserver.crt"
        for _ in range(400):
            if cert.exists():
                break
            await asyncio.sleep(0.025)
        self.ssl = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl)) as s:
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(self.base + "/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError("the gateway did not become ready")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def fan_out(session: aiohttp.ClientSession, url: str, members: int) -> tuple[float, float]:
    """One fan-out list: ms to the first item and to the end; checks every cluster answered whole."""
    start = time.perf_counter()
    first = 0.0
    body = bytearray()
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        async for chunk in resp.content.iter_any():
            body += chunk
            if not first and FIRST_ITEM in body:
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    doc = json.loads(body)
    assert len(doc["items"]) == members * ITEMS, len(doc["items"])
    assert [s["status"] for s in doc["clusters"]] == ["Success"] * members, doc["clusters"][:3]
    return first * 1000, total * 1000


async def in_turn(session: aiohttp.ClientSession, base: str, names: list[str]) -> tuple[float, float]:
    """Each cluster's list through its own proxy URL, one after the other: ms to the first item and to the end."""
    start = time.perf_counter()
    first = 0.0
    items = 0
    for name in names:
        async with session.get(base + PROXY.format(name=name) + "/api/v1/namespaces") as resp:
            assert resp.status == 200, resp.status
            items += len(json.loads(await resp.read())["items"])
        first = first or time.perf_counter() - start
    assert items == len(names) * ITEMS, items
    return first * 1000, (time.perf_counter() - start) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        member = LocalMember(Path(tmp), latency_ms=args.latency_ms)
        info = await member.start()
        gateway = FleetGateway(Path(tmp), info, args.members)
        try:
            await gateway.start()
            assert gateway.proc is not None
            connector = aiohttp.TCPConnector(ssl=gateway.ssl)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
                await fan_out(session, gateway.base + FANOUT, args.members)  # warm: every transport connected once
                pids = process_tree(gateway.proc.pid)
                fanned: list[tuple[float, float]] = []
                cpu = cpu_seconds(pids)
                async with RSSSampler(pids) as rss:
                    for _ in range(args.rounds):
                        fanned.append(await fan_out(session, gateway.base + FANOUT, args.members))
                fan_out_cpu, cpu = cpu_seconds(pids) - cpu, cpu_seconds(pids)
                turns = [await in_turn(session, gateway.base, gateway.names()) for _ in range(args.rounds)]
                in_turn_cpu = cpu_seconds(pids) - cpu
        finally:
            await gateway.stop()
            await member.stop()
    return {
        "run": provenance(reproducing_command("./dev bench fanout", sys.argv[1:]), args.note),
        "members": args.members,
        "items_per_member": ITEMS,
        "member_latency_ms": args.latency_ms,
        "rounds": args.rounds,
        "fanout": {
            "first_item_ms": percentiles([f for f, _ in fanned]),
            "total_ms": percentiles([t for _, t in fanned]),
            "gateway_rss_mb": {"before": round(rss.before, 1), "peak": round(rss.peak, 1)},
            "gateway_cpu_s_per_round": round(fan_out_cpu / args.rounds, 3),
        },
        "in_turn": {
            "first_item_ms": percentiles([f for f, _ in turns]),
            "total_ms": percentiles([t for _, t in turns]),
            "gateway_cpu_s_per_round": round(in_turn_cpu / args.rounds, 3),
        },
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100, help="cluster Secrets, all for the one benchmark member")
    parser.add_argument("--rounds", type=int, default=5, help="timed fan-outs, and timed lists in turn")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the member's processing time per answer")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--note", help="free text recorded with the results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    result = asyncio.run(run(args))
    write_results(args.json, result)
    f, t = result["fanout"], result["in_turn"]
    rss = f["gateway_rss_mb"]
    print(
        f"{args.members} members x {ITEMS} items, member latency {args.latency_ms:g} ms (p50 of {args.rounds}):\n"
        f"  fan-out: first item {f['first_item_ms']['p50']:.0f} ms, all {f['total_ms']['p50']:.0f} ms, "
        f"gateway CPU {f['gateway_cpu_s_per_round']} s, RSS {rss['before']} -> peak {rss['peak']} MB\n"
        f"  in turn: first item {t['first_item_ms']['p50']:.0f} ms, all {t['total_ms']['p50']:.0f} ms, "
        f"gateway CPU {t['gateway_cpu_s_per_round']} s"
    )


if __name__ == "__main__":
    main()
