"""ClusterProxy (Konnectivity) benchmark: the reference's CRUD loop and a GET through a tunnel, against direct.

Four lines, measured in the same run, alternating request by request:

- direct: the client to the member;
- direct endpoint: through the gateway to a cluster whose Secret has an `endpoint` (Const);
- ClusterProxy, pooled: through the gateway and a tunnel (the product: each kept-alive connection to the
  member rides its own tunnel, the gRPC channel to the proxy-server is shared);
- ClusterProxy, a tunnel per request: the reference's design, emulated by a second gateway
  (benchmarks/gateway_variant.py --without tunnel-reuse): no keep-alive to the member, so every request
  dials a new tunnel and does a new TLS handshake with the member. Its gRPC channel stays shared, where
  the reference also opens a new gRPC connection per request: this line understates the reference's cost.

Processes: the member (benchmarks/member.py, with --latency-ms of processing per answer), the proxy-server
and its agent (benchmarks/konnectivity_fake.py), and the two gateways, each on its own. The proxy-server and
agent are the Python fake from tests/fakes/konnectivity.py: a real ANP proxy-server and agent are Go, so the
absolute cost of a tunnel is overstated here. The tunnels each line dialled are read from the fake's counters
(health probing is off in both gateways, so they count the timed requests' tunnels alone).

Usage: ./dev bench konnectivity [--crud 100] [--gets 1000] [--latency-ms 1.9] [--json FILE] [--note TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import PROXY, ROOT, GatewayProcess, LocalMember, Member, cpu_seconds, percentiles, timed
from benchmarks.recording import provenance, reproducing_command, write_results
from benchmarks.suite import crud_loop

POOLED, PER_REQUEST = "tunnel", "tunnel-per-request"  # the ClusterProxy clusters, one per gateway
LINES = ("direct", "direct_endpoint", "cluster_proxy_pooled", "cluster_proxy_tunnel_per_request")
GET = "/api/v1/namespaces/default"
FAKE = (
    "the proxy-server and agent are the Python fake (tests/fakes/konnectivity.py) in their own process; "
    "a real ANP proxy-server and agent are Go, so the absolute tunnel cost is overstated"
)


class FakeKonnectivity:
    """benchmarks/konnectivity_fake.py in its own process: the proxy-server and an agent for `clusters`."""

    def __init__(self, work: Path, member: Member, clusters: tuple[str, ...]) -> None:
        self.state, self.member, self.clusters = work / "konnectivity", member, clusters
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "benchmarks" / "konnectivity_fake.py"), "--state", str(self.state),
            "--member", self.member.url.removeprefix("https://"), "--clusters", ",".join(self.clusters),
        )  # fmt: skip
        info_file = self.state / "konnectivity.json"
        for _ in range(400):
            if info_file.exists():
                self.info = json.loads(info_file.read_text())
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.025)
        raise RuntimeError("the fake proxy-server and agent did not start")

    def gateway_flags(self) -> list[str]:
        """The gateway's --proxy-* flags for this proxy-server."""
        i = self.info
        return [
            "--proxy-host", "127.0.0.1", "--proxy-port", str(i["port"]),
            "--proxy-ca-cert", i["ca"], "--proxy-cert", i["cert"], "--proxy-key", i["key"],
            "--health-probe-interval", "0s",  # no probes: the tunnels counted are the timed requests' alone
        ]  # fmt: skip

    async def counters(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(self.info["counters_url"]) as resp:
            data: dict[str, Any] = await resp.json()
            return data

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def cluster_proxy_secret(name: str, member: Member) -> dict[str, Any]:
    """OCM's Secret for a cluster-proxy cluster (no endpoint), verified as `localhost`, a name in the benchmark
    member's certificate (a real kube-apiserver's carries kubernetes.default.svc, the default)."""
    secret = member.secret(name)
    data = secret["stringData"]
    del data["endpoint"]
    data["tls-server-name"] = "localhost"
    secret["metadata"]["labels"]["cluster.core.oam.dev/cluster-endpoint-type"] = "ClusterProxy"
    return secret


async def gateway_with_tunnel(work: Path, member: Member, cluster: str, flags: list[str], **kw: Any) -> GatewayProcess:
    """A gateway serving m1 (the member's endpoint) and `cluster` (ClusterProxy), started."""
    (work / "secrets").mkdir(parents=True, exist_ok=True)
    (work / "secrets" / f"{cluster}.yaml").write_text(yaml.safe_dump(cluster_proxy_secret(cluster, member)))
    gateway = GatewayProcess(work, member, flags=flags, **kw)
    await gateway.start()
    return gateway


def dialled(before: dict[str, Any], after: dict[str, Any], cluster: str) -> int:
    address = f"{cluster}:443"
    return int(after["dials_by_address"].get(address, 0) - before["dials_by_address"].get(address, 0))


async def alternating(n: int, measure: dict[str, Callable[[int], Awaitable[float]]]) -> dict[str, Any]:
    """n rounds, each line once per round in turn; percentiles, totals, and each line's total against direct's."""
    times: dict[str, list[float]] = {line: [] for line in measure}
    for i in range(n):
        for line, one in measure.items():
            times[line].append(await one(i))
    direct = sum(times["direct"])
    out: dict[str, Any] = {"n": n}
    for line, values in times.items():
        out[line] = {
            "ms": percentiles(values),
            "total_s": round(sum(values) / 1000, 3),
            "ratio": round(sum(values) / direct, 3),
            "added_p50_ms": round(percentiles(values)["p50"] - percentiles(times["direct"])["p50"], 3),
        }
    return out


async def cpu_per_1000(
    session: aiohttp.ClientSession, url: str, n: int, gateway: GatewayProcess, fake: FakeKonnectivity
) -> dict[str, float]:
    """n GETs of one line back to back: CPU-seconds per 1,000 of the gateway and of the fake proxy-server + agent."""
    assert fake.proc is not None
    pids = gateway.pids()
    gateway_cpu, fake_cpu = cpu_seconds(pids), cpu_seconds([fake.proc.pid])
    for _ in range(n):
        await timed(session, "GET", url + GET)
    per = 1000 / n
    return {
        "gateway": round((cpu_seconds(pids) - gateway_cpu) * per, 3),
        "fake_proxy_server_and_agent": round((cpu_seconds([fake.proc.pid]) - fake_cpu) * per, 3),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="konnectivity-bench-") as tmp:
        work = Path(tmp)
        local = LocalMember(work, latency_ms=args.latency_ms)
        member = await local.start()
        fake = FakeKonnectivity(work, member, (POOLED, PER_REQUEST))
        gateways: list[GatewayProcess] = []
        try:
            await fake.start()
            pooled = await gateway_with_tunnel(work / "pooled", member, POOLED, fake.gateway_flags())
            gateways.append(pooled)
            per_request = await gateway_with_tunnel(
                work / "per-request", member, PER_REQUEST, fake.gateway_flags(), without=("tunnel-reuse",)
            )
            gateways.append(per_request)
            urls = {
                "direct": member.url,
                "direct_endpoint": pooled.proxy,
                "cluster_proxy_pooled": pooled.base + PROXY.format(name=POOLED),
                "cluster_proxy_tunnel_per_request": per_request.base + PROXY.format(name=PER_REQUEST),
            }
            direct = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=member.ssl_context()), headers=member.headers())
            via_pooled = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pooled.ssl))
            via_per_request = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=per_request.ssl))
            session = {
                "direct": direct,
                "direct_endpoint": via_pooled,
                "cluster_proxy_pooled": via_pooled,
                "cluster_proxy_tunnel_per_request": via_per_request,
            }
            async with direct, via_pooled, via_per_request:
                for _ in range(args.warmup):  # connections, tunnels, caches, the credential
                    for line in LINES:
                        await timed(session[line], "GET", urls[line] + GET)
                before = await fake.counters()
                tag = f"bench-{int(time.time())}"

                def crud(line: str) -> Callable[[int], Awaitable[float]]:
                    return lambda i: crud_loop(session[line], urls[line], f"{tag}-{line.replace('_', '-')}-{i}")

                def get(line: str) -> Callable[[int], Awaitable[float]]:
                    return lambda i: timed(session[line], "GET", urls[line] + GET)

                crud_result = await alternating(args.crud, {line: crud(line) for line in LINES})
                get_result = await alternating(args.gets, {line: get(line) for line in LINES})
                serving = {"direct_endpoint": pooled, "cluster_proxy_pooled": pooled}
                serving["cluster_proxy_tunnel_per_request"] = per_request
                cpu = {line: await cpu_per_1000(session[line], urls[line], args.gets, gw, fake) for line, gw in serving.items()}
                after = await fake.counters()
                pooled_ever = after["dials_by_address"].get(f"{POOLED}:443", 0)
                for _ in range(50):  # until the per-request tunnels have closed (at most the pooled ones stay open)
                    if after["open_connections"] <= pooled_ever:
                        break
                    await asyncio.sleep(0.1)
                    after = await fake.counters()
        finally:
            for gateway in gateways:
                await gateway.stop()
            await fake.stop()
            await local.stop()
    requests = args.crud * 3 + args.gets * 2  # per line: the timed rounds and the CPU measurement
    return {
        "run": provenance(reproducing_command("./dev bench konnectivity", sys.argv[1:]), args.note),
        "member_latency_ms": args.latency_ms,
        "proxy_server": FAKE,
        "crud": crud_result,
        "get_namespace": get_result,
        "cpu_s_per_1000_gets": cpu,  # each line alone, after the timed rounds: its tunnels are counted too
        "tunnels": {
            "requests_per_line": requests,
            "cluster_proxy_pooled": dialled(before, after, POOLED),
            "cluster_proxy_tunnel_per_request": dialled(before, after, PER_REQUEST),
            "cluster_proxy_pooled_in_warmup": dialled({"dials_by_address": {}}, before, POOLED),
            "open_at_the_end": after["open_connections"],
        },
    }


def report(r: dict[str, Any]) -> None:
    names = {
        "direct": "direct",
        "direct_endpoint": "gateway, direct endpoint",
        "cluster_proxy_pooled": "gateway, ClusterProxy (pooled tunnels)",
        "cluster_proxy_tunnel_per_request": "gateway, ClusterProxy, a tunnel per request (the reference's design)",
    }
    t = r["tunnels"]
    print(f"member latency {r['member_latency_ms']:g} ms; NOTE: {r['proxy_server']}")
    for case, title in (("crud", "ConfigMap create->update->delete"), ("get_namespace", "GET namespace")):
        x = r[case]
        print(f"{title} x{x['n']} (p50; ratio of the totals to direct):")
        for line, name in names.items():
            print(f"  {name}: {x[line]['ms']['p50']:g} ms, {x[line]['ratio']:g}x")
    print("CPU-s per 1,000 GETs, each line alone (gateway; the fake proxy-server and agent):")
    for line, cpu in r["cpu_s_per_1000_gets"].items():
        print(f"  {names[line]}: {cpu['gateway']:g}; {cpu['fake_proxy_server_and_agent']:g}")
    print(
        f"tunnels dialled for {t['requests_per_line']} requests: pooled {t['cluster_proxy_pooled']}, "
        f"a tunnel per request {t['cluster_proxy_tunnel_per_request']} (cluster-gateway's README: 2.43x for ClusterProxy, "
        "1.46x for a direct endpoint)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crud", type=int, default=100, help="timed ConfigMap create->update->delete loops per line")
    parser.add_argument("--gets", type=int, default=1000, help="timed GETs per line")
    parser.add_argument("--warmup", type=int, default=20, help="untimed GETs per line first")
    parser.add_argument("--latency-ms", type=float, default=1.9, help="the member's processing time per answer")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--note", help="free text recorded with the results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    result = asyncio.run(run(args))
    write_results(args.json, result)
    report(result)


if __name__ == "__main__":
    main()
