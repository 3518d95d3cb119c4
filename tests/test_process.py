"""The process model: the event loop choice, and `--workers N` processes sharing one port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway_apiserver.config import Config, parse_config
from gateway_apiserver.process import event_loop_factory

REPO = Path(__file__).resolve().parent.parent
LIST = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


def test_auto_takes_uvloop_when_installed_and_asyncio_on_request() -> None:
    import uvloop

    factory, name = event_loop_factory("auto")
    assert (factory, name) == (uvloop.new_event_loop, "uvloop")
    assert event_loop_factory("asyncio") == (asyncio.new_event_loop, "asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert event_loop_factory("auto")[1] == "asyncio"
    with pytest.raises(RuntimeError, match="uvloop package is not installed"):
        event_loop_factory("uvloop")


def test_workers_flag_is_bounded() -> None:
    assert parse_config(["--workers", "2"]).workers == 2
    for bad in ("0", "65"):
        with pytest.raises(Exception, match=r"--workers .* must be between 1 and 64"):
            parse_config(["--workers", bad])


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway_apiserver", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


def workers_of(pid: int) -> list[int]:
    """The worker processes of a `--workers` parent (not multiprocessing's resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1]) != pid:
                    continue
                if b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except (OSError, IndexError):
                continue
    return found


async def test_two_workers_serve_one_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    proc = await start_cli(
        "--standalone", "--secrets-dir", str(REPO / "examples/clusters"), "--secure-port", str(port),
        "--cert-dir", str(tmp_path / "certs"), "--workers", "2",
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}{LIST}"
    try:
        ctx: ssl.SSLContext | None = None
        for _ in range(200):
            if (tmp_path / "certs" / "apiserver.crt").exists() and len(workers_of(proc.pid)) >= 2:
                ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "apiserver.crt"))
                break
            await asyncio.sleep(0.05)
        assert ctx is not None, "no certificate or no workers"
        workers = workers_of(proc.pid)
        bodies: list[list[str]] = []
        deadline = time.monotonic() + 30
        # A new connection each time: SO_REUSEPORT spreads connections (by their 4-tuple) over the workers.
        while len(bodies) < 40 and time.monotonic() < deadline:
            try:
                connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
                async with aiohttp.ClientSession(connector=connector) as s, s.get(url) as r:
                    if r.status == 200:
                        bodies.append(sorted(item["metadata"]["name"] for item in (await r.json())["items"]))
            except aiohttp.ClientError:
                pass  # the second worker may still be starting
            await asyncio.sleep(0.02)
        assert len(bodies) == 40
        assert all(b == bodies[0] for b in bodies) and "example-token" in bodies[0]  # each worker has the same registry
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert not any(alive(pid) for pid in workers)
    serving_pids = set()
    for line in err.decode().splitlines():
        # "<time> INFO <pid> gateway_apiserver.access: {json}"
        head, _, payload = line.partition(" gateway_apiserver.access: ")
        if payload and json.loads(payload)["path"].startswith(LIST):
            serving_pids.add(int(head.split()[-1]))
    assert serving_pids == set(workers), (serving_pids, workers)


def failing_worker(config: Config) -> None:
    """A stand-in worker that fails while starting (the parent checks the port and certificate first,
    so a worker fails only on what it alone meets: the hosting cluster, its event loop)."""
    (config.cert_dir / str(os.getpid())).touch()
    sys.exit(2)


async def test_a_worker_failing_at_startup_stops_them_all(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom gateway_apiserver.config import Config\n"
        "from gateway_apiserver.process import run_workers\nfrom tests.test_process import failing_worker\n"
        f"sys.exit(run_workers(Config(workers=2, cert_dir=Path({str(tmp_path)!r})), failing_worker))\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=REPO, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "exited with code 2 while starting; stopping all workers" in err.decode()
    assert not any(alive(int(name)) for name in os.listdir(tmp_path))


def sleepy_worker(config: Config) -> None:
    """A stand-in worker for the supervisor test: records its pid in config.cert_dir, then waits."""
    (config.cert_dir / str(os.getpid())).touch()
    time.sleep(120)


async def test_a_worker_that_dies_after_starting_is_replaced(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom gateway_apiserver.config import Config\n"
        "from gateway_apiserver.process import run_workers\nfrom tests.test_process import sleepy_worker\n"
        f"sys.exit(run_workers(Config(workers=2, cert_dir=Path({str(tmp_path)!r})), sleepy_worker, startup_grace=0.5))\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=REPO, stderr=asyncio.subprocess.PIPE)

    async def pids(n: int) -> list[int]:
        for _ in range(400):
            found = [int(name) for name in os.listdir(tmp_path)]
            if len(found) >= n:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {n} workers started")

    try:
        first = await pids(2)
        await asyncio.sleep(0.6)  # past the startup grace
        os.kill(first[0], signal.SIGKILL)
        replacement = set(await pids(3)) - set(first)
        assert len(replacement) == 1 and alive(replacement.pop())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "exited with code -9; starting a new one" in err.decode()
    assert not any(alive(int(name)) for name in os.listdir(tmp_path))


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on 127.0.0.1:`port` (/proc/net/tcp, state 0A)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A" and fields[9] in inodes:
            return True
    return False


def upstream_connections(text: str) -> dict[str, float]:
    """The member connections of cluster m1 in a scrape, by state."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_apiserver_upstream_connections" and s.labels["cluster"] == "m1"
    }


async def test_two_workers_answer_metrics_for_both(tmp_path: Path) -> None:
    """With --workers, each worker writes its values to a directory the parent made (prometheus_client's
    multiprocess mode): a scrape reaching either worker counts the requests both served, and the
    connections both hold to the member."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.fakes.member_apiserver import FakeMemberAPIServer
    from tests.fakes.proxying import proxied, token_secret

    port = free_port()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    async with FakeMemberAPIServer() as member:
        secret = {"apiVersion": "v1", "kind": "Secret", **token_secret("m1", member)}
        (secrets / "m1.yaml").write_text(json.dumps(secret))  # JSON is YAML
        proc = await start_cli(
            "--standalone", "--secrets-dir", str(secrets), "--secure-port", str(port),
            "--cert-dir", str(tmp_path / "certs"), "--workers", "2",
        )  # fmt: skip
        try:
            ctx: ssl.SSLContext | None = None
            for _ in range(200):
                if (tmp_path / "certs" / "apiserver.crt").exists() and len(workers_of(proc.pid)) >= 2:
                    ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "apiserver.crt"))
                    break
                await asyncio.sleep(0.05)
            assert ctx is not None, "no certificate or no workers"
            workers = workers_of(proc.pid)
            for _ in range(300):  # both must be listening, or the first one alone would serve everything
                if all(listening(pid, port) for pid in workers):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the two workers did not both listen within 15s")

            async def get(path: str) -> tuple[int, str]:
                # A new connection each time: SO_REUSEPORT spreads connections over the workers.
                connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
                async with aiohttp.ClientSession(connector=connector) as s, s.get(f"https://127.0.0.1:{port}{path}") as r:
                    return r.status, await r.text()

            statuses: list[int] = []
            deadline = time.monotonic() + 30
            while len(statuses) < 30 and time.monotonic() < deadline:
                try:
                    status, _ = await get(proxied("m1", "/api/v1/namespaces/default/configmaps"))
                    statuses.append(status)
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)  # the second worker may still be starting
            connections: list[dict[str, float]] = []
            deadline = time.monotonic() + 20  # each worker shares its connection counts every 5 s
            while time.monotonic() < deadline:
                scrapes = [await get("/metrics") for _ in range(8)]
                connections = [upstream_connections(text) for _, text in scrapes]
                if connections == [{"idle": 2, "active": 0}] * 8:
                    break
                await asyncio.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert statuses == [200] * 30
    counted = [
        sorted(
            (s.labels["cluster"], s.labels["code"], s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "ocm_proxy_proxied_requests_by_cluster_total"
        )
        for _, text in scrapes
    ]
    assert [status for status, _ in scrapes] == [200] * 8
    assert counted == [[("m1", "200", 30.0)]] * 8
    # Sequential GETs leave each worker one idle keep-alive connection to the member: two in all, whichever answers.
    assert connections == [{"idle": 2, "active": 0}] * 8
    serving_pids = set()
    for line in err.decode().splitlines():
        head, _, payload = line.partition(" gateway_apiserver.access: ")
        if payload and "/proxy/" in json.loads(payload)["path"]:
            serving_pids.add(int(head.split()[-1]))
    assert serving_pids == set(workers), (serving_pids, workers)  # both served: the counts above are sums
    assert proc.returncode == 0, err.decode()
