"""500 concurrent clients for 30 s against the real gateway process, then a check that nothing leaked.

Set-up, all on loopback: the gateway is the real CLI (`--standalone --secrets-dir`) in its own
process, serving 20 clusters spread over two fake members (in this process). A subprocess is
the honest choice: its fds and RSS are the gateway's alone, not mixed with 500 clients and two
members. Its asyncio task count comes from a probe thread started next to the CLI's `main()`
(it answers "count" on stdin with the loop's task count after a `gc.collect()`).

The mix, each client on its own TLS connection:
  * 300 request clients looping over list (20 items), get, get of a missing cluster (404
    Status), and proxy GET to a member;
  * 40 watchers holding one watch for the whole run, while one cluster's Secret file is
    rewritten (2 s after the gateway served the previous version): each must see every
    rewrite, once, in order, as well-formed events;
  * 160 watch cyclers, opening a watch, reading its 20 initial events, then either leaving
    (the connection is cut) or letting `timeoutSeconds=1` end it.
Every answer must have its exact expected status and shape: zero errors. A 5 s warm-up round
of the same mix comes first, so the baseline is the steady state (the proxy's keep-alive pool
to the members filled, CPython's arenas allocated) rather than a cold process. After the
measured round the gateway's fds, client connections and tasks must be back to that baseline,
and its RSS within a stated margin. Figures are printed (`-s`) and written to
benchmarks/results/load.json, or to the file `LOAD_RESULTS` names (the README quotes
benchmarks/recorded/load.json; `LOAD_NOTE` is recorded with it). `LOAD_SECONDS` shortens the
measured round for local tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import ssl
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from benchmarks.recording import provenance
from tests.fakes.member_apiserver import FakeMemberAPIServer

pytestmark = [pytest.mark.load, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / os.environ.get("LOAD_RESULTS", "benchmarks/results/load.json")
CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
CLUSTERS = [f"c{i:02d}" for i in range(20)]
FLAPPER = CLUSTERS[0]  # its Secret file is rewritten during the run, to feed the watches
DURATION = float(os.environ.get("LOAD_SECONDS", "30"))
WARM_UP = 5.0
REQUEST_CLIENTS, HELD_WATCHERS, WATCH_CYCLERS = 300, 40, 160
REWRITE_EVERY = 2.0
GRACE = 10.0  # how long held watches may read on after the end, for events still in flight
# Tolerances, from measured runs: what may remain once every client has left. Measured on
# 2 shared cores: other fds and tasks back exactly at baseline; RSS +6 to +13 MiB, while the
# proxy's idle pool to the members grew by 26 to 40 connections.
FD_SLACK = 3  # fds besides connections (a late-closing socket, a log file)
TASK_SLACK = 2
RSS_SLACK_MB = 30.0

# The real CLI, plus a thread that reports the event loop's task count on request.
PROBED_CLI = """
import asyncio, concurrent.futures, gc, sys, threading
import gateway_apiserver.cli as cli

loops = []
real_factory = cli.event_loop_factory

def recording_factory(choice):
    factory, name = real_factory(choice)
    def make():
        loops.append(factory())
        return loops[-1]
    return make, name

def answer():
    for _ in sys.stdin:
        loop, done = loops[-1], concurrent.futures.Future()
        def count():
            gc.collect()
            done.set_result(len(asyncio.all_tasks(loop)))
        loop.call_soon_threadsafe(count)
        print(done.result(10), flush=True)

cli.event_loop_factory = recording_factory
threading.Thread(target=answer, daemon=True).start()
sys.exit(cli.main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def secret_manifest(name: str, member: FakeMemberAPIServer, generation: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "vela-system",
            "labels": {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken", "generation": str(generation)},
        },
        "stringData": {"endpoint": member.url, "token": member.token, "ca.crt": member.ca_pem.decode()},
    }


def write_secret(directory: Path, manifest: dict[str, Any]) -> None:
    """Replace the file in one rename, as an editor or a ConfigMap mount does."""
    path = directory / f"{manifest['metadata']['name']}.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(manifest))
    os.replace(tmp, path)


# --- the gateway process and what it holds ------------------------------------------------------


@dataclass
class Footprint:
    """What the gateway process holds at one moment."""

    fds: int
    client_connections: int  # TCP sockets accepted on the gateway's port
    member_connections: int  # TCP sockets to the members (the proxy's keep-alive pool)
    tasks: int
    rss_mb: float

    @property
    def other_fds(self) -> int:
        """Everything but connections: files, pipes, the listener, the event loop's own fds."""
        return self.fds - self.client_connections - self.member_connections


def _tcp_ports_by_inode() -> dict[str, tuple[int, int]]:
    """Socket inode -> (local port, remote port), for every TCP socket on this machine."""
    ports: dict[str, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                ports[fields[9]] = (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        rss_kb = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
    return round(rss_kb / 1024, 1)


@dataclass
class GatewayProcess:
    proc: asyncio.subprocess.Process
    port: int
    ca_file: Path
    member_ports: set[int]
    log: str = ""  # its stderr, once it has exited

    async def tasks(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"count\n")
        await self.proc.stdin.drain()
        return int(await asyncio.wait_for(self.proc.stdout.readline(), 10))

    async def footprint(self) -> Footprint:
        tasks = await self.tasks()
        fd_dir = f"/proc/{self.proc.pid}/fd"
        targets = []
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                targets.append(os.readlink(f"{fd_dir}/{fd}"))
        ports = _tcp_ports_by_inode()
        sockets = [ports[t[8:-1]] for t in targets if t.startswith("socket:[") and t[8:-1] in ports]
        clients = sum(1 for local, remote in sockets if local == self.port and remote != 0)
        members = sum(1 for _, remote in sockets if remote in self.member_ports)
        return Footprint(len(targets), clients, members, tasks, _rss_mb(self.proc.pid))


@contextlib.asynccontextmanager
async def gateway_process(tmp_path: Path, members: list[FakeMemberAPIServer]) -> AsyncIterator[GatewayProcess]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for i, name in enumerate(CLUSTERS):
        write_secret(secrets, secret_manifest(name, members[i % len(members)]))
    port = free_port()
    # No health probing: the held watches must see only the changes this test makes (probing has its own
    # tests), and the member connections counted must be the clients' alone.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBED_CLI, "--standalone", "--secrets-dir", str(secrets), "--secure-port", str(port),
        "--bind-address", "127.0.0.1", "--cert-dir", str(tmp_path / "certs"), "--log-level", "warning",
        "--health-probe-interval", "0s",
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    gateway = GatewayProcess(proc, port, tmp_path / "certs" / "apiserver.crt", {m.port for m in members})
    try:
        for _ in range(400):
            if gateway.ca_file.exists():
                with contextlib.suppress(OSError, aiohttp.ClientError):
                    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(gateway.ca_file)))
                    async with aiohttp.ClientSession(connector=connector) as s, s.get(f"https://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
            assert proc.returncode is None, "the gateway exited at start-up"
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the gateway did not become ready")
        yield gateway
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        gateway.log = stderr.decode(errors="replace")


# --- the clients -------------------------------------------------------------------------------


@dataclass
class Tally:
    """Everything the clients saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    watch_events: int = 0
    watches_opened: int = 0
    held_sequences: list[list[int]] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors.append(what[:300])


class Client:
    """One caller on its own TLS connection."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)
        self.session = aiohttp.ClientSession(
            base_url=url, connector=aiohttp.TCPConnector(ssl=ssl_context, limit=1), timeout=timeout
        )

    async def close(self) -> None:
        await self.session.close()


def check_event(line: bytes, floor: int) -> tuple[str, dict[str, Any], int]:
    """A watch line as kube sends it; returns (type, object, resourceVersion). AssertionError if malformed.

    The initial ADDED events carry each object's own version, in name order (`floor` 0); every
    later event must not go back in time (`floor`: the highest version seen so far).
    """
    event = json.loads(line)
    assert set(event) == {"type", "object"}, event
    kind, obj = event["type"], event["object"]
    assert kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"), event
    assert (obj["kind"], obj["apiVersion"]) == ("ClusterGateway", "cluster.core.oam.dev/v1alpha1"), event
    rv = int(obj["metadata"]["resourceVersion"])
    assert rv >= floor, (rv, floor)
    if kind != "BOOKMARK":
        assert obj["metadata"]["name"] in CLUSTERS, event
    return kind, obj, rv


async def timed(tally: Tally, kind: str, call: Awaitable[None]) -> None:
    start = time.perf_counter()
    try:
        await call
    except (AssertionError, aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
        tally.error(f"{kind}: {type(exc).__name__}: {exc}")
        return
    tally.latencies[kind].append((time.perf_counter() - start) * 1000)


async def request_client(client: Client, tally: Tally, stop: float, rng: random.Random) -> None:
    async def get_json(path: str, expected_status: int) -> Any:
        async with client.session.get(path) as resp:
            body = await resp.json()
            assert resp.status == expected_status, (path, resp.status, body)
            return body

    async def list_all() -> None:
        body = await get_json(CG, 200)
        assert (body["kind"], sorted(i["metadata"]["name"] for i in body["items"])) == ("ClusterGatewayList", CLUSTERS)

    async def get_one(name: str) -> None:
        body = await get_json(f"{CG}/{name}", 200)
        assert (body["kind"], body["metadata"]["name"]) == ("ClusterGateway", name)

    async def get_missing() -> None:
        body = await get_json(f"{CG}/no-such-cluster", 404)
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404), body

    async def proxy(name: str) -> None:
        body = await get_json(f"{CG}/{name}/proxy/api/v1/namespaces/default/configmaps", 200)
        assert body["kind"] == "ConfigMapList", body

    while time.monotonic() < stop:
        pick = rng.random()
        if pick < 0.25:
            await timed(tally, "list", list_all())
        elif pick < 0.5:
            await timed(tally, "get", get_one(rng.choice(CLUSTERS)))
        elif pick < 0.55:
            await timed(tally, "get_missing", get_missing())
        else:
            await timed(tally, "proxy_get", proxy(rng.choice(CLUSTERS)))


async def held_watcher(client: Client, tally: Tally, stop: float, flapper: Flapper) -> None:
    """One watch for the whole run. Records the flapper's `generation` label: from its initial
    ADDED event, then from each MODIFIED event. After `stop` it reads on (at most GRACE seconds)
    until it has seen the last generation written, so late delivery under load is no loss."""
    generations: list[int] = []
    last_rv, initial = 0, 0
    tally.watches_opened += 1
    try:
        async with client.session.get(CG, params={"watch": "true", "allowWatchBookmarks": "true"}) as resp:
            assert resp.status == 200, resp.status
            while time.monotonic() < stop or (generations[-1:] != [flapper.generation] and time.monotonic() < stop + GRACE):
                try:
                    line = await asyncio.wait_for(resp.content.readline(), max(stop - time.monotonic(), 0.2))
                except TimeoutError:
                    continue
                assert line, "the server ended a watch that had no timeout"
                kind, obj, rv = check_event(line, last_rv if initial == len(CLUSTERS) else 0)
                last_rv = max(last_rv, rv)
                tally.watch_events += 1
                name = obj["metadata"].get("name")
                if kind == "ADDED":
                    initial += 1
                    assert initial <= len(CLUSTERS), "no cluster was added, yet an ADDED event came after the initial ones"
                elif kind != "BOOKMARK":
                    assert initial == len(CLUSTERS), f"a {kind} event came after only {initial} initial ADDED events"
                    assert (kind, name) == ("MODIFIED", FLAPPER), f"only {FLAPPER} changes, yet: {kind} {name}"
                if name == FLAPPER:
                    generations.append(int(obj["metadata"]["labels"]["generation"]))
    except (AssertionError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
        tally.error(f"held watch: {type(exc).__name__}: {exc}")
    tally.held_sequences.append(generations)


async def watch_cycler(client: Client, tally: Tally, stop: float, rng: random.Random) -> None:
    """Open a watch, read its initial events, then leave (cut) or let timeoutSeconds=1 end it; again."""

    async def cycle(leave: bool) -> None:
        params = {"watch": "true"} if leave else {"watch": "true", "timeoutSeconds": "1"}
        tally.watches_opened += 1
        async with client.session.get(CG, params=params) as resp:
            assert resp.status == 200, resp.status
            added, last_rv = 0, 0
            while added < len(CLUSTERS):
                line = await resp.content.readline()
                assert line, f"the watch ended after {added} initial events"
                kind, _, rv = check_event(line, 0)
                last_rv = max(last_rv, rv)
                tally.watch_events += 1
                added += kind == "ADDED"
            if leave:
                resp.close()  # the client walks away mid-stream
                return
            async for line in resp.content:  # the rest, until the server's timeout ends the stream
                kind, _, last_rv = check_event(line, last_rv)
                tally.watch_events += 1
                assert kind in ("MODIFIED", "BOOKMARK"), kind

    while time.monotonic() < stop:
        leave = rng.random() < 0.5
        await timed(tally, "watch_leave" if leave else "watch_timeout", cycle(leave))


@dataclass
class Flapper:
    """The cluster whose Secret file is rewritten during the run, with a `generation` label counting up."""

    directory: Path
    member: FakeMemberAPIServer
    generation: int = 0  # the last generation written

    async def rewrite(self, client: Client, stop: float) -> int:
        """Every REWRITE_EVERY seconds, the next generation; how many were written.

        Each rewrite waits until the gateway serves the previous one: the gateway polls files,
        so two rewrites within one poll would merge into one change (no gateway fault).
        """
        written = 0
        while time.monotonic() + REWRITE_EVERY < stop:
            await asyncio.sleep(REWRITE_EVERY)
            self.generation += 1
            written += 1
            write_secret(self.directory, secret_manifest(FLAPPER, self.member, self.generation))
            while time.monotonic() < stop + GRACE:
                async with client.session.get(f"{CG}/{FLAPPER}") as resp:
                    if (await resp.json())["metadata"]["labels"]["generation"] == str(self.generation):
                        break
                await asyncio.sleep(0.1)
        return written


# --- figures -------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1) if ordered else 0.0


def figures(tally: Tally, elapsed: float, footprints: dict[str, Footprint]) -> dict[str, Any]:
    kinds = {
        kind: {
            "requests": len(values),
            "per_second": round(len(values) / elapsed, 1),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
        }
        for kind, values in sorted(tally.latencies.items())
    }
    return {
        "clients": {"requests": REQUEST_CLIENTS, "held_watches": HELD_WATCHERS, "watch_cyclers": WATCH_CYCLERS},
        "clusters": len(CLUSTERS),
        "seconds": round(elapsed, 1),
        "kinds": kinds,
        "total_per_second": round(sum(len(v) for v in tally.latencies.values()) / elapsed, 1),
        "watches_opened": tally.watches_opened,
        "watch_events": tally.watch_events,
        "errors": len(tally.errors),
        "gateway": {moment: vars(fp) | {"other_fds": fp.other_fds} for moment, fp in footprints.items()},
        "cpu_count": os.cpu_count(),
    }


def show(result: dict[str, Any]) -> None:
    print(f"\nload: {sum(result['clients'].values())} clients, {result['clusters']} clusters, {result['seconds']} s, "
          f"{result['total_per_second']} requests/s, {result['errors']} errors")  # fmt: skip
    for kind, k in result["kinds"].items():
        print(f"  {kind:14} {k['requests']:7} requests {k['per_second']:8}/s  p50 {k['p50_ms']:8} ms  p99 {k['p99_ms']:8} ms")
    print(f"  watches opened {result['watches_opened']}, events received {result['watch_events']}")
    if "gateway_log" in result:
        opened = result["member_connections_opened"]
        print(f"  gateway log lines: {result['gateway_log']}; connections opened to members: {opened}")
    for moment, g in result["gateway"].items():
        print(
            f"  gateway {moment:7} fds {g['fds']:4} (clients {g['client_connections']:3}, members {g['member_connections']:3}, "
            f"other {g['other_fds']:3})  tasks {g['tasks']:4}  RSS {g['rss_mb']:6} MiB"
        )


# --- the run --------------------------------------------------------------------------------------


async def settle(gateway: GatewayProcess, done: Callable[[Footprint], bool], timeout: float = 10.0) -> Footprint:
    """The footprint once `done` holds for it (or after `timeout`, for the assertions to report)."""
    deadline = time.monotonic() + timeout
    while True:
        fp = await gateway.footprint()
        if done(fp) or time.monotonic() > deadline:
            return fp
        await asyncio.sleep(0.25)


@dataclass
class Round:
    """One round of the full mix of clients."""

    tally: Tally
    elapsed: float
    rewrites: int  # how often the flapper's Secret was rewritten
    last_generation: int  # the flapper's generation at the end
    during: Footprint  # the gateway half-way through


async def load_round(gateway: GatewayProcess, flapper: Flapper, seconds: float, seed: int) -> Round:
    """Every client at once for `seconds`; each closes its connection at the end."""
    url = f"https://127.0.0.1:{gateway.port}"
    ctx = ssl.create_default_context(cafile=str(gateway.ca_file))
    tally = Tally()
    clients = [Client(url, ctx) for _ in range(REQUEST_CLIENTS + HELD_WATCHERS + WATCH_CYCLERS + 1)]
    requesters, rest = clients[:REQUEST_CLIENTS], clients[REQUEST_CLIENTS:]
    holders, cyclers, writer = rest[:HELD_WATCHERS], rest[HELD_WATCHERS:-1], rest[-1]
    start = time.monotonic()
    stop = start + seconds
    rewriting = asyncio.create_task(flapper.rewrite(writer, stop))
    load = asyncio.gather(
        *(request_client(c, tally, stop, random.Random(seed + i)) for i, c in enumerate(requesters)),
        *(held_watcher(c, tally, stop, flapper) for c in holders),
        *(watch_cycler(c, tally, stop, random.Random(seed - i)) for i, c in enumerate(cyclers)),
    )
    await asyncio.sleep(seconds / 2)
    during = await gateway.footprint()
    rewrites = await rewriting
    await load
    elapsed = time.monotonic() - start
    await asyncio.gather(*(c.close() for c in clients))
    return Round(tally, elapsed, rewrites, flapper.generation, during)


@dataclass
class LoadRun:
    """The measured round and the gateway's footprint around it."""

    round: Round
    before: Footprint
    after: Footprint
    member_connections_opened: int  # TCP connections the members accepted during the measured round
    gateway_log: str
    result: dict[str, Any]


def at_baseline(baseline: Footprint) -> Callable[[Footprint], bool]:
    return lambda fp: fp.client_connections == 0 and fp.other_fds <= baseline.other_fds and fp.tasks <= baseline.tasks


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def load_run(tmp_path_factory: pytest.TempPathFactory) -> LoadRun:
    """A warm-up round (so the proxy's connection pool and CPython's arenas reach their working size),
    the baseline, then the measured round of DURATION seconds, then the footprint once clients left."""
    tmp_path = tmp_path_factory.mktemp("load")
    settings = " ".join(f"{k}={os.environ[k]}" for k in ("LOAD_SECONDS", "LOAD_RESULTS") if k in os.environ)
    run = provenance(f"{settings} .venv/bin/pytest -s tests/reliability/test_load.py".strip(), os.environ.get("LOAD_NOTE"))
    async with FakeMemberAPIServer() as m1, FakeMemberAPIServer() as m2, gateway_process(tmp_path, [m1, m2]) as gateway:
        flapper = Flapper(tmp_path / "secrets", m1)
        warm_up = await load_round(gateway, flapper, WARM_UP, seed=1)
        assert warm_up.tally.errors == [], warm_up.tally.errors[:10]
        before = await settle(gateway, lambda fp: fp.client_connections == 0)
        accepted = len(m1.connections) + len(m2.connections)
        measured = await load_round(gateway, flapper, DURATION, seed=1000)
        opened = len(m1.connections) + len(m2.connections) - accepted
        after = await settle(gateway, at_baseline(before))
    result = figures(measured.tally, measured.elapsed, {"before": before, "during": measured.during, "after": after})
    result["gateway_log"] = {level: gateway.log.count(f" {level} ") for level in ("WARNING", "ERROR")}
    result["member_connections_opened"] = opened
    result["run"] = run
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    show(result)
    return LoadRun(measured, before, after, opened, gateway.log, result)


# --- what must hold --------------------------------------------------------------------------------


def test_every_answer_is_exactly_what_was_expected(load_run: LoadRun) -> None:
    tally = load_run.round.tally
    assert tally.errors == [], tally.errors[:10]
    assert set(tally.latencies) == {"list", "get", "get_missing", "proxy_get", "watch_leave", "watch_timeout"}


def test_every_held_watch_sees_every_change_once_and_in_order(load_run: LoadRun) -> None:
    measured = load_run.round
    assert measured.rewrites >= DURATION / 10, measured.rewrites  # each waits until the gateway serves the last
    assert len(measured.tally.held_sequences) == HELD_WATCHERS
    for generations in measured.tally.held_sequences:
        # The generation its watch started with, then every later one exactly once, up to the last.
        assert generations == list(range(generations[0], measured.last_generation + 1)), generations
        assert len(generations) > measured.rewrites / 2, generations  # the watch was open for most of the run


def test_the_gateway_holds_every_client_at_once(load_run: LoadRun) -> None:
    during = load_run.round.during
    assert during.client_connections >= REQUEST_CLIENTS + HELD_WATCHERS, during
    assert during.tasks >= REQUEST_CLIENTS + HELD_WATCHERS, during  # one handler task per connection at least


def test_connections_tasks_and_memory_return_to_baseline(load_run: LoadRun) -> None:
    before, after = load_run.before, load_run.after
    assert after.client_connections == 0, after
    assert after.other_fds <= before.other_fds + FD_SLACK, (before, after)
    assert after.tasks <= before.tasks + TASK_SLACK, (before, after)
    assert after.rss_mb <= before.rss_mb + RSS_SLACK_MB, (before, after)


def test_connections_to_members_are_pooled_and_reused(load_run: LoadRun) -> None:
    """Idle connections stay in each cluster's keep-alive pool (closed after 90 s idle): the warm-up filled
    the pools, so the measured round reuses them and opens few new ones."""
    proxied = len(load_run.round.tally.latencies["proxy_get"])
    assert load_run.member_connections_opened <= proxied / 20, (load_run.member_connections_opened, proxied)
    assert load_run.after.member_connections <= load_run.before.member_connections * 1.5, (load_run.before, load_run.after)


def test_clients_leaving_in_the_middle_of_a_watch_are_no_internal_errors(load_run: LoadRun) -> None:
    assert "Traceback" not in load_run.gateway_log, load_run.gateway_log[-3000:]
    assert "internal error" not in load_run.gateway_log
