"""The README's benchmark and load tables, rendered from the recorded results in benchmarks/recorded/.

README.md holds each generated block between two markers:

    <!-- generated: NAME (benchmarks/readme_tables.py; edit the recorded files, not this block) -->
    ...
    <!-- end generated: NAME -->

Usage: python benchmarks/readme_tables.py           rewrite README.md's blocks from the recorded files
       python benchmarks/readme_tables.py --check   exit 1 when README.md differs from them

Each block ends with the file it came from and the command that produced it, so every figure
in those sections can be traced and reproduced. tests/test_benchmarks.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RECORDED = ROOT / "benchmarks" / "recorded"
X = "\N{MULTIPLICATION SIGN}"
BLOCK = re.compile(
    r"(?P<open><!-- generated: (?P<name>[\w-]+) \(.*?\) -->\n)(?P<body>.*?)(?P<close><!-- end generated: (?P=name) -->)",
    re.DOTALL,
)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return data


def source(name: str, data: dict[str, Any]) -> str:
    """One line naming the recorded file, the command that wrote it, and when and where it ran."""
    run = data["run"]
    m = run["machine"]
    command = run["command"]
    where = f"--json benchmarks/recorded/{name}" if command.startswith("./dev bench") else ""
    if command.endswith("tests/reliability/test_load.py") and "LOAD_RESULTS=" not in command:
        command = f"LOAD_RESULTS=benchmarks/recorded/{name} {command}"
    line = (
        f"[`benchmarks/recorded/{name}`](benchmarks/recorded/{name}), written by "
        f"`{' '.join(part for part in (command, where) if part)}` on {run['date'][:10]} "
        f"(commit {run['commit'][:10]}; {m['cpus']} cores, {m['cpu']}, Python {m['python']}; "
        f"load average {m['load_average_1m_at_start']} at the start"
    )
    return line + (f"; {run['note']})." if run.get("note") else ").")


def met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def num(value: float, decimals: int = 0) -> str:
    return f"{value:,.{decimals}f}"


def ms(value: float) -> str:
    return f"{value:g} ms"


# --- blocks ------------------------------------------------------------------------------------


def registry_block() -> str:
    r = load("registry_scale.json")
    h, n = r["list_handler_ms"], r["secrets"]
    prod = len(range(0, n, 3))  # every third Secret is labelled env=prod
    rows = [
        "| Measure | p50 | p90 | p99 | Goal |",
        "|---|---|---|---|---|",
        f"| Initial sync (process start → `/readyz` 200, interpreter start-up included) | {r['initial_sync_s']} s | | "
        f"| < 10 s: {met(r['initial_sync_s'] < 10)} |",
    ]
    handler = (
        ("json", "JSON list", True),
        ("table", "Table list (what kubectl asks for)", True),
        ("json_selector", f"`labelSelector=env=prod` ({num(prod)} items)", False),
        ("json_page500", "`limit=500` page", False),
    )
    for key, label, goal in handler:
        x = h[key]
        rows.append(
            f"| List handler alone: {label} | {ms(x['p50'])} | {ms(x['p90'])} | {ms(x['p99'])} "
            f"| {'p50 < 100 ms: ' + met(x['p50'] < 100) if goal else ''} |"
        )
    for key, label, _ in handler:
        x = r[f"list_{key}_ms"]
        rows.append(f"| Through the gateway over TLS: {label} | {ms(x['p50'])} | {ms(x['p90'])} | {ms(x['p99'])} | |")
    rows.append(
        f"| Gateway RSS after sync / after the lists / peak | {r['rss_after_sync_mb']} / {r['rss_after_lists_mb']} / "
        f"{r['rss_peak_mb']} MB | | | peak < 300 MB: {met(r['rss_peak_mb'] < 300)} |"
    )
    counts = f"{n:,} Secrets, {r['lists']} timed lists of each kind."
    return "\n".join(rows) + f"\n\n{counts} Source: " + source("registry_scale.json", r)


def proxy_block() -> str:
    p, slow = load("proxy.json"), load("proxy-member-latency.json")
    ref, t, s, w = p["reference"], p["throughput"], p["streaming"], p["watches"]
    get, lst, crud = ref["get_namespace"], ref["list_namespaces"], ref["crud"]
    li, wa = s["list"], s["watch"]
    floor, workers = p["floor"], p["workers"]

    def trio(x: dict[str, float]) -> str:
        return f"{x['p50']:g} / {x['p90']:g} / {x['p99']:g} ms"

    # Flat: a list ten times larger raises the peak by less than a tenth of the extra bytes.
    growth = li["gateway_rss_peak_mb"] - li["gateway_rss_peak_tenth_size_mb"]
    flat = growth < (li["mb"] - li["mb"] / 10) / 10
    fm, fg = floor["get_namespace"]["minimal"], floor["get_namespace"]["gateway"]
    tm, tg = floor["throughput_minimal"], floor["throughput_gateway"]
    one, two = workers["workers_1"], workers["workers_2"]
    rows = [
        "| Measure | Direct | Through the gateway | Result | Goal |",
        "|---|---|---|---|---|",
        f"| GET namespace {X}{get['n']:,}, p50 / p90 / p99 | {trio(get['direct_ms'])} | {trio(get['gateway_ms'])} "
        f"| **{get['added_p50_ms']:+g} ms p50** | < 1 ms added: {met(get['added_p50_ms'] < 1)} |",
        f"| LIST namespaces `limit=100` {X}{lst['n']:,}, p50 / p90 / p99 | {trio(lst['direct_ms'])} | {trio(lst['gateway_ms'])} "
        f"| {lst['added_p50_ms']:+g} ms p50 | |",
        f"| ConfigMap create → update → delete {X}{crud['n']}, p50 per loop (ratio: of the totals) "
        f"| {ms(crud['direct_ms']['p50'])} | {ms(crud['gateway_ms']['p50'])} | **{crud['ratio']:g}{X}** "
        f"| ≤ 1.10{X}: {met(crud['ratio'] <= 1.10)} |",
        f"| the same against a member that waits 1.9 ms per answer¹ | {ms(slow['reference']['crud']['direct_ms']['p50'])} "
        f"| {ms(slow['reference']['crud']['gateway_ms']['p50'])} | **{slow['reference']['crud']['ratio']:g}{X}** "
        f"(GET {slow['reference']['get_namespace']['ratio']:g}{X}) | cluster-gateway: 1.46{X}² |",
        f"| Small GETs, {t['concurrency']} concurrent clients | {num(t['direct_rps'])} req/s | {num(t['gateway_rps'])} req/s "
        f"| {t['ratio']:g}{X} | |",
        f"| Gateway CPU per 1,000 proxied GETs | | {t['gateway_cpu_s_per_1000']:g} CPU-s | | |",
        f"| `--workers 2` against `--workers 1` (same run) | | {num(two['gateway_rps'])} against {num(one['gateway_rps'])} "
        f"req/s | {workers['scaling']:g}{X} | |",
        f"| An aiohttp proxy with none of our features (`floor`)³: GET added p50; CPU per 1,000 GETs | | "
        f"minimal proxy {fm['added_p50_ms']:+g} ms, {tm['gateway_cpu_s_per_1000']:g} CPU-s; "
        f"gateway {fg['added_p50_ms']:+g} ms, {tg['gateway_cpu_s_per_1000']:g} CPU-s | | |",
        f"| {li['mb']:g} MB LIST | {li['direct_mb_s']:g} MB/s | {li['gateway_mb_s']:g} MB/s "
        f"| **{li['throughput_ratio']:g}** of direct | ≥ 0.80: {met(li['throughput_ratio'] >= 0.80)} |",
        f"| {wa['events']:,}-event watch | {num(wa['direct_events_s'])} events/s | {num(wa['gateway_events_s'])} events/s "
        f"| {wa['throughput_ratio']:g} of direct | ≥ 0.80: {met(wa['throughput_ratio'] >= 0.80)} |",
        f"| Gateway peak RSS during a {li['mb'] / 10:g} / {li['mb']:g} MB list | | "
        f"{li['gateway_rss_peak_tenth_size_mb']:g} / {li['gateway_rss_peak_mb']:g} MB "
        f"(before: {li['gateway_rss_before_mb']:g}) | {growth:+.1f} MB | flat⁴: {met(flat)} |",
        f"| {w['watches']:,} concurrent proxied watches | | {w['kib_per_watch']:g} KiB of gateway RSS per watch; "
        f"fds {w['gateway_fds']['before']:,} → {w['gateway_fds']['held']:,} → {w['gateway_fds']['after_close']:,} "
        f"after they close | | reported |",
    ]
    notes = [
        "¹ `benchmarks/member.py --latency-ms 1.9`, a stand-in for a real cluster's own processing time "
        f"(in that run a direct loop of three requests took {slow['reference']['crud']['direct_ms']['p50'] / 3:.1f} ms "
        "per request at p50: uvloop's timers round up to whole milliseconds).",
        "² Not measured here: cluster-gateway's README gives 0.580 s direct and 0.849 s through cluster-gateway "
        "for 100 such loops against a real cluster (about 1.9 ms per request), on another machine.",
        "³ `benchmarks/minimal_proxy.py`: forwards the request and streams the answer, with no "
        "authentication, header rules, audit IDs, timeouts or error mapping; each against direct in the same run.",
        "⁴ Flat: the list ten times larger raises the peak by less than a tenth of its extra bytes.",
        "",
        "Source: " + source("proxy.json", p),
        "",
        "The 1.9 ms row: " + source("proxy-member-latency.json", slow),
    ]
    return "\n".join(rows) + "\n\n" + "\n".join(notes)


def event_loops_block() -> str:
    uv, aio = load("proxy.json"), load("proxy-asyncio.json")
    rows = ["| | asyncio | uvloop |", "|---|---|---|"]
    rows.append(
        f"| Gateway RSS per proxied watch (two TLS connections) | {aio['watches']['kib_per_watch']:g} KiB "
        f"| {uv['watches']['kib_per_watch']:g} KiB |"
    )
    for key, label in (("list", "LIST"), ("watch", "watch")):
        a, u = aio["streaming"][key], uv["streaming"][key]
        size = f"{a['mb']:g} MB LIST" if key == "list" else f"{a['events']:,}-event {label}"
        rows.append(f"| {size}, of direct | {a['throughput_ratio']:g} | {u['throughput_ratio']:g} |")
    rows.append(
        f"| CPU per 1,000 GETs | {aio['throughput']['gateway_cpu_s_per_1000']:g} s "
        f"| {uv['throughput']['gateway_cpu_s_per_1000']:g} s |"
    )
    rows.append(
        f"| Added p50 to a GET | {aio['reference']['get_namespace']['added_p50_ms']:+g} ms "
        f"| {uv['reference']['get_namespace']['added_p50_ms']:+g} ms |"
    )
    return (
        "\n".join(rows)
        + "\n\nTwo runs. uvloop: the proxy run above ([`benchmarks/recorded/proxy.json`](benchmarks/recorded/proxy.json)). "
        + "asyncio: "
        + source("proxy-asyncio.json", aio)
    )


def load_block() -> str:
    r = load("load.json")
    labels = {
        "list": "list",
        "get": "get",
        "get_missing": "get (missing, 404)",
        "proxy_get": "proxied GET",
        "watch_leave": "watch, left mid-stream",
        "watch_timeout": "watch, `timeoutSeconds=1`",
    }
    rows = ["| | requests | per second | p50 | p99 |", "|---|---|---|---|---|"]
    for kind, label in labels.items():
        k = r["kinds"][kind]
        rows.append(f"| {label} | {k['requests']:,} | {num(k['per_second'])} | {num(k['p50_ms'])} ms | {num(k['p99_ms'])} ms |")
    log = r.get("gateway_log", {})
    totals = (
        f"{num(r['total_per_second'])} requests/s in all over {r['seconds']:g} s, {r['watches_opened']:,} watches with "
        f"{r['watch_events']:,} events, **{r['errors']} errors**, and {log.get('WARNING', 0)} warnings and "
        f"{log.get('ERROR', 0)} errors in the gateway's log. The gateway before, during and after the load:"
    )
    g = r["gateway"]
    moments = ("before", "during", "after")
    foot = ["| | before | during | after |", "|---|---|---|---|"]
    for key, label in (
        ("client_connections", "client connections"),
        ("member_connections", "pooled member connections"),
        ("other_fds", "other fds"),
        ("tasks", "asyncio tasks"),
    ):
        foot.append(f"| {label} | " + " | ".join(f"{g[m][key]:,}" for m in moments) + " |")
    foot.append("| RSS | " + " | ".join(f"{g[m]['rss_mb']:.1f} MiB" for m in moments) + " |")
    return "\n".join(rows) + "\n\n" + totals + "\n\n" + "\n".join(foot) + "\n\nSource: " + source("load.json", r)


def konnectivity_block() -> str:
    """ClusterProxy (`./dev bench konnectivity`): four lines in one run, each against direct."""
    r = load("konnectivity.json")
    crud, get, t, cpu = r["crud"], r["get_namespace"], r["tunnels"], r["cpu_s_per_1000_gets"]
    lines = (
        ("direct_endpoint", "Through the gateway, direct endpoint", "cluster-gateway: 1.46" + X + "¹"),
        ("cluster_proxy_pooled", "Through the gateway, ClusterProxy (pooled tunnels)", "cluster-gateway: 2.43" + X + "¹"),
        ("cluster_proxy_tunnel_per_request", "The same, a new tunnel per request (cluster-gateway's design)²", ""),
    )
    rows = [
        f"| | CRUD loop {X}{crud['n']}, p50 | ratio | GET {X}{get['n']:,}, p50 | ratio | Tunnels dialled for "
        f"{t['requests_per_line']:,} requests | CPU-s per 1,000 GETs: gateway; fake proxy-server + agent³ | Reference |",
        "|---|---|---|---|---|---|---|---|",
        f"| Direct | {ms(crud['direct']['ms']['p50'])} | 1{X} | {ms(get['direct']['ms']['p50'])} | 1{X} | | | |",
    ]
    for key, label, reference in lines:
        tunnels = f"{t[key]:,}" if key in t else ""
        rows.append(
            f"| {label} | {ms(crud[key]['ms']['p50'])} | **{crud[key]['ratio']:g}{X}** | {ms(get[key]['ms']['p50'])} "
            f"| {get[key]['ratio']:g}{X} | {tunnels} | {cpu[key]['gateway']:g}; {cpu[key]['fake_proxy_server_and_agent']:g} "
            f"| {reference} |"
        )
    notes = [
        "Ratios are of the totals, each line against direct, alternating request by request in one run; the member "
        f"waits {r['member_latency_ms']:g} ms per answer; health probing is off, so the tunnels counted are the "
        "timed requests' alone. The proxy-server and agent are the Python fake "
        "(`benchmarks/konnectivity_fake.py`, in its own process); a real ANP proxy-server and agent are Go, so the "
        "absolute cost of a tunnel is overstated here.",
        "",
        "¹ cluster-gateway's README, for its CRUD loop against a real cluster, on another machine; not measured here.",
        "² `benchmarks/gateway_variant.py --without tunnel-reuse`: no keep-alive to the member, so every request "
        "dials a tunnel and does a TLS handshake; its gRPC channel stays shared (cluster-gateway also opens a new "
        "gRPC connection per request, so this line understates its cost).",
        f"³ Each line alone, {get['n']:,} GETs back to back after the timed rounds (its tunnels are in the count).",
        "",
        "Source: " + source("konnectivity.json", r),
    ]
    return "\n".join(rows) + "\n\n" + "\n".join(notes)


BLOCKS: dict[str, Callable[[], str]] = {
    "registry": registry_block,
    "proxy": proxy_block,
    "event-loops": event_loops_block,
    "load": load_block,
    "konnectivity": konnectivity_block,
}


def render(readme: str) -> str:
    """README text with every generated block rendered afresh from the recorded files."""
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(f"README.md: unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
        seen.add(name)
        return match["open"] + BLOCKS[name]() + "\n" + match["close"]

    out = BLOCK.sub(replace, readme)
    missing = set(BLOCKS) - seen
    if missing:
        raise SystemExit(f"README.md: no generated block for {', '.join(sorted(missing))}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md differs from the recorded files")
    args = parser.parse_args()
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md's figures differ from benchmarks/recorded/: run python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
