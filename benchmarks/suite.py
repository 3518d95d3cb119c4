"""The proxy benchmark suite (issue 6): the gateway against the direct path, side by side, in one run.

Starts benchmarks/member.py (a deliberately fast member, its own process) or takes a real member
from --member-kubeconfig, and the gateway as its own process in standalone mode with one
cluster Secret for that member. Direct and gateway measurements alternate, so both see the
same machine noise; medians and ratios are what to quote. Sections:

  reference   the reference's benchmark: ConfigMap create→update→delete, GET namespace, LIST namespaces limit=100
  throughput  small GETs from 64 concurrent clients: requests/s, and gateway CPU-seconds per 1,000 requests
  streaming   a 100 MB LIST and a 10,000-event watch: throughput ratio, gateway peak RSS
  watches     1,000 concurrent proxied watches: gateway memory and fds per watch, and their return to baseline
  floor       the same GETs through benchmarks/minimal_proxy.py, the least an aiohttp proxy can do, beside the gateway
  costs       CPU per 1,000 proxied GETs of the gateway beside variants without its metrics, without its logging
              context, and with the HealthinessCheck (fail-fast) gate on: what each part costs, rounds alternating
  workers     throughput with --workers 1 and --workers 2 (SO_REUSEPORT)

Usage: ./dev bench [--sections reference,throughput,...] [--quick] [--member-kubeconfig FILE | --member-latency-ms 1.9]
                   [--event-loop asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import hot_path_costs
from benchmarks.harness import (
    GatewayProcess,
    LocalMember,
    Member,
    MinimalProxyProcess,
    RSSSampler,
    cpu_seconds,
    member_from_kubeconfig,
    open_fds,
    percentiles,
    rss_mb,
    sessions,
    timed,
)
from benchmarks.recording import provenance, reproducing_command

# workers last: it restarts the gateway
SECTIONS = ("reference", "throughput", "streaming", "watches", "floor", "costs", "workers")
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


async def side_by_side(
    n: int, direct: Callable[[int], Awaitable[float]], gateway: Callable[[int], Awaitable[float]]
) -> dict[str, Any]:
    """n alternating measurements of each; percentiles, totals and the ratio of the totals."""
    d, g = [], []
    for i in range(n):
        d.append(await direct(i))
        g.append(await gateway(i))
    return {
        "n": n,
        "direct_ms": percentiles(d),
        "gateway_ms": percentiles(g),
        "direct_total_s": round(sum(d) / 1000, 3),
        "gateway_total_s": round(sum(g) / 1000, 3),
        "added_p50_ms": round(percentiles(g)["p50"] - percentiles(d)["p50"], 3),
        "ratio": ratio(sum(g), sum(d)),
    }


async def reference(member: Member, gw: GatewayProcess, quick: bool) -> dict[str, Any]:
    crud_n, get_n = (20, 200) if quick else (100, 1000)
    async with sessions(member, gw) as (direct, through):
        for _ in range(50):  # warm-up: connections, caches, the credential
            await timed(direct, "GET", member.url + "/api/v1/namespaces/default")
            await timed(through, "GET", gw.proxy + "/api/v1/namespaces/default")
        tag = f"bench-{int(time.time())}"
        return {
            "crud": await side_by_side(
                crud_n,
                lambda i: crud_loop(direct, member.url, f"{tag}-d{i}"),
                lambda i: crud_loop(through, gw.proxy, f"{tag}-g{i}"),
            ),
            "get_namespace": await side_by_side(
                get_n,
                lambda i: timed(direct, "GET", member.url + "/api/v1/namespaces/default"),
                lambda i: timed(through, "GET", gw.proxy + "/api/v1/namespaces/default"),
            ),
            "list_namespaces": await side_by_side(
                get_n,
                lambda i: timed(direct, "GET", member.url + "/api/v1/namespaces?limit=100"),
                lambda i: timed(through, "GET", gw.proxy + "/api/v1/namespaces?limit=100"),
            ),
        }


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
    """py-spy records the gateway for `seconds` (a flame graph SVG, or speedscope JSON for a .json output)."""
    fmt = "speedscope" if output.suffix == ".json" else "flamegraph"
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
    member: Member, gw: GatewayProcess, quick: bool, concurrency: int = 64, profile: Path | None = None
) -> dict[str, Any]:
    seconds, rounds = (1.0, 1) if quick else (3.0, 3)
    path = "/api/v1/namespaces/default"
    d_rps, g_rps, cpu_per_k = [], [], []
    async with sessions(member, gw, limit=concurrency) as (direct, through):
        await load(direct, member.url + path, concurrency, 0.3)  # open the connections
        await load(through, gw.proxy + path, concurrency, 0.3)
        for _ in range(rounds):
            start = time.perf_counter()
            d_rps.append(await load(direct, member.url + path, concurrency, seconds) / (time.perf_counter() - start))
            if profile is not None:  # a separate run: the profiler slows what it measures
                await asyncio.gather(profiled(gw, profile, 5), load(through, gw.proxy + path, concurrency, 6))
                profile = None
            pids = gw.pids()
            cpu0, start = cpu_seconds(pids), time.perf_counter()
            n = await load(through, gw.proxy + path, concurrency, seconds)
            g_rps.append(n / (time.perf_counter() - start))
            cpu_per_k.append((cpu_seconds(pids) - cpu0) / (n / 1000))
    d, g = statistics.median(d_rps), statistics.median(g_rps)
    return {
        "concurrency": concurrency,
        "direct_rps": round(d),
        "gateway_rps": round(g),
        "ratio": ratio(g, d),
        "gateway_cpu_s_per_1000": round(statistics.median(cpu_per_k), 3),
        "workers": gw.workers,
    }


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


async def streaming(member: Member, gw: GatewayProcess, quick: bool) -> dict[str, Any]:
    mb, events, rounds = (10, 1000, 1) if quick else (100, 10_000, 3)
    out: dict[str, Any] = {}
    cases = {
        "list": (f"/apis/bench.test/v1/items?mb={mb}", mb * 2**20),
        "watch": (f"{CM}?watch=1&events={events}", events),
    }
    async with sessions(member, gw) as (direct, through):
        # A list a tenth the size first: flat memory means the same peak for both sizes.
        async with RSSSampler(gw.pids()) as small:
            await read_stream(through, gw.proxy + f"/apis/bench.test/v1/items?mb={mb / 10}")
        for case, (path, _) in cases.items():
            d_times, g_times, sizes = [], [], set()
            async with RSSSampler(gw.pids()) as rss:
                for _ in range(rounds):
                    dt, dsize, dlines = await read_stream(direct, member.url + path)
                    gt, gsize, glines = await read_stream(through, gw.proxy + path)
                    d_times.append(dt)
                    g_times.append(gt)
                    sizes.add((dsize, gsize, dlines, glines))
            (dsize, gsize, dlines, glines), *_ = sizes
            if dsize != gsize or dlines != glines:
                raise RuntimeError(f"{case}: the gateway delivered {gsize} bytes / {glines} lines, direct {dsize} / {dlines}")
            d, g = statistics.median(d_times), statistics.median(g_times)
            result = {
                "direct_s": round(d, 3),
                "gateway_s": round(g, 3),
                "throughput_ratio": round(d / g, 3),
                "gateway_rss_before_mb": round(rss.before, 1),
                "gateway_rss_peak_mb": round(rss.peak, 1),
            }
            if case == "list":
                result.update(gateway_rss_peak_tenth_size_mb=round(small.peak, 1))
                result.update(
                    mb=round(dsize / 2**20, 1), direct_mb_s=round(dsize / 2**20 / d, 1), gateway_mb_s=round(gsize / 2**20 / g, 1)
                )
            else:
                result.update(events=dlines, direct_events_s=round(dlines / d), gateway_events_s=round(glines / g))
            out[case] = result
    return out


async def watches(member: Member, gw: GatewayProcess, quick: bool) -> dict[str, Any]:
    n = 200 if quick else 1000
    url = gw.proxy + f"{CM}?watch=1&timeoutSeconds=3600"
    pid = gw.pids()[0]
    connector = aiohttp.TCPConnector(ssl=gw.ssl, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(gw.proxy + "/api/v1/namespaces/default") as r:  # the transport exists already
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
    for _ in range(100):  # the gateway notices the closes and closes the member connections: up to 10 s
        if open_fds(pid) <= fds0 + 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return {
        "watches": n,
        "open_s": round(open_s, 2),
        "gateway_rss_mb": {"before": round(rss0, 1), "held": round(rss1, 1), "after_close": round(rss_mb([pid]), 1)},
        "kib_per_watch": round((rss1 - rss0) * 1024 / n, 1),
        "gateway_fds": {"before": fds0, "held": fds1, "after_close": open_fds(pid)},
    }


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
            out[f"workers_{count}"] = await throughput(member, gw, quick)
        finally:
            await gw.stop()
    out["scaling"] = ratio(out["workers_2"]["gateway_rps"], out["workers_1"]["gateway_rps"])
    return out


async def floor(member: Member, local: LocalMember, gw: GatewayProcess, quick: bool) -> dict[str, Any]:
    """GET latency and throughput through the minimal proxy and through the gateway, each against direct."""
    minimal = MinimalProxyProcess(local.state, gw)
    await minimal.start()
    path = "/api/v1/namespaces/default"
    n = 200 if quick else 1000
    try:
        async with sessions(member, minimal) as (direct, through), sessions(member, gw) as (_, gateway):
            for _ in range(50):
                await timed(through, "GET", minimal.proxy + path)
                await timed(gateway, "GET", gw.proxy + path)
            latency = {
                "minimal": await side_by_side(
                    n, lambda i: timed(direct, "GET", member.url + path), lambda i: timed(through, "GET", minimal.proxy + path)
                ),
                "gateway": await side_by_side(
                    n, lambda i: timed(direct, "GET", member.url + path), lambda i: timed(gateway, "GET", gw.proxy + path)
                ),
            }
        return {
            "get_namespace": latency,
            "throughput_minimal": await throughput(member, minimal, quick),  # type: ignore[arg-type]
            "throughput_gateway": await throughput(member, gw, quick),
        }
    finally:
        await minimal.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    local = None if args.member_kubeconfig else LocalMember(work, args.member_latency_ms)
    member = member_from_kubeconfig(args.member_kubeconfig) if args.member_kubeconfig else await local.start()  # type: ignore[union-attr]
    gw = GatewayProcess(work / "gateway", member, event_loop=args.event_loop)
    results: dict[str, Any] = {
        "run": provenance(reproducing_command("./dev bench proxy", sys.argv[1:]), args.note),
        "member": (f"local benchmarks/member.py, latency {args.member_latency_ms} ms" if local else member.url),
        "event_loop": args.event_loop,
    }
    try:
        await gw.start()
        for section in args.sections:
            if section in ("streaming", "floor") and local is None:
                results[section] = {"skipped": "needs the local member (its generated lists, watches and credentials)"}
                continue
            print(f"  running {section}...", file=sys.stderr, flush=True)
            if section == "reference":
                results[section] = await reference(member, gw, args.quick)
            elif section == "throughput":
                results[section] = await throughput(member, gw, args.quick, profile=args.profile)
            elif section == "streaming":
                results[section] = await streaming(member, gw, args.quick)
            elif section == "watches":
                results[section] = await watches(member, gw, args.quick)
            elif section == "floor":
                assert local is not None
                results[section] = await floor(member, local, gw, args.quick)
            elif section == "costs":
                results[section] = await costs(member, gw, work, args.event_loop, args.quick)
            elif section == "workers":
                await gw.stop()
                results[section] = await workers_scaling(member, work, args.event_loop, args.quick)
    finally:
        await gw.stop()
        if local is not None:
            await local.stop()
    return results


def report(r: dict[str, Any]) -> None:
    m = r["run"]["machine"]
    print(
        f"\ngateway vs direct ({m['cpus']} cores, {m['cpu']}, Python {m['python']}, "
        f"gateway loop: {r['event_loop']}; member: {r['member']})"
    )
    if ref := r.get("reference"):
        print("  reference benchmark               direct p50/p90/p99 ms      gateway p50/p90/p99 ms     added p50   ratio")
        for key, label in (
            ("crud", "ConfigMap create->update->delete"),
            ("get_namespace", "GET namespace"),
            ("list_namespaces", "LIST namespaces limit=100"),
        ):
            x = ref[key]
            d, g, name = x["direct_ms"], x["gateway_ms"], f"{label} x{x['n']}"
            print(
                f"  {name:<34}{d['p50']:>7} {d['p90']:>7} {d['p99']:>7}      {g['p50']:>7} {g['p90']:>7} {g['p99']:>7}"
                f"     {x['added_p50_ms']:>+7} ms  {x['ratio']}x"
            )
    if t := r.get("throughput"):
        print(
            f"  throughput, {t['concurrency']} clients: direct {t['direct_rps']} req/s, "
            f"gateway {t['gateway_rps']} req/s ({t['ratio']}x); "
            f"gateway CPU {t['gateway_cpu_s_per_1000']} s per 1,000 requests"
        )
    if (s := r.get("streaming")) and "skipped" not in s:
        li, w = s["list"], s["watch"]
        print(
            f"  {li['mb']} MB LIST: direct {li['direct_mb_s']} MB/s, gateway {li['gateway_mb_s']} MB/s "
            f"({li['throughput_ratio']} of direct); "
            f"gateway RSS {li['gateway_rss_before_mb']} -> peak {li['gateway_rss_peak_mb']} MB "
            f"(peak with a list a tenth the size: {li['gateway_rss_peak_tenth_size_mb']} MB)"
        )
        print(
            f"  {w['events']}-event watch: direct {w['direct_events_s']} events/s, gateway {w['gateway_events_s']} events/s "
            f"({w['throughput_ratio']} of direct); gateway RSS {w['gateway_rss_before_mb']} -> peak {w['gateway_rss_peak_mb']} MB"
        )
    if w := r.get("watches"):
        rss, fds = w["gateway_rss_mb"], w["gateway_fds"]
        print(
            f"  {w['watches']} concurrent watches: {w['kib_per_watch']} KiB of gateway RSS each "
            f"(RSS {rss['before']} -> {rss['held']} -> "
            f"{rss['after_close']} MB after close; fds {fds['before']} -> {fds['held']} -> {fds['after_close']})"
        )
    for section, value in r.items():
        if isinstance(value, dict) and "skipped" in value:
            print(f"  {section}: skipped, {value['skipped']}")
    if (f := r.get("floor")) and "skipped" not in f:
        lm, lg = f["get_namespace"]["minimal"], f["get_namespace"]["gateway"]
        tm, tg = f["throughput_minimal"], f["throughput_gateway"]
        print(
            f"  floor: GET added p50 minimal proxy {lm['added_p50_ms']:+} ms, gateway {lg['added_p50_ms']:+} ms; "
            f"CPU per 1,000 GETs minimal {tm['gateway_cpu_s_per_1000']} s, gateway {tg['gateway_cpu_s_per_1000']} s; "
            f"req/s minimal {tm['gateway_rps']}, gateway {tg['gateway_rps']}"
        )
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
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
