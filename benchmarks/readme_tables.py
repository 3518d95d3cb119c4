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


# The proxies of the proxy table's columns, in the order the suite measures them (benchmarks/peers.py).
PEER_COLUMNS = (
    ("go_peer", "Go peer"),
    ("go_peer_per_request", "Go peer, transport per request"),
    ("minimal", "minimal aiohttp"),
    ("raw", "raw Python"),
)
NOT_RUN = "—"


def peer_cells(peers: dict[str, Any], cell: Callable[[dict[str, Any]], str]) -> list[str]:
    """One cell per peer column: the figure, or a dash where that peer was not in the run."""
    return [cell(peers[name]) if name in peers else NOT_RUN for name, _ in PEER_COLUMNS]


def row(label: str, direct: str, peers: list[str], gateway: str, vs_go: str, goal: str | None = "") -> str:
    """A table row; goal None: the table has no Goal column."""
    return "| " + " | ".join([label, direct, *peers, gateway, vs_go, *([] if goal is None else [goal])]) + " |"


def vs_go(value: float | None) -> str:
    return f"{value:g}{X}" if value is not None else NOT_RUN


def go_goal(value: float | None, bound: float, *, at_least: bool = False) -> str:
    """Issue 18's goal for a figure as a multiple of the Go peer's: met or missed ("" without the Go peer)."""
    if value is None:
        return ""
    sign = "≥" if at_least else "≤"
    return f"{sign} {bound:g}{X} Go peer: {met(value >= bound if at_least else value <= bound)}"


def goals(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def latency_row(label: str, x: dict[str, Any], goal: str | None = "") -> str:
    """p50 and added p50 against direct, for direct, each peer and the gateway."""
    return row(
        label,
        ms(x["direct_ms"]["p50"]),
        peer_cells(x["peers"], lambda p: f"{ms(p['ms']['p50'])} ({p['added_p50_ms']:+g})"),
        f"{ms(x['gateway_ms']['p50'])} (**{x['added_p50_ms']:+g}**)",
        vs_go(x.get("gateway_vs_go_peer", {}).get("added_p50")),
        goal,
    )


def loop_row(label: str, x: dict[str, Any], goal: str | None = "") -> str:
    """p50 per loop and the ratio of the totals against direct."""
    return row(
        label,
        ms(x["direct_ms"]["p50"]),
        peer_cells(x["peers"], lambda p: f"{ms(p['ms']['p50'])} ({p['ratio']:g}{X})"),
        f"{ms(x['gateway_ms']['p50'])} (**{x['ratio']:g}{X}**)",
        vs_go(x.get("gateway_vs_go_peer", {}).get("total")),
        goal,
    )


def added_goal(loop: dict[str, Any]) -> str:
    """Issue 18's goal for writes: the loop's added p50 at most the Go peer's."""
    added = loop.get("gateway_vs_go_peer", {}).get("added_p50")
    return "" if added is None else f"added p50 {added:g}{X} the Go peer's, ≤ 1{X}: {met(added <= 1.0)}"


def left_out(p: dict[str, Any]) -> str:
    """The peers a run left out, and why (no Go, a member the peers cannot reach)."""
    missing = p.get("peers", {}).get("unavailable", {})
    labels = dict(PEER_COLUMNS)
    return "".join(f" {labels.get(name, name)}: not in this run, {why}." for name, why in missing.items())


def proxy_block() -> str:
    p, slow = load("proxy.json"), load("proxy-member-latency.json")
    ref, t, s, w = p["reference"], p["throughput"], p["streaming"], p["watches"]
    get, lst, crud = ref["get_namespace"], ref["list_namespaces"], ref["crud"]
    li, wa = s["list"], s["watch"]
    workers = p["workers"]

    # Flat: a list ten times larger raises the peak by less than a tenth of the extra bytes.
    growth = li["gateway_rss_peak_mb"] - li["gateway_rss_peak_tenth_size_mb"]
    flat = growth < (li["mb"] - li["mb"] / 10) / 10
    one, two = workers["workers_1"], workers["workers_2"]
    go_t, go_w = t.get("gateway_vs_go_peer", {}), w.get("gateway_vs_go_peer", {})
    peer_labels = [label + ("³" if i == 0 else "") for i, (_, label) in enumerate(PEER_COLUMNS)]
    header = ["Measure", "Direct", *peer_labels, "Gateway", "Gateway ÷ Go peer⁵", "Goal"]
    rows = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        latency_row(
            f"GET namespace {X}{get['n']:,}: p50 (added p50)",
            get,
            goals(
                f"< 1 ms added: {met(get['added_p50_ms'] < 1)}", go_goal(get.get("gateway_vs_go_peer", {}).get("added_p50"), 1.0)
            ),
        ),
        latency_row(f"LIST namespaces `limit=100` {X}{lst['n']:,}: p50 (added p50)", lst),
        loop_row(
            f"ConfigMap create → update → delete {X}{crud['n']}: p50 per loop (ratio of the totals to direct)",
            crud,
            goals(f"≤ 1.10{X}: {met(crud['ratio'] <= 1.10)}", added_goal(crud)),
        ),
        loop_row(
            "the same against a member that waits 1.9 ms per answer¹",
            slow["reference"]["crud"],
            f"cluster-gateway: 1.46{X}²",
        ),
        row(
            f"Small GETs, {t['concurrency']} concurrent clients (req/s)",
            num(t["direct_rps"]),
            peer_cells(t["peers"], lambda x: num(x["rps"])),
            f"{num(t['gateway_rps'])} ({t['ratio']:g}{X})",
            vs_go(go_t.get("rps")),
            go_goal(go_t.get("rps"), 0.7, at_least=True),
        ),
        row(
            "CPU per 1,000 proxied GETs (CPU-s)",
            "",
            peer_cells(t["peers"], lambda x: f"{x['cpu_s_per_1000']:g}"),
            f"{t['gateway_cpu_s_per_1000']:g}",
            vs_go(go_t.get("cpu_s_per_1000")),
            go_goal(go_t.get("cpu_s_per_1000"), 1.5),
        ),
        row(
            f"{li['mb']:g} MB LIST, throughput of direct",
            f"{li['direct_mb_s']:g} MB/s",
            peer_cells(li["peers"], lambda x: f"{x['throughput_ratio']:g}"),
            f"**{li['throughput_ratio']:g}**",
            vs_go(li.get("gateway_vs_go_peer", {}).get("throughput")),
            f"≥ 0.80: {met(li['throughput_ratio'] >= 0.80)}",
        ),
        row(
            f"{wa['events']:,}-event watch, throughput of direct",
            f"{num(wa['direct_events_s'])} events/s",
            peer_cells(wa["peers"], lambda x: f"{x['throughput_ratio']:g}"),
            f"{wa['throughput_ratio']:g}",
            vs_go(wa.get("gateway_vs_go_peer", {}).get("throughput")),
            f"≥ 0.80: {met(wa['throughput_ratio'] >= 0.80)}",
        ),
        row(
            f"RSS per held proxied watch ({w['watches']:,} at once)",
            "",
            peer_cells(w["peers"], lambda x: f"{x['kib_per_watch']:g} KiB"),
            f"{w['kib_per_watch']:g} KiB",
            vs_go(go_w.get("kib_per_watch")),
            go_goal(go_w.get("kib_per_watch"), 1.0) or "reported",
        ),
    ]
    gateway_only = [
        "| Gateway only | Result | Goal |",
        "|---|---|---|",
        f"| `--workers 2` against `--workers 1` (same run) | {num(two['gateway_rps'])} against {num(one['gateway_rps'])} "
        f"req/s: {workers['scaling']:g}{X} | |",
        f"| Peak RSS during a {li['mb'] / 10:g} / {li['mb']:g} MB list | {li['gateway_rss_peak_tenth_size_mb']:g} / "
        f"{li['gateway_rss_peak_mb']:g} MB (before: {li['gateway_rss_before_mb']:g}; {growth:+.1f} MB) | flat⁴: {met(flat)} |",
        f"| fds around {w['watches']:,} held watches | {w['gateway_fds']['before']:,} → {w['gateway_fds']['held']:,} → "
        f"{w['gateway_fds']['after_close']:,} after they close | |",
    ]
    cores = p["peers"]["go_peer_cores"] if "peers" in p else 1
    go_version = (p.get("peers") or {}).get("go_version") or "not built"
    notes = [
        "¹ `benchmarks/member.py --latency-ms 1.9`, a stand-in for a real cluster's own processing time "
        f"(in that run a direct loop of three requests took {slow['reference']['crud']['direct_ms']['p50'] / 3:.1f} ms "
        "per request at p50: uvloop's timers round up to whole milliseconds).",
        "² Not measured here: cluster-gateway's README gives 0.580 s direct and 0.849 s through cluster-gateway "
        "for 100 such loops against a real cluster (about 1.9 ms per request), on another machine.",
        "³ The peers, each its own process on the gateway's serving certificate, measured in the same run, alternating "
        "with direct and the gateway: *Go peer* is `benchmarks/go_peer/` (Go standard library `httputil.ReverseProxy`, "
        f"one pooled `http.Transport`, built with {go_version}, `GOMAXPROCS={cores}` as the gateway has one worker); "
        "*transport per request* is the same binary building a new transport, so a new TCP connection and TLS "
        "handshake to the member, for every request, as cluster-gateway does; *minimal aiohttp* is "
        "`benchmarks/minimal_proxy.py`, which forwards the request and streams the answer with no authentication, "
        "header rules, audit IDs, timeouts or error mapping; *raw Python* is `benchmarks/raw_proxy.py`, the least a "
        "Python proxy can do on this machine: asyncio protocols and httptools, no framework, no flow control, the "
        "floor under the gateway's fast lane." + left_out(p),
        "⁴ Flat: the list ten times larger raises the peak by less than a tenth of its extra bytes.",
        "⁵ The gateway's figure as a multiple of the Go peer's in the same run: of the added p50 (GET, LIST), of the "
        "totals (loops), of the requests/s, CPU, stream throughput and RSS per watch.",
        "",
        "Source: " + source("proxy.json", p),
        "",
        "The 1.9 ms row: " + source("proxy-member-latency.json", slow),
    ]
    return "\n".join(rows) + "\n\n" + "\n".join(gateway_only) + "\n\n" + "\n".join(notes) + "\n\n" + wan_table(p)


def wan_table(p: dict[str, Any]) -> str:
    """The `wan` section of the same run: the member behind a delayed link, or why it was not measured."""
    w = p.get("wan", {"skipped": "the run did not include the wan section"})
    if "skipped" in w:
        return f"**Over a WAN delay**: not measured in this run: {w['skipped']}."
    header = ["Over the delayed link", "Direct", *(label for _, label in PEER_COLUMNS), "Gateway", "Gateway ÷ Go peer⁵"]
    rows = [
        f"**Over a WAN delay**: {w['link']}; a TCP connect to the member took {ms(w['tcp_connect_ms'])} "
        "(one round trip). Same run, same order, alternating:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        loop_row(f"ConfigMap create → update → delete {X}{w['crud']['n']}: p50 per loop (ratio of the totals)", w["crud"], None),
        latency_row(f"GET namespace {X}{w['get_namespace']['n']}: p50 (added p50)", w["get_namespace"], None),
    ]
    return "\n".join(rows)


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
