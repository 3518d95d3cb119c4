"""Fail fast under the HealthinessCheck feature gate: a cluster known unhealthy is answered 503 at once.

Each cluster is a circuit breaker over the observation that decides its health (the prober's or a
health write, the newer): open while that says unhealthy, with one trial request per cool-down; a
trial the member answers closes it until a newer observation. Watches and exec pass the same gate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.proxy.fail_fast import FailFast
from gateway_apiserver.proxy.health_probe import HEALTH_PROBER
from gateway_apiserver.registry.observed_health import Observation
from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.member_apiserver import FakeMemberAPIServer
from tests.fakes.proxying import closed_port, proxied, status_body, token_secret

pytestmark = pytest.mark.timeout(60)
T0 = datetime(2026, 12, 3, 17, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 3, 17, 0, 30, tzinfo=UTC)
COOL_DOWN = 0.5
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(observations: dict[str, Observation]) -> tuple[FailFast, Clock]:
    clock = Clock()
    return FailFast(observations.get, 10.0, clock=clock), clock


def refusal(name: str, reason: str, how: str, when: str, seconds: int) -> str:
    return (
        f'cluster "{name}" is unhealthy ({reason}; {how} at {when}): the HealthinessCheck feature gate refuses '
        f"requests to it; a trial request is let through in {seconds}s"
    )


# --- the breaker --------------------------------------------------------------------------------


def test_clusters_not_judged_or_healthy_pass() -> None:
    fail_fast, _ = breaker({"ok": Observation(True, "", T0, "probe")})
    assert fail_fast.admit("ok") is None
    assert fail_fast.admit("never-probed") is None


def test_an_unhealthy_cluster_is_refused_then_one_trial_passes_per_cool_down() -> None:
    observations = {"c1": Observation(False, "ConnectionTimeout", T0, "probe")}
    fail_fast, clock = breaker(observations)
    with pytest.raises(StatusError) as refused:
        fail_fast.admit("c1")
    assert (refused.value.code, refused.value.reason, refused.value.headers) == (503, "ServiceUnavailable", {"Retry-After": "10"})
    assert refused.value.message == refusal("c1", "ConnectionTimeout", "last probed", "2026-12-03T17:00:00Z", 10)
    clock.now += 10
    trial = fail_fast.admit("c1")
    assert trial is not None
    with pytest.raises(StatusError):  # one trial per cool-down, even while it runs
        fail_fast.admit("c1")
    fail_fast.settle(trial, answered=False)
    clock.now += 9
    with pytest.raises(StatusError) as again:
        fail_fast.admit("c1")
    assert again.value.headers == {"Retry-After": "1"}
    clock.now += 1
    trial = fail_fast.admit("c1")
    fail_fast.settle(trial, answered=True)
    assert fail_fast.admit("c1") is None  # closed: traffic flows
    assert fail_fast.admit("c1") is None
    # A newer unhealthy observation opens it again.
    observations["c1"] = Observation(False, "ProbeFailed:500", T1, "probe")
    with pytest.raises(StatusError) as reopened:
        fail_fast.admit("c1")
    assert "(ProbeFailed:500; last probed at 2026-12-03T17:00:30Z)" in reopened.value.message


def test_an_unhealthy_write_is_named_as_such() -> None:
    fail_fast, _ = breaker({"c1": Observation(False, "", T0, "write")})
    with pytest.raises(StatusError) as refused:
        fail_fast.admit("c1")
    assert refused.value.message == refusal(
        "c1", "no reason given", "reported through its health subresource", "2026-12-03T17:00:00Z", 10
    )


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
async def member() -> AsyncIterator[FakeMemberAPIServer]:
    async with FakeMemberAPIServer() as server:
        yield server


async def fail_fast_gateway(tmp_path: Path, *secrets: dict[str, Any]) -> Any:
    return running_gateway(
        tmp_path,
        ManualSecretSource(list(secrets)),
        feature_gates={
            "HealthinessCheck": True,
            "SecretCache": True,
            "ClientIdentityPenetration": False,
            "OCMClusterCache": True,
        },
        fail_fast_cool_down=COOL_DOWN,
        health_probe_timeout=0.3,
        proxy_request_timeout=5.0,
    )


async def probe(gw: RunningGateway) -> None:
    assert gw.server.app is not None
    await gw.server.app[HEALTH_PROBER].probe_all()


async def get(gw: RunningGateway, path: str, **headers: str) -> tuple[int, Any, float]:
    """GET through the gateway: status, JSON body, seconds taken."""
    started = time.monotonic()
    async with gw.session() as client, client.get(path, headers=headers) as resp:
        body = await resp.json(content_type=None)
        return resp.status, body, time.monotonic() - started


def expected_refusal(gw: RunningGateway, name: str, reason: str) -> dict[str, Any]:
    observation = gw.registry.health_observation(name)
    assert observation is not None
    when = observation.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return status_body(503, refusal(name, reason, "last probed", when, 1))


async def test_requests_to_a_stuck_member_fail_at_once_and_a_trial_after_the_cool_down_reopens(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    async with await fail_fast_gateway(tmp_path, token_secret("m1", member)) as gw:
        await probe(gw)
        assert (await get(gw, proxied("m1", CONFIGMAPS)))[0] == 200

        member.hang()
        await probe(gw)
        refused = expected_refusal(gw, "m1", "ConnectionTimeout")
        sent_before = len(member.requests)
        for path in (
            proxied("m1", CONFIGMAPS),
            proxied("m1", CONFIGMAPS + "?watch=true"),
        ):
            code, body, took = await get(gw, path)
            assert (code, body) == (503, refused)
            assert took < 2.0  # at once: far below the 5 s request timeout a hung member would cost (margin for a loaded machine)
        # exec: the upgrade is refused before any tunnel is dialled.
        exec_path = proxied("m1", "/api/v1/namespaces/default/pods/p1/exec?command=ls&stdout=true")
        code, body, _ = await get(gw, exec_path, Connection="Upgrade", Upgrade="websocket", **{"Sec-WebSocket-Version": "13"})
        assert (code, body) == (503, refused)
        assert len(member.requests) == sent_before  # none of them reached the member

        member.recover()
        code, _, _ = await get(gw, proxied("m1", CONFIGMAPS))  # recovered, but not probed: still refused
        assert code == 503
        await asyncio.sleep(COOL_DOWN)
        code, _, _ = await get(gw, proxied("m1", CONFIGMAPS))  # the trial: answered, so the breaker closes
        assert code == 200
        assert [(await get(gw, proxied("m1", CONFIGMAPS)))[0] for _ in range(3)] == [200, 200, 200]


async def test_a_failed_trial_waits_another_cool_down(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    port = closed_port()
    async with await fail_fast_gateway(tmp_path, token_secret("down", member, endpoint=f"https://127.0.0.1:{port}")) as gw:
        await probe(gw)
        reason = f'Unknown:cluster "down" unreachable: connecting to 127.0.0.1:{port} failed: connection refused'
        assert (await get(gw, proxied("down", CONFIGMAPS)))[:2] == (503, expected_refusal(gw, "down", reason))
        await asyncio.sleep(COOL_DOWN)
        code, body, _ = await get(gw, proxied("down", CONFIGMAPS))  # the trial reaches for the member, and fails
        assert (code, body["message"]) == (503, reason.removeprefix("Unknown:"))
        assert (await get(gw, proxied("down", CONFIGMAPS)))[:2] == (503, expected_refusal(gw, "down", reason))


async def test_without_the_gate_requests_still_go_to_an_unhealthy_member(member: FakeMemberAPIServer, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, ManualSecretSource([token_secret("m1", member)])) as gw:
        member.readyz_status = 500
        await probe(gw)
        assert gw.registry.get("m1").healthy_reason == "ProbeFailed:500"
        assert (await get(gw, proxied("m1", CONFIGMAPS)))[0] == 200


async def test_a_watch_as_the_trial_closes_the_breaker_as_soon_as_the_member_answers(
    member: FakeMemberAPIServer, tmp_path: Path
) -> None:
    async with await fail_fast_gateway(tmp_path, token_secret("m1", member)) as gw:
        member.readyz_status = 500
        await probe(gw)
        assert (await get(gw, proxied("m1", CONFIGMAPS)))[0] == 503
        await asyncio.sleep(COOL_DOWN)
        async with gw.session() as client, client.get(proxied("m1", CONFIGMAPS + "?watch=true")) as watch:
            assert watch.status == 200  # the trial; its stream stays open
            assert [(await get(gw, proxied("m1", CONFIGMAPS)))[0] for _ in range(2)] == [200, 200]
