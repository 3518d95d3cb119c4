"""The benchmarks run end to end (smoke runs with small counts), and every figure the README
quotes comes from a recorded result in benchmarks/recorded/. No timing is asserted here;
figures live in `./dev bench`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peers, readme_tables, suite, wan
from benchmarks.recording import reproducing_command

REPO = Path(__file__).resolve().parent.parent
RECORDED = REPO / "benchmarks" / "recorded"


def test_the_readme_quotes_exactly_the_recorded_results() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme_tables.render(readme) == readme, "run: python benchmarks/readme_tables.py"


def test_a_stale_figure_in_the_readme_is_rewritten_from_the_recorded_file() -> None:
    readme = (REPO / "README.md").read_text()
    stale = readme_tables.BLOCK.sub(lambda m: m["open"] + "| list | 8,800 | 282 | 155 ms | 718 ms |\n" + m["close"], readme)
    assert stale != readme
    assert readme_tables.render(stale) == readme


def test_every_recorded_result_says_where_it_came_from_and_is_quoted() -> None:
    readme = (REPO / "README.md").read_text()
    recorded = sorted(RECORDED.glob("*.json"))
    assert [f.name for f in recorded] == [
        "konnectivity.json",
        "load.json",
        "proxy-asyncio.json",
        "proxy-member-latency.json",
        "proxy.json",
        "registry_scale.json",
    ]
    for file in recorded:
        run = json.loads(file.read_text())["run"]
        assert run["command"].startswith(("./dev bench ", "LOAD_RESULTS=benchmarks/recorded/load.json")), run["command"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["date"])
        assert re.fullmatch(r"[0-9a-f]{40}", run["commit"]), "recorded from uncommitted code: " + run["commit"]
        assert {"cpus", "cpu", "python", "kernel", "load_average_1m_at_start"} <= set(run["machine"])
        assert f"[`benchmarks/recorded/{file.name}`](benchmarks/recorded/{file.name})" in readme


def test_the_reproducing_command_leaves_out_where_the_result_goes() -> None:
    argv = ["--sections", "reference", "--json", "benchmarks/recorded/x.json", "--note=busy", "--quick", "--note", "a b"]
    assert reproducing_command("./dev bench proxy", argv) == "./dev bench proxy --sections reference --quick"


def test_the_registry_benchmark_times_the_products_list_handler(tmp_path: Path) -> None:
    out = tmp_path / "registry.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/registry_scale.py", "--secrets", "300", "--lists", "3", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["run"]["command"] == "./dev bench registry --secrets 300 --lists 3"
    assert set(r["list_handler_ms"]) == {"json", "table", "json_selector", "json_page500"}
    for key in ("json", "table", "json_selector", "json_page500"):
        assert r["list_handler_ms"][key]["p50"] > 0 and r[f"list_{key}_ms"]["p50"] > 0
    assert r["initial_sync_s"] > 0 and 0 < r["rss_after_sync_mb"] <= r["rss_peak_mb"]
    assert "the list handler alone (list_or_watch in-process" in proc.stdout


def test_the_quick_suite_measures_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/suite.py", "--quick", "--wan-delay-ms", "5", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    for case in ("crud", "get_namespace", "list_namespaces"):
        x = r["reference"][case]
        assert x["n"] > 0 and x["direct_ms"]["p50"] > 0 and x["gateway_ms"]["p50"] > 0
    assert r["throughput"]["gateway_rps"] > 0 and r["throughput"]["gateway_cpu_s_per_1000"] > 0
    # The suite itself fails when the gateway delivers other bytes or events than direct.
    assert 10 <= r["streaming"]["list"]["mb"] < 10.2  # about 10 MiB, generated item by item
    assert r["streaming"]["watch"]["events"] == 1000
    w = r["watches"]
    assert w["watches"] == 200 and w["gateway_fds"]["held"] >= w["gateway_fds"]["before"] + 200
    assert w["gateway_fds"]["after_close"] <= w["gateway_fds"]["before"] + 2  # every watch's sockets were closed
    assert_peers_beside_the_gateway(r, go=peers.build_go_peer().binary is not None)
    assert_wan_measured_or_skipped(r["wan"], delay_ms=5)
    assert r["workers"]["workers_2"]["workers"] == 2 and r["workers"]["workers_2"]["gateway_rps"] > 0
    costs = r["costs"]
    assert set(costs["in_process_us"]) == set(costs["in_process_percent_of_a_request"]) == {"metrics", "log_context", "fail_fast"}
    assert set(costs["end_to_end"]["cpu_s_per_1000"]) == {"full", "without_metrics", "without_log_context", "fail_fast_gate_on"}
    assert all(len(rounds) == 3 for rounds in costs["end_to_end"]["cpu_s_per_1000_each_round"].values())
    assert "gateway vs direct" in proc.stdout


GO_REASON = "Go is not installed"


def assert_peers_beside_the_gateway(r: dict[str, Any], *, go: bool) -> None:
    """Every direct-vs-gateway measurement has the peers' columns: the Go ones only when Go built the peer, and
    otherwise the run says why they are missing."""
    expected = {"go_peer", "go_peer_per_request", "minimal", "raw"} if go else {"minimal", "raw"}
    measured = [r["reference"][case] for case in ("crud", "get_namespace", "list_namespaces")]
    measured += [r["throughput"], r["streaming"]["list"], r["streaming"]["watch"], r["watches"]]
    for x in measured:
        assert set(x["peers"]) == expected, x
        assert ("gateway_vs_go_peer" in x) == go
    for case in ("crud", "get_namespace", "list_namespaces"):
        for p in r["reference"][case]["peers"].values():
            assert p["ms"]["p50"] > 0 and p["total_s"] > 0
    for p in r["throughput"]["peers"].values():
        assert p["rps"] > 0 and p["cpu_s_per_1000"] > 0
    for p in r["watches"]["peers"].values():  # every peer closed its sockets once the watches went
        assert p["watches"] == 200 and p["fds"]["held"] >= p["fds"]["before"] + 200
        assert p["fds"]["after_close"] <= p["fds"]["before"] + 2
    if go:
        assert r["peers"]["go_version"].startswith("go1.") and r["peers"]["unavailable"] == {}
    else:
        assert r["peers"]["go_version"] is None
        assert set(r["peers"]["unavailable"]) == {"go_peer", "go_peer_per_request"}


def assert_wan_measured_or_skipped(w: dict[str, Any], *, delay_ms: float) -> None:
    """Where the link can be built, it really delays (a TCP connect is a round trip), and a transport per request
    pays its extra round trips; elsewhere the section says why it did not run."""
    if (why := wan.why_not()) is not None:
        assert w == {"skipped": why}
        return
    if "skipped" in w:  # root, but no network namespaces here (a container without NET_ADMIN, no netem and no TUN)
        assert w["skipped"].startswith(("`ip ", "`tc ", "the delay relay did not start: delay_relay: ")), w
        return
    assert w["delay_ms_each_way"] == delay_ms and w["tcp_connect_ms"] >= 2 * delay_ms
    direct, per_request = w["get_namespace"]["direct_ms"]["p50"], w["get_namespace"]["peers"]["minimal"]["ms"]["p50"]
    assert direct >= 2 * delay_ms and per_request >= 2 * delay_ms  # one round trip at least, pooled
    if "go_peer_per_request" in w["get_namespace"]["peers"]:  # plus a TCP and a TLS handshake: a round trip each
        assert w["get_namespace"]["peers"]["go_peer_per_request"]["ms"]["p50"] >= direct + 2 * delay_ms
    assert w["crud"]["n"] == 5 and w["crud"]["gateway_ms"]["p50"] >= 3 * 2 * delay_ms
    assert not [ns for ns in wan.namespaces() if ns.startswith("gwbench-")]  # torn down


def test_without_go_the_go_peer_columns_are_left_out_and_the_run_says_why(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/suite.py", "--quick", "--sections", "reference", "--go-peer", "off", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["peers"] == {
        "go_version": None,
        "go_peer_cores": 1,
        "unavailable": {"go_peer": "turned off (--go-peer off)", "go_peer_per_request": "turned off (--go-peer off)"},
    }
    for case in ("crud", "get_namespace", "list_namespaces"):
        assert set(r["reference"][case]["peers"]) == {"minimal", "raw"} and "gateway_vs_go_peer" not in r["reference"][case]
    assert "the Go peer columns are left out: turned off (--go-peer off)" in proc.stderr
    assert "Go peer: left out, turned off (--go-peer off)" in proc.stdout
    # The README's table shows a dash in each Go column and the reason under it.
    assert readme_tables.latency_row("GET", r["reference"]["get_namespace"]).count(readme_tables.NOT_RUN) == 3
    assert "Go peer: not in this run, turned off (--go-peer off)." in readme_tables.left_out(r)


def test_without_go_on_the_path_the_go_peer_is_not_built_and_says_why(tmp_path: Path) -> None:
    build = peers.build_go_peer(go=str(tmp_path / "no-go-here"), binary=tmp_path / "go-peer")
    assert build.binary is None and not (tmp_path / "go-peer").exists()
    assert (
        build.unavailable
        == f"{GO_REASON} ({str(tmp_path / 'no-go-here')!r} is not on the PATH; Debian: apt-get install golang-go)"
    )


async def test_without_root_the_wan_section_is_skipped_and_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = wan.namespaces() if shutil.which("ip") else []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = await suite.wan_section(tmp_path, "auto", True, 10, peers.GoPeerBuild(None, unavailable="not needed"))
    assert result == {
        "skipped": "needs root: it builds a network namespace, a veth pair and tc netem queues (run ./dev bench as root)"
    }
    assert not any(os.scandir(tmp_path))  # no member, gateway or peer was started
    if shutil.which("ip"):
        assert wan.namespaces() == before


@pytest.mark.skipif(wan.why_not() is not None, reason=f"the delayed link needs root, ip and tc: {wan.why_not()}")
def test_the_delayed_link_is_torn_down_when_the_run_fails_inside_it() -> None:
    link = wan.DelayedLink(5, tag=os.getpid() + 1)
    try:
        link.build()
    except wan.LinkUnavailable as e:
        assert link.netns not in wan.namespaces()  # a failed build leaves nothing behind either
        pytest.skip(f"no delayed link on this machine: {e}")
    with pytest.raises(KeyboardInterrupt), link:
        assert link.netns in wan.namespaces()
        assert link.description  # netem, or the TUN relay where the kernel has none
        raise KeyboardInterrupt
    assert link.netns not in wan.namespaces()
    gone = subprocess.run(["ip", "link", "show", link.host_if], capture_output=True, text=True, check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr
    assert link.relay is None


async def test_member_kubeconfig_points_the_suite_at_another_member(tmp_path: Path) -> None:
    import asyncio

    import yaml

    from benchmarks.harness import LocalMember

    member = LocalMember(tmp_path / "elsewhere")  # stands in for a real cluster: reached only through the kubeconfig
    info = await member.start()
    try:
        (tmp_path / "ca.crt").write_text(info.ca_pem or "")
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "member",
            "clusters": [{"name": "m", "cluster": {"server": info.url, "certificate-authority": "ca.crt"}}],
            "users": [{"name": "admin", "user": {"token": info.token}}],
            "contexts": [{"name": "member", "context": {"cluster": "m", "user": "admin"}}],
        }
        (tmp_path / "member.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        out = tmp_path / "bench.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "benchmarks/suite.py", "--quick", "--sections", "reference,streaming",
            "--member-kubeconfig", str(tmp_path / "member.kubeconfig"), "--json", str(out),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await member.stop()
    assert proc.returncode == 0, err.decode()[-3000:]
    r = json.loads(out.read_text())
    assert r["member"] == info.url
    assert r["reference"]["crud"]["n"] == 20 and r["reference"]["crud"]["gateway_ms"]["p50"] > 0
    assert "skipped" in r["streaming"]  # a real member has no generated 100 MB list


def test_the_fanout_benchmark_lists_every_member_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "fanout.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/fanout.py", "--members", "3", "--rounds", "1", "--latency-ms", "1", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())  # the benchmark itself fails unless both ways read 3 x 1,001 items
    assert (r["run"]["command"], r["members"], r["items_per_member"]) == (
        "./dev bench fanout --members 3 --rounds 1 --latency-ms 1",
        3,
        1001,
    )
    for way in ("fanout", "in_turn"):
        assert 0 < r[way]["first_item_ms"]["p50"] <= r[way]["total_ms"]["p50"]
    assert r["fanout"]["gateway_rss_mb"]["peak"] > 0
    assert "fan-out: first item" in proc.stdout


async def test_the_cost_variant_without_metrics_really_counts_nothing(tmp_path: Path) -> None:
    """benchmarks/gateway_variant.py: the gateway it runs proxies as usual, and its /metrics shows no proxied request."""
    import aiohttp

    from benchmarks.harness import GatewayProcess, LocalMember

    local = LocalMember(tmp_path / "member")
    member = await local.start()
    variant = GatewayProcess(tmp_path / "gateway", member, without=("metrics",))
    try:
        await variant.start()  # it proxied a GET to become ready
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=variant.ssl)) as s:
            async with s.get(variant.proxy + "/api/v1/namespaces/default") as resp:
                assert resp.status == 200
            async with s.get(variant.base + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
    finally:
        await variant.stop()
        await local.stop()
    assert "# TYPE ocm_proxy_proxied_requests_by_cluster_total counter" in text
    assert "ocm_proxy_proxied_requests_by_cluster_total{" not in text


def test_the_konnectivity_benchmark_dials_a_tunnel_per_request_only_for_the_reference_design(tmp_path: Path) -> None:
    """Four lines in one run; the fake proxy-server (its own process) counts the tunnels each gateway dialled."""
    out = tmp_path / "konnectivity.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/konnectivity.py", "--crud", "3", "--gets", "10", "--warmup", "2", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["run"]["command"] == "./dev bench konnectivity --crud 3 --gets 10 --warmup 2"
    lines = {"direct", "direct_endpoint", "cluster_proxy_pooled", "cluster_proxy_tunnel_per_request"}
    for case, n in (("crud", 3), ("get_namespace", 10)):
        assert r[case]["n"] == n and set(r[case]) == {"n"} | lines
        assert all(r[case][line]["ms"]["p50"] > 0 for line in lines)
        assert r[case]["direct"]["ratio"] == 1.0
    t = r["tunnels"]
    assert t["requests_per_line"] == 3 * 3 + 10 * 2  # the timed rounds, then the CPU measurement
    cpu = r["cpu_s_per_1000_gets"]
    assert set(cpu) == lines - {"direct"} and cpu["direct_endpoint"]["fake_proxy_server_and_agent"] >= 0
    assert t["cluster_proxy_tunnel_per_request"] == t["requests_per_line"], t  # one new tunnel for every request
    assert t["cluster_proxy_pooled"] == 0, t  # the requests, one after another, rode the tunnel dialled in the warm-up
    assert t["cluster_proxy_pooled_in_warmup"] == 1, t
    assert t["open_at_the_end"] == 1, t  # that one: every per-request tunnel was closed after its request
    assert "Python fake" in r["proxy_server"] and "NOTE: the proxy-server and agent are the Python fake" in proc.stdout
