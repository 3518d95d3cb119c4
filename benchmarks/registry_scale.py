"""Scale benchmark for the cluster registry (issue 2): N cluster Secrets in a hosting cluster.

Starts the fake hosting kube-apiserver in this process, fills it with N Secrets, starts the
gateway as a separate process (hosting-cluster mode) and reports:
- initial sync: process start → /readyz 200 (includes interpreter start-up);
- `list clustergateways` latency, JSON and Table (what kubectl asks for), p50/p90/p99,
  measured by a client on loopback (an upper bound of the server-side time, which includes
  moving ~10 MB through TLS), and the server's own select+page+encode time, in-process;
- the gateway's RSS after sync and its peak (VmHWM).

Usage: ./dev bench [--secrets 10000] [--lists 50]   (writes benchmarks/results/registry_scale.json)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes.kube_apiserver import FakeKubeAPIServer
from tests.fakes.kube_store import PolicyRule
from tests.fakes.pki import issue_client_cert, make_ca

LIST = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed_gets(session: aiohttp.ClientSession, url: str, n: int, accept: str, ctx: ssl.SSLContext) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(url, headers={"Accept": accept}, ssl=ctx) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        times.append((time.perf_counter() - start) * 1000)
    return times


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--lists", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    hosting = FakeKubeAPIServer(bookmark_interval=30)
    hosting.policy = [PolicyRule(groups=("system:masters",))]  # the benchmark client is the hosting admin
    await hosting.start()
    ca = make_ca("member-ca")
    client = issue_client_cert(ca, "gateway")
    for i in range(args.secrets):
        labels = {
            "cluster.core.oam.dev/cluster-credential-type": "X509Certificate" if i % 10 == 0 else "ServiceAccountToken",
            "env": ("prod", "dev", "staging")[i % 3],
            "region": f"r{i % 7}",
        }
        data: dict[str, str | bytes] = {
            "endpoint": f"https://10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:6443",
            "ca.crt": ca.cert_pem,
        }
        if i % 10 == 0:
            data.update({"tls.crt": client.cert_pem, "tls.key": client.key_pem})
        else:
            data["token"] = f"token-{i}-" + "x" * 800  # a realistic service-account JWT size
        hosting.create_secret("vela-system", f"cluster-{i:05d}", labels=labels, data=data)
    kubeconfig = hosting.write_kubeconfig(work / "hosting.kubeconfig")

    port = free_port()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_apiserver",
        "--kubeconfig",
        str(kubeconfig),
        "--secure-port",
        str(port),
        "--bind-address",
        "127.0.0.1",
        "--cert-dir",
        str(work / "certs"),
        "--log-level",
        "warning",
    )
    results: dict[str, Any] = {"secrets": args.secrets}
    try:
        ctx: ssl.SSLContext | None = None
        # Authenticated as the hosting admin: TokenReview and SubjectAccessReview run once, then are cached.
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {hosting.token}"}) as session:
            while True:
                if proc.returncode is not None:
                    raise SystemExit("the gateway exited")
                crt = work / "certs" / "apiserver.crt"
                if crt.exists():
                    ctx = ctx or ssl.create_default_context(cafile=str(crt))
                    try:
                        async with session.get(f"https://127.0.0.1:{port}/readyz", ssl=ctx) as resp:
                            if resp.status == 200:
                                break
                    except (aiohttp.ClientError, OSError):
                        pass
                await asyncio.sleep(0.02)
            results["initial_sync_s"] = round(time.perf_counter() - started, 2)
            results["rss_after_sync_mb"] = round(rss_mb(proc.pid)["VmRSS"], 1)
            assert ctx is not None
            url = f"https://127.0.0.1:{port}{LIST}"
            async with session.get(url, ssl=ctx) as resp:
                listed = await resp.json()
            assert len(listed["items"]) == args.secrets, len(listed["items"])
            for name, accept, query in (
                ("list_json", "application/json", ""),
                ("list_table", TABLE, ""),
                ("list_json_selector", "application/json", "?labelSelector=env%3Dprod"),
                ("list_json_page500", "application/json", "?limit=500"),
            ):
                times = await timed_gets(session, url + query, args.lists, accept, ctx)
                results[name + "_ms"] = {
                    "p50": round(percentile(times, 50), 1),
                    "p90": round(percentile(times, 90), 1),
                    "p99": round(percentile(times, 99), 1),
                }
            mem = rss_mb(proc.pid)
            async with session.get(
                f"{hosting.url}/api/v1/namespaces/vela-system/secrets",
                headers={"Authorization": f"Bearer {hosting.token}"},
                ssl=ssl.create_default_context(cadata=hosting.ca_pem.decode()),
            ) as resp:
                secrets = (await resp.json())["items"]
            results["server_side_render_ms"] = server_side_render(secrets, args.lists)
            results["rss_after_lists_mb"] = round(mem["VmRSS"], 1)
            results["rss_peak_mb"] = round(mem["VmHWM"], 1)
    finally:
        proc.terminate()
        await proc.wait()
        await hosting.stop()
    return results


def server_side_render(secrets: list[dict[str, Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Time the server's own work for a full list (select, page, encode) in-process, without the network."""
    from gateway_apiserver.api.listing import parse_list_options
    from gateway_apiserver.api.resource import _page
    from gateway_apiserver.api.tables import table
    from gateway_apiserver.registry.cache import ClusterRegistry

    registry = ClusterRegistry("vela-system")
    registry.replace(secrets, "1")
    opts = parse_list_options({})
    out: dict[str, dict[str, float]] = {}
    for name, render in (
        ("json", lambda items: b",".join(gw.json for gw in items)),
        ("table", lambda items: table(items, "Metadata")),
    ):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            items, _, _ = _page(registry.snapshot(), opts)
            render(items)
            times.append((time.perf_counter() - start) * 1000)
        out[name] = {"p50": round(percentile(times, 50), 1), "p90": round(percentile(times, 90), 1)}
    return out


def report(results: dict[str, Any]) -> None:
    print(f"\nregistry scale: {results['secrets']} cluster Secrets (2 cores, loopback, python {sys.version.split()[0]})")
    print(f"  initial sync (process start -> ready): {results['initial_sync_s']} s   (goal < 10 s)")
    for key in ("list_json", "list_table", "list_json_selector", "list_json_page500"):
        r = results[key + "_ms"]
        print(f"  {key:<22} p50 {r['p50']:>7} ms  p90 {r['p90']:>7} ms  p99 {r['p99']:>7} ms")
    server = results["server_side_render_ms"]
    print(
        f"  server side (select+page+encode, in-process): JSON p50 {server['json']['p50']} ms, "
        f"Table p50 {server['table']['p50']} ms   (goal < 100 ms)"
    )
    print(
        f"  RSS after sync {results['rss_after_sync_mb']} MB, after lists {results['rss_after_lists_mb']} MB, "
        f"peak {results['rss_peak_mb']} MB   (goal < 300 MB)"
    )


if __name__ == "__main__":
    out = asyncio.run(main())
    report(out)
    target = next((Path(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--json=")), None)
    if "--json" in sys.argv:
        target = Path(sys.argv[sys.argv.index("--json") + 1])
    if target:
        target.write_text(json.dumps(out, indent=2))
    os._exit(0)
