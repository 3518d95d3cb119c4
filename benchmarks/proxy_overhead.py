"""Proxy overhead (issue 3): the same requests direct to a member and through the gateway, side by side.

A fake member API server runs in this process; the gateway runs as its own process in
standalone mode (no TokenReview/SubjectAccessReview: in hosting mode both are cached, so a
steady state adds no hosting-cluster call). Direct and gateway requests alternate, so both see
the same machine noise. Reports p50/p90/p99 and ratios; writes JSON.

Usage: ./dev bench proxy [--gets 1000] [--crud 100] [--stream-mb 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes.member_apiserver import FakeMemberAPIServer

CM = "/api/v1/namespaces/default/configmaps"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda p: ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]  # noqa: E731
    return {"p50": round(pick(50), 3), "p90": round(pick(90), 3), "p99": round(pick(99), 3)}


def vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> float:
    start = time.perf_counter()
    async with session.request(method, url, **kw) as resp:
        await resp.read()
        assert resp.status < 300, (method, url, resp.status)
    return (time.perf_counter() - start) * 1000


async def crud(session: aiohttp.ClientSession, base: str, name: str) -> float:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v1"}}
    start = time.perf_counter()
    await timed(session, "POST", base + CM, json=body)
    body["data"] = {"k": "v2"}
    await timed(session, "PUT", f"{base}{CM}/{name}", json=body)
    await timed(session, "DELETE", f"{base}{CM}/{name}")
    return (time.perf_counter() - start) * 1000


async def stream(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    start, size = time.perf_counter(), 0
    async with session.get(url) as resp:
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
    return time.perf_counter() - start, size


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--crud", type=int, default=100)
    parser.add_argument("--stream-mb", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gw-proxy-bench-"))
    member = FakeMemberAPIServer()
    await member.start()
    (work / "secrets").mkdir()
    (work / "secrets" / "m1.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "m1",
                    "namespace": "vela-system",
                    "labels": {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"},
                },
                "stringData": {"endpoint": member.url, "ca.crt": member.ca_pem.decode(), "token": member.token},
            }
        )
    )
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_apiserver",
        "--standalone",
        "--secrets-dir",
        str(work / "secrets"),
        "--secure-port",
        str(port),
        "--cert-dir",
        str(work / "certs"),
        "--log-level",
        "warning",
    )
    results: dict[str, Any] = {}
    try:
        gateway = f"https://127.0.0.1:{port}/apis/cluster.core.oam.dev/v1alpha1/clustergateways/m1/proxy"
        direct = member.url
        member_ctx = ssl.create_default_context(cadata=member.ca_pem.decode())
        for _ in range(200):
            if (work / "certs" / "apiserver.crt").exists():
                break
            await asyncio.sleep(0.05)
        gw_ctx = ssl.create_default_context(cafile=str(work / "certs" / "apiserver.crt"))
        direct_s = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=member_ctx), headers={"Authorization": f"Bearer {member.token}"}
        )
        gw_s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=gw_ctx))
        async with direct_s, gw_s:
            for _ in range(200):
                try:
                    async with gw_s.get(f"https://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            await timed(
                direct_s,
                "POST",
                direct + CM,
                json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench"}, "data": {"k": "v"}},
            )
            for _ in range(20):  # warm-up: connections, caches
                await timed(direct_s, "GET", f"{direct}{CM}/bench")
                await timed(gw_s, "GET", f"{gateway}{CM}/bench")
            d, g = [], []
            for _ in range(args.gets):
                d.append(await timed(direct_s, "GET", f"{direct}{CM}/bench"))
                g.append(await timed(gw_s, "GET", f"{gateway}{CM}/bench"))
            results["small_get_ms"] = {"direct": percentiles(d), "gateway": percentiles(g)}
            results["small_get_added_p50_ms"] = round(percentiles(g)["p50"] - percentiles(d)["p50"], 3)
            d, g = [], []
            for i in range(args.crud):
                d.append(await crud(direct_s, direct, f"d-{i}"))
                g.append(await crud(gw_s, gateway, f"g-{i}"))
            results["crud_loop_ms"] = {
                "direct": percentiles(d),
                "gateway": percentiles(g),
                "direct_total_s": round(sum(d) / 1000, 3),
                "gateway_total_s": round(sum(g) / 1000, 3),
            }
            results["crud_ratio"] = round(sum(g) / sum(d), 3)
            results["crud_iterations"] = args.crud
            rss_before = vm(proc.pid, "VmRSS")
            big = f"/apis/bulk.test/v1/items?mb={args.stream_mb}"
            dt, dsize = await stream(direct_s, direct + big)
            gt, gsize = await stream(gw_s, gateway + big)
            results["stream"] = {
                "mb": round(dsize / 2**20, 1),
                "direct_mb_s": round(dsize / 2**20 / dt, 1),
                "gateway_mb_s": round(gsize / 2**20 / gt, 1),
                "ratio": round(dt / gt, 3),
                "gateway_rss_before_mb": round(rss_before, 1),
                "gateway_rss_after_mb": round(vm(proc.pid, "VmRSS"), 1),
                "gateway_rss_peak_mb": round(vm(proc.pid, "VmHWM"), 1),
            }
            assert dsize == gsize, (dsize, gsize)
    finally:
        proc.terminate()
        await proc.wait()
        await member.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def report(r: dict[str, Any]) -> None:
    print(f"\nproxy overhead (2 cores, loopback, python {sys.version.split()[0]}; direct and gateway alternate)")
    sg = r["small_get_ms"]
    print(
        f"  small GET   direct p50 {sg['direct']['p50']} ms p99 {sg['direct']['p99']} | gateway p50 {sg['gateway']['p50']} ms "
        f"p99 {sg['gateway']['p99']}  -> added p50 {r['small_get_added_p50_ms']} ms (goal < 1 ms)"
    )
    c = r["crud_loop_ms"]
    loop = f"ConfigMap create->update->delete x{r['crud_iterations']}"
    print(f"  {loop}: direct {c['direct_total_s']} s, gateway {c['gateway_total_s']} s")
    print(f"    -> {r['crud_ratio']}x (goal <= 1.10x; cluster-gateway: 1.46x)")
    s = r["stream"]
    print(
        f"  {s['mb']} MB streamed list: direct {s['direct_mb_s']} MB/s, gateway {s['gateway_mb_s']} MB/s -> {s['ratio']} "
        f"of direct (goal >= 0.80); gateway RSS {s['gateway_rss_before_mb']} -> {s['gateway_rss_after_mb']} MB, "
        f"peak {s['gateway_rss_peak_mb']} MB"
    )


if __name__ == "__main__":
    report(asyncio.run(main()))
