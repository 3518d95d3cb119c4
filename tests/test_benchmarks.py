"""The benchmark suite runs end to end (a smoke run with small counts): what the README quotes
comes from code that works. No timing is asserted here; figures live in `./dev bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_quick_suite_measures_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/suite.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
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
    floor = r["floor"]
    assert floor["throughput_minimal"]["gateway_cpu_s_per_1000"] > 0 and floor["get_namespace"]["minimal"]["n"] == 200
    assert r["workers"]["workers_2"]["workers"] == 2 and r["workers"]["workers_2"]["gateway_rps"] > 0
    assert "gateway vs direct" in proc.stdout


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
