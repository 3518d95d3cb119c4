"""The proxy benchmark suite (issues 6 and 18): the gateway against the direct path and its peers, side by side, in one run.

Starts benchmarks/member.py (a deliberately fast member, its own process) or takes a real member
from --member-kubeconfig, and the gateway as its own process in standalone mode with one
cluster Secret for that member, and the peers of benchmarks/peers.py: the Go peer (pooled), the
Go peer with a transport per request (as cluster-gateway), and the minimal aiohttp proxy. Every
section that compares direct and the gateway measures, alternating in this order: direct, Go peer,
Go peer per request, minimal proxy, gateway; so all see the same machine noise; medians and
ratios are what to quote. Without Go the Go columns are left out and the results say why. Sections:

  reference   the reference's benchmark: ConfigMap create→update→delete, GET namespace, LIST namespaces limit=100
  throughput  small GETs from 64 concurrent clients: requests/s, and CPU-seconds per 1,000 requests of each proxy
  streaming   a 100 MB LIST and a 10,000-event watch: throughput ratio, gateway peak RSS
  watches     1,000 concurrent proxied watches through each proxy: memory and fds per watch, and their return to baseline
  costs       CPU per 1,000 proxied GETs of the gateway beside variants without its metrics, without its logging
              context, and with the HealthinessCheck (fail-fast) gate on: what each part costs, rounds alternating
  wan         the member behind a delayed link (benchmarks/wan.py: netns, veth, tc netem; root only): CRUD loop and GET
  workers     throughput with --workers 1 and --workers 2 (SO_REUSEPORT)

Usage: ./dev bench [--sections reference,throughput,...] [--quick] [--member-kubeconfig FILE | --member-latency-ms 1.9]
                   [--event-loop asyncio] [--go-peer off] [--wan-delay-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import hot_path_costs, peers, wan
from benchmarks.harness import (
    GatewayProcess,
    LocalMember,
    Member,
    ProxyProcess,
    RSSSampler,
    cpu_seconds,
    direct_session,
    member_from_kubeconfig,
    open_fds,
    percentiles,
    proxy_session,
    rss_mb,
    timed,
)
from benchmarks.recording import provenance, reproducing_command, write_results

# workers last: it restarts the gateway
SECTIONS = ("reference", "throughput", "streaming", "watches", "costs", "wan", "workers")
NS = "default"
CM = f"/api/v1/namespaces/{NS}/configmaps"


def ratio(gateway: float, direct: float) -> float:
    return round(gateway / direct, 3) if direct else float("nan")


async def crud_loop(session: aiohttp.ClientSession, base: str, name: str) -> float:
    """The reference's loop: create, update, delete one ConfigMap; milliseconds."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v1"}}
    start = time.perf_counter()
    await timed(session, "POST", base + CM, json=body)
    body["data"] = {"k": "v2"}
    await timed(session, "PUT", f"{base}{CM}/{name}", json=body)
    await timed(session, "DELETE", f"{base}{CM}/{name}")
    return (time.perf_counter() - start) * 1000


# A named set of proxies under test, in the order measured: the peers, then "gateway" last.
Proxies = Mapping[str, ProxyProcess]


def _against(values: list[float], direct: list[float]) -> dict[str, Any]:
    """One proxy's figures: percentiles, total, added p50 and the ratio of the totals against direct."""
    return {
        "ms": percentiles(values),
        "total_s": round(sum(values) / 1000, 3),
        "added_p50_ms": round(percentiles(values)["p50"] - percentiles(direct)["p50"], 3),
        "ratio": ratio(sum(values), sum(direct)),
    }


def against_go_peer(gateway: dict[str, Any], go: dict[str, Any]) -> dict[str, float]:
    """The gateway's added p50 and its total as multiples of the Go peer's, measured in the same run."""
    go_total = go["total_s"]
    return {
        "added_p50": ratio(gateway["added_p50_ms"], go["added_p50_ms"]),
        "total": ratio(gateway["total_s"], go_total),
    }


async def alternating(
    n: int, direct: Callable[[int], Awaitable[float]], through: Mapping[str, Callable[[int], Awaitable[float]]]
) -> dict[str, Any]:
    """n rounds, each measuring direct and then every proxy in `through` ("gateway" last) once; figures against direct.

    The gateway's figures keep their keys (direct_ms, gateway_ms, added_p50_ms, ratio); each peer's are under "peers",
    and with the Go peer in the run, "gateway_vs_go_peer" holds the gateway's as multiples of the Go peer's."""
    d: list[float] = []
    each: dict[str, list[float]] = {name: [] for name in through}
    for i in range(n):
        d.append(await direct(i))
        for name, measure in through.items():
            each[name].append(await measure(i))
    g = _against(each["gateway"], d)
    out: dict[str, Any] = {
        "n": n,
        "direct_ms": percentiles(d),
        "gateway_ms": g["ms"],
        "direct_total_s": round(sum(d) / 1000, 3),
        "gateway_total_s": g["total_s"],
        "added_p50_ms": g["added_p50_ms"],
        "ratio": g["ratio"],
        "peers": {name: _against(values, d) for name, values in each.items() if name != "gateway"},
    }
    if "go_peer" in out["peers"]:
        out["gateway_vs_go_peer"] = against_go_peer(g, out["peers"]["go_peer"])
    return out


@contextlib.asynccontextmanager
async def clients(member: Member, proxies: Proxies, limit: int = 100) -> Any:
    """A keep-alive session direct to the member and one to each proxy."""
    async with contextlib.AsyncExitStack() as stack:
        direct = await stack.enter_async_context(direct_session(member, limit))
        through = {name: await stack.enter_async_context(proxy_session(p, limit)) for name, p in proxies.items()}
        yield direct, through


async def reference_cases(member: Member, proxies: Proxies, crud_n: int, get_n: int, list_n: int) -> dict[str, Any]:
    """The reference's CRUD loop, GET namespace and LIST namespaces, each proxy beside direct (list_n 0: no LIST)."""
    ns_path, list_path = "/api/v1/namespaces/default", "/api/v1/namespaces?limit=100"
    async with clients(member, proxies) as (direct, through):
        for _ in range(min(50, get_n)):  # warm-up: connections, caches, the credential
            await timed(direct, "GET", member.url + ns_path)
            for name, p in proxies.items():
                await timed(through[name], "GET", p.proxy + ns_path)
        tag = f"bench-{int(time.time())}"

        def each(
            measure: Callable[[aiohttp.ClientSession, str, str], Awaitable[float]],
        ) -> dict[str, Callable[[int], Awaitable[float]]]:
            """measure(session, proxy base URL, a name unique to this proxy and round), bound for each proxy."""

            def bound(name: str, base: str) -> Callable[[int], Awaitable[float]]:
                return lambda i: measure(through[name], base, f"{tag}-{name.replace('_', '-')}-{i}")

            return {name: bound(name, p.proxy) for name, p in proxies.items()}

        out = {
            "crud": await alternating(crud_n, lambda i: crud_loop(direct, member.url, f"{tag}-d{i}"), each(crud_loop)),
            "get_namespace": await alternating(
                get_n, lambda i: timed(direct, "GET", member.url + ns_path), each(lambda s, b, _: timed(s, "GET", b + ns_path))
            ),
        }
        if list_n:
            out["list_namespaces"] = await alternating(
                list_n,
                lambda i: timed(direct, "GET", member.url + list_path),
                each(lambda s, b, _: timed(s, "GET", b + list_path)),
            )
        return out


async def reference(member: Member, proxies: Proxies, quick: bool) -> dict[str, Any]:
    crud_n, get_n = (20, 200) if quick else (100, 1000)
    return await reference_cases(member, proxies, crud_n, get_n, get_n)


async def load(session: aiohttp.ClientSession, url: str, concurrency: int, seconds: float) -> int:
    """`concurrency` clients issuing GETs back to back for `seconds`; requests completed."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: {resp.status}")
            done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done


async def profiled(gw: GatewayProcess, output: Path, seconds: float) -> None:
    """py-spy records the gateway for `seconds` (a flame graph SVG, speedscope JSON for .json, collapsed stacks for .txt)."""
    fmt = {".json": "speedscope", ".txt": "raw"}.get(output.suffix, "flamegraph")
    beside = Path(sys.executable).parent / "py-spy"  # in the venv, which ./dev bench does not put on PATH
    spy = await asyncio.create_subprocess_exec(
        str(beside) if beside.exists() else "py-spy", "record",
        "--pid", str(gw.pids()[0]), "--duration", str(int(seconds)), "--rate", "250",
        "--format", fmt, "--output", str(output), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await spy.communicate()
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode().strip()} (pip install -e '.[bench]'; it needs ptrace)")
    print(f"  profile of the gateway under load: {output}", file=sys.stderr)


async def throughput(
    member: Member, proxies: Proxies, quick: bool, concurrency: int = 64, profile: Path | None = None
) -> dict[str, Any]:
    """Requests/s of `concurrency` clients, direct and through each proxy in turn, and each proxy's CPU per 1,000
    requests; medians of the rounds. The gateway's keep their keys; the peers' are under "peers"."""
    seconds, rounds = (1.0, 1) if quick else (3.0, 3)
    path = "/api/v1/namespaces/default"
    d_rps: list[float] = []
    rps: dict[str, list[float]] = {name: [] for name in proxies}
    cpu_per_k: dict[str, list[float]] = {name: [] for name in proxies}
    async with clients(member, proxies, limit=concurrency) as (direct, through):
        await load(direct, member.url + path, concurrency, 0.3)  # open the connections
        for name, p in proxies.items():
            await load(through[name], p.proxy + path, concurrency, 0.3)
        for _ in range(rounds):
            start = time.perf_counter()
            d_rps.append(await load(direct, member.url + path, concurrency, seconds) / (time.perf_counter() - start))
            for name, p in proxies.items():
                if profile is not None and name == "gateway":  # a separate run: the profiler slows what it measures
                    await asyncio.gather(profiled(p, profile, 5), load(through[name], p.proxy + path, concurrency, 6))  # type: ignore[arg-type]
                    profile = None
                pids = p.pids()
                cpu0, start = cpu_seconds(pids), time.perf_counter()
                n = await load(through[name], p.proxy + path, concurrency, seconds)
                rps[name].append(n / (time.perf_counter() - start))
                cpu_per_k[name].append((cpu_seconds(pids) - cpu0) / (n / 1000))
    d = statistics.median(d_rps)
    each = {
        name: {
            "rps": round(statistics.median(rps[name])),
            "ratio": ratio(statistics.median(rps[name]), d),
            "cpu_s_per_1000": round(statistics.median(cpu_per_k[name]), 3),
        }
        for name in proxies
    }
    g = each.pop("gateway")
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "direct_rps": round(d),
        "gateway_rps": g["rps"],
        "ratio": g["ratio"],
        "gateway_cpu_s_per_1000": g["cpu_s_per_1000"],
        "workers": proxies["gateway"].workers,
        "peers": each,
    }
    if "go_peer" in each:
        go = each["go_peer"]
        out["gateway_vs_go_peer"] = {
            "rps": ratio(g["rps"], go["rps"]),
            "cpu_s_per_1000": ratio(g["cpu_s_per_1000"], go["cpu_s_per_1000"]),
        }
    return out


async def read_stream(session: aiohttp.ClientSession, url: str) -> tuple[float, int, int]:
    """Seconds, bytes and lines of one streamed answer."""
    start, size, lines = time.perf_counter(), 0, 0
    async with session.get(url) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status}")
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.perf_counter() - start, size, lines


async def streaming(member: Member, proxies: Proxies, quick: bool) -> dict[str, Any]:
    """A big LIST and a long watch, direct and through each proxy in turn; every proxy must deliver direct's bytes."""
    mb, events, rounds = (10, 1000, 1) if quick else (100, 10_000, 3)
    gw = proxies["gateway"]
    out: dict[str, Any] = {}
    cases = {
        "list": (f"/apis/bench.test/v1/items?mb={mb}", mb * 2**20),
        "watch": (f"{CM}?watch=1&events={events}", events),
    }
    async with clients(member, proxies) as (direct, through):
        # A list a tenth the size first: flat memory means the same peak for both sizes.
        async with RSSSampler(gw.pids()) as small:
            await read_stream(through["gateway"], gw.proxy + f"/apis/bench.test/v1/items?mb={mb / 10}")
        for case, (path, _) in cases.items():
            d_times: list[float] = []
            times: dict[str, list[float]] = {name: [] for name in proxies}
            async with RSSSampler(gw.pids()) as rss:
                for _ in range(rounds):
                    dt, dsize, dlines = await read_stream(direct, member.url + path)
                    d_times.append(dt)
                    for name, p in proxies.items():
                        t, size, lines = await read_stream(through[name], p.proxy + path)
                        if (size, lines) != (dsize, dlines):
                            raise RuntimeError(
                                f"{case}: {name} delivered {size} bytes / {lines} lines, direct {dsize} / {dlines}"
                            )
                        times[name].append(t)
            d, g = statistics.median(d_times), statistics.median(times["gateway"])
            result: dict[str, Any] = {
                "direct_s": round(d, 3),
                "gateway_s": round(g, 3),
                "throughput_ratio": round(d / g, 3),
                "gateway_rss_before_mb": round(rss.before, 1),
                "gateway_rss_peak_mb": round(rss.peak, 1),
                "peers": {
                    name: {"s": round(statistics.median(t), 3), "throughput_ratio": round(d / statistics.median(t), 3)}
                    for name, t in times.items()
                    if name != "gateway"
                },
            }
            if "go_peer" in result["peers"]:
                go = result["peers"]["go_peer"]
                result["gateway_vs_go_peer"] = {"throughput": ratio(result["throughput_ratio"], go["throughput_ratio"])}
            if case == "list":
                result.update(gateway_rss_peak_tenth_size_mb=round(small.peak, 1))
                result.update(
                    mb=round(dsize / 2**20, 1), direct_mb_s=round(dsize / 2**20 / d, 1), gateway_mb_s=round(dsize / 2**20 / g, 1)
                )
            else:
                result.update(events=dlines, direct_events_s=round(dlines / d), gateway_events_s=round(dlines / g))
            out[case] = result
    return out


async def held_watches(proxy: ProxyProcess, n: int) -> dict[str, Any]:
    """`n` concurrent watches held through one proxy: its memory and fds before, while held and after they close."""
    url = proxy.proxy + f"{CM}?watch=1&timeoutSeconds=3600"
    pid = proxy.pids()[0]
    connector = aiohttp.TCPConnector(ssl=proxy.ssl, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(proxy.proxy + "/api/v1/namespaces/default") as r:  # the transport exists already
            await r.read()
        await asyncio.sleep(0.5)
        rss0, fds0 = rss_mb([pid]), open_fds(pid)
        opened: list[aiohttp.ClientResponse] = []
        start = time.perf_counter()
        for batch in range(0, n, 100):
            opened += await asyncio.gather(*(session.get(url) for _ in range(batch, min(n, batch + 100))))
        open_s = time.perf_counter() - start
        if any(r.status != 200 for r in opened):
            raise RuntimeError("a watch was refused: " + ", ".join({str(r.status) for r in opened}))
        await asyncio.sleep(1.0)
        rss1, fds1 = rss_mb([pid]), open_fds(pid)
        for r in opened:
            r.close()
        await connector.close()
    for _ in range(100):  # the proxy notices the closes and closes the member connections: up to 10 s
        if open_fds(pid) <= fds0 + 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return {
        "watches": n,
        "open_s": round(open_s, 2),
        "rss_mb": {"before": round(rss0, 1), "held": round(rss1, 1), "after_close": round(rss_mb([pid]), 1)},
        "kib_per_watch": round((rss1 - rss0) * 1024 / n, 1),
        "fds": {"before": fds0, "held": fds1, "after_close": open_fds(pid)},
    }


async def watches(proxies: Proxies, quick: bool) -> dict[str, Any]:
    """Held watches through each proxy in turn; the gateway's figures keep their keys, the peers' are under "peers"."""
    n = 200 if quick else 1000
    each = {name: await held_watches(p, n) for name, p in proxies.items()}
    g = each.pop("gateway")
    out: dict[str, Any] = {
        "watches": n,
        "open_s": g["open_s"],
        "gateway_rss_mb": g["rss_mb"],
        "kib_per_watch": g["kib_per_watch"],
        "gateway_fds": g["fds"],
        "peers": each,
    }
    if "go_peer" in each:
        out["gateway_vs_go_peer"] = {"kib_per_watch": ratio(g["kib_per_watch"], each["go_peer"]["kib_per_watch"])}
    return out


# The costs section's variants of the gateway: parts left out (benchmarks/gateway_variant.py), flags added.
COST_VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "without_metrics": (("metrics",), ()),
    "without_log_context": (("log-context",), ()),
    "fail_fast_gate_on": ((), ("--feature-gates", "HealthinessCheck=true")),
}


def _cost(with_part: float, without_part: float) -> dict[str, float]:
    """A part's cost from the CPU-seconds per 1,000 requests with and without it."""
    return {
        "cpu_s_per_1000_with": round(with_part, 4),
        "cpu_s_per_1000_without": round(without_part, 4),
        "us_per_request": round((with_part - without_part) * 1000, 1),
        "percent": round((with_part - without_part) / without_part * 100, 1),
    }


async def costs(member: Member, gw: GatewayProcess, work: Path, event_loop: str, quick: bool) -> dict[str, Any]:
    """CPU per 1,000 proxied GETs (64 clients) of the full gateway and of each variant, in alternating rounds
    (each round starts one variant later, so none is always first); medians."""
    seconds, rounds = (1.0, 3) if quick else (3.0, 5)
    concurrency = 64
    path = "/api/v1/namespaces/default"
    variants: dict[str, GatewayProcess] = {"full": gw}
    cpu: dict[str, list[float]] = {}
    try:
        for name, (without, flags) in COST_VARIANTS.items():
            variants[name] = GatewayProcess(work / f"cost-{name}", member, event_loop=event_loop, without=without, flags=flags)
            await variants[name].start()
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                name: await stack.enter_async_context(
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=v.ssl, limit=concurrency))
                )
                for name, v in variants.items()
            }
            for name, v in variants.items():
                await load(clients[name], v.proxy + path, concurrency, 0.3)  # open the connections
            names = list(variants)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    pids = variants[name].pids()
                    cpu0 = cpu_seconds(pids)
                    n = await load(clients[name], variants[name].proxy + path, concurrency, seconds)
                    cpu.setdefault(name, []).append((cpu_seconds(pids) - cpu0) / (n / 1000))
    finally:
        for v in variants.values():
            if v is not gw:
                await v.stop()
    median = {name: statistics.median(values) for name, values in cpu.items()}
    in_process = await hot_path_costs.measure(n=5_000 if quick else 20_000)
    full_us = median["full"] * 1000  # CPU-s per 1,000 requests = ms per request
    return {
        "end_to_end": {
            "rounds": rounds,
            "seconds_each": seconds,
            "concurrency": concurrency,
            "cpu_s_per_1000": {name: round(value, 4) for name, value in median.items()},
            "cpu_s_per_1000_each_round": {name: [round(v, 4) for v in values] for name, values in cpu.items()},
            "metrics": _cost(median["full"], median["without_metrics"]),
            "log_context": _cost(median["full"], median["without_log_context"]),
            "fail_fast_gate": _cost(median["fail_fast_gate_on"], median["full"]),
        },
        # The parts timed alone (benchmarks/hot_path_costs.py), and as a share of a whole request's CPU above.
        "in_process_us": in_process,
        "in_process_percent_of_a_request": {part: round(us / full_us * 100, 2) for part, us in in_process.items()},
        "gateway_us_per_request": round(full_us, 1),
    }


async def workers_scaling(member: Member, work: Path, event_loop: str, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for count in (1, 2):
        gw = GatewayProcess(work / f"workers-{count}", member, workers=count, event_loop=event_loop)
        await gw.start()
        try:
            out[f"workers_{count}"] = await throughput(member, {"gateway": gw}, quick)
        finally:
            await gw.stop()
    out["scaling"] = ratio(out["workers_2"]["gateway_rps"], out["workers_1"]["gateway_rps"])
    return out


async def wan_section(work: Path, event_loop: str, quick: bool, delay_ms: float, build: peers.GoPeerBuild) -> dict[str, Any]:
    """The reference's CRUD loop and a GET, direct and through each proxy, with the member behind a link that delays
    every packet `delay_ms` each way (benchmarks/wan.py); skipped, with the reason, where the link cannot be built."""
    if (reason := wan.why_not()) is not None:
        return {"skipped": reason}
    try:
        with wan.DelayedLink(delay_ms) as link:
            local = LocalMember(work / "wan", host=link.member_ip, prefix=link.exec_prefix)
            gw: GatewayProcess | None = None
            try:
                member = await local.start()
                gw = GatewayProcess(work / "wan-gateway", member, event_loop=event_loop)
                await gw.start()
                async with peers.started_peers(member, gw, build, work / "wan-peers") as running:
                    connect_ms = await tcp_connect_ms(link.member_ip, int(member.url.rsplit(":", 1)[1]))
                    crud_n, get_n = (5, 10) if quick else (30, 100)
                    cases = await reference_cases(member, {**running, "gateway": gw}, crud_n, get_n, 0)
            finally:
                if gw is not None:
                    await gw.stop()
                await local.stop()
    except wan.LinkUnavailable as e:
        return {"skipped": str(e)}
    return {
        "delay_ms_each_way": delay_ms,
        "link": link.description,
        "tcp_connect_ms": connect_ms,
        **cases,
    }


async def tcp_connect_ms(host: str, port: int, n: int = 5) -> float:
    """Median time of a TCP connect to the member: one round trip of the link, the evidence of its delay."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        _, writer = await asyncio.open_connection(host, port)
        times.append((time.perf_counter() - start) * 1000)
        writer.close()
        await writer.wait_closed()
    return round(statistics.median(times), 3)


# The sections that measure the peers beside the gateway (and so start them).
WITH_PEERS = ("reference", "throughput", "streaming", "watches")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    local = None if args.member_kubeconfig else LocalMember(work, args.member_latency_ms)
    member = member_from_kubeconfig(args.member_kubeconfig) if args.member_kubeconfig else await local.start()  # type: ignore[union-attr]
    gw = GatewayProcess(work / "gateway", member, event_loop=args.event_loop)
    build = peers.build_go_peer() if args.go_peer == "auto" else peers.GoPeerBuild(None, unavailable="turned off (--go-peer off)")
    results: dict[str, Any] = {
        "run": provenance(reproducing_command("./dev bench proxy", sys.argv[1:]), args.note),
        "member": (f"local benchmarks/member.py, latency {args.member_latency_ms} ms" if local else member.url),
        "event_loop": args.event_loop,
        "peers": {
            "go_version": build.go_version or None,
            "go_peer_cores": peers.GO_PEER_CORES,
            "unavailable": peers.unavailable(member, build),
        },
    }
    if build.binary is None:
        print(f"  the Go peer columns are left out: {build.unavailable}", file=sys.stderr, flush=True)
    try:
        await gw.start()
        async with contextlib.AsyncExitStack() as stack:
            running: dict[str, Any] = {}
            if set(args.sections) & set(WITH_PEERS):
                running = await stack.enter_async_context(peers.started_peers(member, gw, build, work / "peers"))
            proxies: Proxies = {**running, "gateway": gw}
            for section in args.sections:
                if section == "streaming" and local is None:
                    results[section] = {"skipped": "needs the local member (its generated lists, watches and credentials)"}
                    continue
                print(f"  running {section}...", file=sys.stderr, flush=True)
                if section == "reference":
                    results[section] = await reference(member, proxies, args.quick)
                elif section == "throughput":
                    results[section] = await throughput(member, proxies, args.quick, profile=args.profile)
                elif section == "streaming":
                    results[section] = await streaming(member, proxies, args.quick)
                elif section == "watches":
                    results[section] = await watches(proxies, args.quick)
                elif section == "costs":
                    results[section] = await costs(member, gw, work, args.event_loop, args.quick)
                elif section == "wan":
                    results[section] = await wan_section(work, args.event_loop, args.quick, args.wan_delay_ms, build)
                elif section == "workers":
                    await stack.aclose()  # the peers, idle from here on
                    await gw.stop()
                    results[section] = await workers_scaling(member, work, args.event_loop, args.quick)
    finally:
        await gw.stop()
        if local is not None:
            await local.stop()
    return results


LABELS = {"go_peer": "Go peer", "go_peer_per_request": "Go, transport/request", "minimal": "minimal aiohttp", "raw": "raw Python"}


def _beside(x: dict[str, Any], unit: str = "ms") -> str:
    """One measurement's p50 for direct and each proxy, with added p50 and ratio of totals."""
    parts = [f"direct {x['direct_ms']['p50']} {unit}"]
    for name, p in x["peers"].items():
        parts.append(f"{LABELS.get(name, name)} {p['ms']['p50']} (+{p['added_p50_ms']}, {p['ratio']}x)")
    parts.append(f"gateway {x['gateway_ms']['p50']} (+{x['added_p50_ms']}, {x['ratio']}x)")
    if vs := x.get("gateway_vs_go_peer"):
        parts.append(f"gateway/Go peer: added {vs['added_p50']}x, total {vs['total']}x")
    return "; ".join(parts)


def report(r: dict[str, Any]) -> None:
    m = r["run"]["machine"]
    print(
        f"\ngateway vs direct ({m['cpus']} cores, {m['cpu']}, Python {m['python']}, "
        f"gateway loop: {r['event_loop']}; member: {r['member']})"
    )
    for name, why in r.get("peers", {}).get("unavailable", {}).items():
        print(f"  {LABELS.get(name, name)}: left out, {why}")
    if ref := r.get("reference"):
        print("  reference benchmark, p50 ms (added p50 ms, ratio of the totals against direct)")
        for key, label in (
            ("crud", "ConfigMap create->update->delete"),
            ("get_namespace", "GET namespace"),
            ("list_namespaces", "LIST namespaces limit=100"),
        ):
            x = ref[key]
            print(f"  {label} x{x['n']}: {_beside(x)}")
    if t := r.get("throughput"):
        others = "".join(
            f", {LABELS.get(name, name)} {p['rps']} req/s ({p['cpu_s_per_1000']} CPU-s per 1,000)"
            for name, p in t["peers"].items()
        )
        print(
            f"  throughput, {t['concurrency']} clients: direct {t['direct_rps']} req/s{others}, "
            f"gateway {t['gateway_rps']} req/s ({t['ratio']}x; {t['gateway_cpu_s_per_1000']} CPU-s per 1,000)"
        )
    if (s := r.get("streaming")) and "skipped" not in s:
        li, w = s["list"], s["watch"]
        peers_list = "".join(f", {LABELS.get(n, n)} {p['throughput_ratio']}" for n, p in li["peers"].items())
        peers_watch = "".join(f", {LABELS.get(n, n)} {p['throughput_ratio']}" for n, p in w["peers"].items())
        print(
            f"  {li['mb']} MB LIST: direct {li['direct_mb_s']} MB/s, gateway {li['gateway_mb_s']} MB/s "
            f"({li['throughput_ratio']} of direct{peers_list}); "
            f"gateway RSS {li['gateway_rss_before_mb']} -> peak {li['gateway_rss_peak_mb']} MB "
            f"(peak with a list a tenth the size: {li['gateway_rss_peak_tenth_size_mb']} MB)"
        )
        print(
            f"  {w['events']}-event watch: direct {w['direct_events_s']} events/s, gateway {w['gateway_events_s']} events/s "
            f"({w['throughput_ratio']} of direct{peers_watch}); "
            f"gateway RSS {w['gateway_rss_before_mb']} -> peak {w['gateway_rss_peak_mb']} MB"
        )
    if w := r.get("watches"):
        rss, fds = w["gateway_rss_mb"], w["gateway_fds"]
        others = "".join(f"; {LABELS.get(n, n)} {p['kib_per_watch']} KiB" for n, p in w["peers"].items())
        print(
            f"  {w['watches']} concurrent watches: {w['kib_per_watch']} KiB of gateway RSS each "
            f"(RSS {rss['before']} -> {rss['held']} -> "
            f"{rss['after_close']} MB after close; fds {fds['before']} -> {fds['held']} -> {fds['after_close']}){others}"
        )
    if (wn := r.get("wan")) and "skipped" not in wn:
        print(f"  WAN, {wn['delay_ms_each_way']:g} ms each way (TCP connect {wn['tcp_connect_ms']} ms), p50 ms:")
        print(f"    CRUD loop x{wn['crud']['n']}: {_beside(wn['crud'])}")
        print(f"    GET namespace x{wn['get_namespace']['n']}: {_beside(wn['get_namespace'])}")
    for section, value in r.items():
        if isinstance(value, dict) and "skipped" in value:
            print(f"  {section}: skipped, {value['skipped']}")
    if c := r.get("costs"):
        labels = [
            ("metrics", "metrics", "metrics"),
            ("log_context", "log_context", "logging context"),
            ("fail_fast", "fail_fast_gate", "fail-fast gate on"),
        ]
        alone = ", ".join(
            f"{label} {c['in_process_us'][key]} µs ({c['in_process_percent_of_a_request'][key]} %)" for key, _, label in labels
        )
        e2e = c["end_to_end"]
        whole = ", ".join(f"{label} {e2e[key]['us_per_request']:+} µs ({e2e[key]['percent']:+} %)" for _, key, label in labels)
        share = f"share of the gateway's {c['gateway_us_per_request']} µs"
        print(f"  cost per proxied GET, each part timed alone (CPU, {share}): {alone}")
        print(
            f"  cost per proxied GET, gateways with and without it alternating ({e2e['rounds']} rounds of "
            f"{e2e['seconds_each']:g} s; noisy on a busy machine): {whole}"
        )
    if k := r.get("workers"):
        one, two = k["workers_1"], k["workers_2"]
        print(
            f"  --workers 1: {one['gateway_rps']} req/s, --workers 2: {two['gateway_rps']} req/s -> {k['scaling']}x "
            f"(direct in the same runs: {one['direct_rps']} / {two['direct_rps']} req/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", type=lambda s: [x for x in s.split(",") if x], default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not figures to quote")
    parser.add_argument("--member-kubeconfig", type=Path, help="benchmark against this real member cluster instead")
    parser.add_argument(
        "--member-latency-ms",
        type=float,
        default=0.0,
        help="the local member waits this long before each answer (a real cluster's own time)",
    )
    parser.add_argument("--event-loop", default="auto", choices=["auto", "uvloop", "asyncio"], help="the gateway's event loop")
    parser.add_argument("--json", type=Path, help="write the results here (benchmarks/recorded/ for figures the README quotes)")
    parser.add_argument("--note", help="recorded with the results: what else was going on (a busy machine, ...)")
    parser.add_argument("--profile", type=Path, help="throughput: also record the gateway with py-spy (.svg or .json)")
    parser.add_argument(
        "--go-peer",
        default="auto",
        choices=["auto", "off"],
        help="auto: measure the Go peer when Go can build it; off: leave it out",
    )
    parser.add_argument("--wan-delay-ms", type=float, default=10.0, help="wan: the link's delay each way (netem)")
    args = parser.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    args.sections = [name for name in SECTIONS if name in args.sections]  # workers must come last
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)  # the client as fast as it can be
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        results = runner.run(run(args))
    write_results(args.json, results)
    report(results)


if __name__ == "__main__":
    main()
