"""Every code block in README.md is run here against the fakes, or says, just above it, why it is not.

Convention: the line before each fence is `<!-- run: NAME -->` (NAME is a runner below) or
`<!-- not-run: REASON -->` (REASON from NOT_RUN_REASONS). The blocks not run are listed by
`pytest tests/test_readme_code_blocks.py -rP -k not_run`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import token_secret

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
NOT_RUN_REASONS = {
    "needs a real cluster",
    "needs a real hosting cluster",
    "needs your own kubeconfig of real clusters",
    "starts the gateway and the whole test suite (./dev is checked by tests/test_readme.py)",
    "benchmarks take minutes",
    "an example with placeholders",
    "output",
    "a Prometheus query",
    "a directory listing",
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    marker: str  # "run" or "not-run"; "" when the block has no marker
    detail: str  # the runner's name or the reason


def readme_blocks() -> list[Block]:
    """The fenced blocks of README.md with the marker on the line before each."""
    found = []
    lines = README.splitlines()
    for match in re.finditer(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```$", README, flags=re.S | re.M):
        line = README.count("\n", 0, match.start()) + 1
        marked = re.fullmatch(r"[ \t]*<!-- (run|not-run): (.+?) -->", lines[line - 2]) if line > 1 else None
        found.append(Block(line, match.group(1), match.group(2), *(marked.groups() if marked else ("", ""))))
    return found


def the_block(name: str) -> Block:
    (block,) = [b for b in readme_blocks() if b.marker == "run" and b.detail == name]
    return block


# --- the convention --------------------------------------------------------------------------------------


def test_every_block_is_run_here_or_marked_not_run() -> None:
    blocks = readme_blocks()
    assert len(blocks) > 20
    unmarked = [f"README.md:{b.line} {b.body.splitlines()[0]!r}" for b in blocks if not b.marker]
    assert not unmarked, "code blocks without <!-- run: NAME --> or <!-- not-run: REASON --> above them: " + "; ".join(unmarked)
    run = sorted(b.detail for b in blocks if b.marker == "run")
    assert run == sorted(RUNNERS), "each run marker needs exactly one runner in this file, and each runner a block"


def test_blocks_not_run_here_say_why_in_known_words() -> None:
    not_run = [b for b in readme_blocks() if b.marker == "not-run"]
    for block in not_run:
        print(f"README.md:{block.line} ({block.lang or 'text'}): not run: {block.detail}")
    assert {b.detail for b in not_run} <= NOT_RUN_REASONS, {b.detail for b in not_run} - NOT_RUN_REASONS


# --- the fakes the runnable blocks meet ------------------------------------------------------------------------


@dataclass
class Fleet:
    gateway: RunningGateway
    env: dict[str, str]  # KUBECONFIG is the hub's (the gateway's) with a token user; gateway-apiserver is on the PATH
    cwd: Path


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """A gateway (the hub) with member-1 and member-2 (env=prod), each holding ConfigMap `<member>-cm` in `default`."""
    async with FakeMemberAPIServer() as m1, FakeMemberAPIServer() as m2:
        secrets = []
        for name, member in (("member-1", m1), ("member-2", m2)):
            member.store.create("configmaps", "default", {"metadata": {"name": f"{name}-cm"}, "data": {}})
            secrets.append(token_secret(name, member, labels={"env": "prod"}))
        async with running_gateway(tmp_path, ManualSecretSource(secrets)) as gateway:
            cwd = tmp_path / "work"
            cwd.mkdir()
            env = {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "HOME": str(cwd),
                "KUBECONFIG": str(gateway.kubeconfig),
            }
            yield Fleet(gateway, env, cwd)


async def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def run_block(block: Block, fleet: Fleet) -> str:
    """The block as a shell script (`bash -e -o pipefail`) or a Python program; its standard output."""
    argv = [sys.executable, "-c", block.body] if block.lang == "python" else ["bash", "-e", "-o", "pipefail", "-c", block.body]
    code, out, err = await run(argv, fleet.env, fleet.cwd)
    assert code == 0, f"README.md:{block.line} failed:\n{err}"
    return out


# --- the runners -----------------------------------------------------------------------------------------


async def proxy_raw(fleet: Fleet) -> None:
    out = await run_block(the_block("proxy-raw"), fleet)
    assert '"name":"member-1-cm"' in out.replace(" ", "")


async def member_kubeconfig(fleet: Fleet) -> None:
    out = await run_block(the_block("member-kubeconfig"), fleet)
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "member-1-cm", "NAME", "member-1-cm"]
    assert (fleet.cwd / "members.kubeconfig").read_text().count("/clustergateways/member-2/proxy") == 1


async def python_client(fleet: Fleet) -> None:
    assert await run_block(the_block("python-client"), fleet) == "['member-1-cm']\n"


async def python_fan_out(fleet: Fleet) -> None:
    assert await run_block(the_block("python-fan-out"), fleet) == "member-1 ['member-1-cm']\nmember-2 ['member-2-cm']\n"


async def fan_out_raw(fleet: Fleet) -> None:
    answer = json.loads(await run_block(the_block("fan-out-raw"), fleet))
    by_cluster = {
        i["metadata"]["annotations"]["cluster.core.oam.dev/cluster-name"]: i["metadata"]["name"] for i in answer["items"]
    }
    assert by_cluster == {"member-1": "member-1-cm", "member-2": "member-2-cm"}
    outcomes = [(c["details"]["name"], c["status"], c["message"]) for c in answer["clusters"]]
    assert outcomes == [
        ("member-1", "Success", 'cluster "member-1": 1 item'),
        ("member-2", "Success", 'cluster "member-2": 1 item'),
    ]


RUNNERS: dict[str, Callable[[Fleet], Awaitable[None]]] = {
    "fan-out-raw": fan_out_raw,
    "proxy-raw": proxy_raw,
    "member-kubeconfig": member_kubeconfig,
    "python-client": python_client,
    "python-fan-out": python_fan_out,
    "dev-run-kubectl": lambda fleet: asyncio.sleep(0),  # run by test_dev_run_kubectl_block, against ./dev run's gateway
}


@pytest.mark.parametrize("name", sorted(set(RUNNERS) - {"dev-run-kubectl"}))
async def test_block_runs_against_the_fakes(fleet: Fleet, name: str) -> None:
    await RUNNERS[name](fleet)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_dev_run_kubectl_block(tmp_path: Path) -> None:
    """The gateway as `./dev run` starts it (on a free port, so its kubeconfig is `kubeconfig-<port>`), then each
    line of the block with that kubeconfig; the watch line is stopped once it has shown the clusters."""
    port = _free_port()
    certs = tmp_path / "certs"
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway_apiserver", "--standalone", "--secrets-dir", "examples/clusters",
        "--secure-port", str(port), "--cert-dir", str(certs), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    kubeconfig = certs / f"kubeconfig-{port}"
    try:
        for _ in range(200):
            if (
                kubeconfig.exists()
                and (await run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"], env, tmp_path))[0] == 0
            ):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the gateway ./dev run starts did not become ready")
        outputs = []
        for line in the_block("dev-run-kubectl").body.splitlines():
            argv = line.replace("apiserver.local.config/certificates/kubeconfig", str(kubeconfig)).split()
            if "-w" in argv:
                outputs.append(await _first_lines(argv, env, tmp_path, count=2))
            else:
                code, out, err = await run(argv, env, tmp_path)
                assert code == 0, f"{line}: {err}"
                outputs.append(out)
    finally:
        gateway.send_signal(signal.SIGTERM)
        await asyncio.wait_for(gateway.wait(), 15)
    get_cg, watch, explain, get_vc = outputs
    assert get_cg.split()[:6] == ["NAME", "PROVIDER", "CREDENTIAL-TYPE", "ENDPOINT-TYPE", "HEALTHY", "AGE"]
    assert "example-token" in get_cg
    assert watch.splitlines()[0].split()[-1] == "ENDPOINT"  # -o wide
    assert "KIND:" in explain and "ClusterGateway" in explain
    assert get_vc.split()[0] == "NAME" and "local" in get_vc.split()


async def _first_lines(argv: list[str], env: dict[str, str], cwd: Path, count: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            return "".join([(await proc.stdout.readline()).decode() for _ in range(count)])
    finally:
        proc.kill()
        await proc.wait()
