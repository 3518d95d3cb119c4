"""Scale benchmark for the cluster registry (issue 2): N cluster Secrets in a hosting cluster.

Starts the fake hosting kube-apiserver in this process, fills it with N Secrets, starts the
gateway as a separate process (hosting-cluster mode) and reports:
- initial sync: process start → /readyz 200 (includes interpreter start-up);
- `list clustergateways`, JSON and Table (what kubectl asks for), p50/p90/p99, two ways:
  * through the running gateway over TLS, as a client on loopback sees it: the list handler
    plus authentication, authorization, TLS, moving ~10 MB and the client reading it;
  * the list handler alone: the product's `list_or_watch` called in this process on a request
    built by aiohttp's test utilities, against a ClusterRegistry filled from the same Secrets
    (query parsing, selection, paging and encoding of the whole answer; no HTTP, TLS or
    middleware);
- the gateway's RSS after sync, after the lists, and its peak (VmHWM).

Usage: ./dev bench registry [--secrets 10000] [--lists 50] [--json FILE] [--note TEXT]
       (writes benchmarks/results/registry_scale.json unless --json says otherwise)
"""

from __future__ import annotations

import argparse
import asyncio
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
from benchmarks.recording import provenance, reproducing_command, write_results
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=10_000, help="cluster Secrets in the hosting cluster")
    parser.add_argument("--lists", type=int, default=50, help="timed lists of each kind")
    parser.add_argument("--json", type=Path, help="write the results here (benchmarks/recorded/ for figures the README quotes)")
    parser.add_argument("--note", help="recorded with the results: what else was going on (a busy machine, ...)")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "run": provenance(reproducing_command("./dev bench registry", sys.argv[1:]), args.note),
        "secrets": args.secrets,
        "lists": args.lists,
    }
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
                results[name + "_ms"] = summary(times)
            mem = rss_mb(proc.pid)
            async with session.get(
                f"{hosting.url}/api/v1/namespaces/vela-system/secrets",
                headers={"Authorization": f"Bearer {hosting.token}"},
                ssl=ssl.create_default_context(cadata=hosting.ca_pem.decode()),
            ) as resp:
                secrets = (await resp.json())["items"]
            results["list_handler_ms"] = await time_list_handler(secrets, args.lists)
            results["rss_after_lists_mb"] = round(mem["VmRSS"], 1)
            results["rss_peak_mb"] = round(mem["VmHWM"], 1)
    finally:
        proc.terminate()
        await proc.wait()
        await hosting.stop()
    return results


def summary(times: list[float]) -> dict[str, float]:
    return {f"p{p}": round(percentile(times, p), 1) for p in (50, 90, 99)}


async def time_list_handler(secrets: list[dict[str, Any]], rounds: int) -> dict[str, dict[str, float]]:
    """The product's list handler called in-process, timed from the request to the finished answer body.

    The registry is filled from the same Secrets the gateway process synced; the request is one
    aiohttp's test utilities build, so no HTTP parsing, TLS or middleware is included.
    """
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from gateway_apiserver.app import CLUSTER_GATEWAY_RESOURCE
    from gateway_apiserver.app_keys import REGISTRY
    from gateway_apiserver.registry.cache import ClusterRegistry

    registry = ClusterRegistry("vela-system")
    registry.replace(secrets, "1")
    app = web.Application()
    app[REGISTRY] = registry
    out: dict[str, dict[str, float]] = {}
    for name, accept, query in (
        ("json", "application/json", ""),
        ("table", TABLE, ""),
        ("json_selector", "application/json", "?labelSelector=env%3Dprod"),
        ("json_page500", "application/json", "?limit=500"),
    ):
        times = []
        for _ in range(rounds):
            request = make_mocked_request("GET", LIST + query, headers={"Accept": accept}, app=app)
            start = time.perf_counter()
            response = await CLUSTER_GATEWAY_RESOURCE.list_or_watch(request)
            times.append((time.perf_counter() - start) * 1000)
            assert isinstance(response, web.Response) and response.status == 200 and response.body, response
        out[name] = summary(times)
    return out


def report(results: dict[str, Any]) -> None:
    m = results["run"]["machine"]
    print(
        f"\nregistry scale: {results['secrets']} cluster Secrets ({m['cpus']} cores, {m['cpu']}, loopback, "
        f"Python {m['python']}; load average {m['load_average_1m_at_start']} at the start)"
    )
    print(f"  initial sync (process start -> ready): {results['initial_sync_s']} s   (goal < 10 s)")
    print("  through the gateway over TLS, client on loopback:")
    for key in ("list_json", "list_table", "list_json_selector", "list_json_page500"):
        r = results[key + "_ms"]
        print(f"    {key:<22} p50 {r['p50']:>7} ms  p90 {r['p90']:>7} ms  p99 {r['p99']:>7} ms")
    print("  the list handler alone (list_or_watch in-process: parse, select, page, encode; no HTTP/TLS/middleware):")
    for key, r in results["list_handler_ms"].items():
        goal = "   (goal < 100 ms)" if key in ("json", "table") else ""
        print(f"    {key:<22} p50 {r['p50']:>7} ms  p90 {r['p90']:>7} ms  p99 {r['p99']:>7} ms{goal}")
    print(
        f"  RSS after sync {results['rss_after_sync_mb']} MB, after lists {results['rss_after_lists_mb']} MB, "
        f"peak {results['rss_peak_mb']} MB   (goal < 300 MB)"
    )


if __name__ == "__main__":
    arguments = parse_args()
    out = asyncio.run(main(arguments))
    report(out)
    write_results(arguments.json, out)
    os._exit(0)
