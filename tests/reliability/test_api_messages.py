"""What a client reads when a clustergateways request is wrong: a Status in the kube-apiserver's words.

Every malformed query parameter is a 400 BadRequest naming the parameter, never Python's own text
(`'list' object has no attribute 'get'`, `codec can't decode`) and never a 500. A resourceVersion or
continue token newer than the cache is "too large" (504 Timeout after a short wait, as the
kube-apiserver's watch cache answers), not "too old"; one that does not fit an int64 is a 400.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.secrets import cluster_secret

BASE = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
SECRETS = [cluster_secret("alpha", 1), cluster_secret("beta", 2), cluster_secret("gamma", 3)]
CURRENT = 10  # the listing's resourceVersion
INVALID_TOKEN = "invalid continue token: continue key is not valid: "
NOT_BASE64 = INVALID_TOKEN + "the token is not base64url-encoded"
NOT_JSON = INVALID_TOKEN + "the token does not hold JSON"
NOT_A_TOKEN = INVALID_TOKEN + 'the token is not an object with the fields "v", "rv" and "start"'
BAD_TOKEN_RV = INVALID_TOKEN + "incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
OVER_INT64 = "out of range: must be at most 9223372036854775807"
TOO_LARGE_CAUSES = {
    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
    "retryAfterSeconds": 1,
}
# What the server's own text would look like if Python leaked through.
PYTHON_LEAKS = ("object has no attribute", "codec can't", "Traceback", "Expecting value", "invalid literal", "Error:")


def token(payload: Any) -> str:
    """A continue token as the kube-apiserver encodes one: unpadded base64url of JSON (or of raw bytes)."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def v1(**fields: Any) -> str:
    return token({"v": "meta.k8s.io/v1", **fields})


INFINITE_RV = token(b'{"v": "meta.k8s.io/v1", "rv": 1e400, "start": "a"}')  # JSON's 1e400 reads as infinity


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, ManualSecretSource(SECRETS, str(CURRENT))) as gw:
        yield gw


async def get(gw: RunningGateway, path: str) -> tuple[int, dict[str, Any]]:
    async with gw.session() as s, s.get(path) as resp:
        return resp.status, await resp.json(content_type=None)


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def bad_request(message: str) -> tuple[int, dict[str, Any]]:
    return 400, status(400, "BadRequest", message)


# (request, expected code and Status body). Quick ones: no request here waits for the cache.
BAD_REQUESTS: dict[str, tuple[str, tuple[int, dict[str, Any]]]] = {
    # continue tokens
    "continue not base64": (f"{BASE}?limit=1&continue=!!!", bad_request(NOT_BASE64)),
    "continue not ASCII": (f"{BASE}?limit=1&continue=%C3%A9t%C3%A9", bad_request(NOT_BASE64)),
    "continue bytes not UTF-8": (f"{BASE}?limit=1&continue={token(bytes([0xC3, 0x28, 0xFF]))}", bad_request(NOT_JSON)),
    "continue not JSON": (f"{BASE}?limit=1&continue={token(b'not json')}", bad_request(NOT_JSON)),
    "continue JSON nested too deep": (f"{BASE}?limit=1&continue={token(b'[' * 3000)}", bad_request(NOT_JSON)),
    "continue a JSON list": (f"{BASE}?limit=1&continue={token([1])}", bad_request(NOT_A_TOKEN)),
    "continue a JSON string": (f"{BASE}?limit=1&continue={token('str')}", bad_request(NOT_A_TOKEN)),
    "continue without start": (f"{BASE}?limit=1&continue={v1(rv=CURRENT)}", bad_request(NOT_A_TOKEN)),
    "continue start not a string": (f"{BASE}?limit=1&continue={v1(rv=CURRENT, start=['a'])}", bad_request(NOT_A_TOKEN)),
    "continue empty start": (
        f"{BASE}?limit=1&continue={v1(rv=CURRENT, start='')}",
        bad_request(INVALID_TOKEN + "encoded start key empty (version meta.k8s.io/v1)"),
    ),
    "continue other version": (
        f"{BASE}?limit=1&continue={token({'v': 'meta.k8s.io/v2', 'rv': 1, 'start': 'a'})}",
        bad_request(INVALID_TOKEN + "server does not recognize this encoded version"),
    ),
    "continue negative rv": (f"{BASE}?limit=1&continue={v1(rv=-3, start='a')}", bad_request(BAD_TOKEN_RV)),
    "continue zero rv": (f"{BASE}?limit=1&continue={v1(rv=0, start='a')}", bad_request(BAD_TOKEN_RV)),
    "continue rv a string": (f"{BASE}?limit=1&continue={v1(rv='10', start='a')}", bad_request(BAD_TOKEN_RV)),
    "continue rv a bool": (f"{BASE}?limit=1&continue={v1(rv=True, start='a')}", bad_request(BAD_TOKEN_RV)),
    "continue rv infinite": (f"{BASE}?limit=1&continue={INFINITE_RV}", bad_request(BAD_TOKEN_RV)),
    "continue rv over int64": (f"{BASE}?limit=1&continue={v1(rv=2**63, start='a')}", bad_request(BAD_TOKEN_RV)),
    "continue on a watch": (
        f"{BASE}?watch=1&continue={v1(rv=CURRENT, start='a')}",
        bad_request("continue: Forbidden: continue is not supported for watch"),
    ),
    "continue with a resourceVersion": (
        f"{BASE}?limit=1&resourceVersion=5&continue={v1(rv=CURRENT, start='a')}",
        bad_request("resourceVersion: Forbidden: specifying resource version is not allowed when using continue"),
    ),
    # resourceVersion
    "list rv over int64": (
        f"{BASE}?resourceVersion=99999999999999999999",
        bad_request(f'resourceVersion: Invalid value: "99999999999999999999": {OVER_INT64}'),
    ),
    "get rv over int64": (
        f"{BASE}/alpha?resourceVersion=99999999999999999999",
        bad_request(f'resourceVersion: Invalid value: "99999999999999999999": {OVER_INT64}'),
    ),
    "watch rv over int64": (
        f"{BASE}?watch=1&resourceVersion=9223372036854775808",
        bad_request(f'resourceVersion: Invalid value: "9223372036854775808": {OVER_INT64}'),
    ),
    "rv of 5000 digits": (
        f"{BASE}?resourceVersion={'1' * 5000}",
        bad_request(f'resourceVersion: Invalid value: "{"1" * 64}...": {OVER_INT64}'),
    ),
    "limit of 5000 digits": (f"{BASE}?limit={'9' * 5000}", bad_request(f'limit: Invalid value: "{"9" * 64}...": {OVER_INT64}')),
    "rv negative": (
        f"{BASE}?resourceVersion=-1",
        bad_request('resourceVersion: Invalid value: "-1": must be a non-negative integer'),
    ),
    "rv with a plus sign": (
        f"{BASE}?resourceVersion=%2B5",
        bad_request('resourceVersion: Invalid value: "+5": must be a non-negative integer'),
    ),
    "rv with an underscore": (
        f"{BASE}?resourceVersion=1_0",
        bad_request('resourceVersion: Invalid value: "1_0": must be a non-negative integer'),
    ),
    "get rv not a number": (
        f"{BASE}/alpha?resourceVersion=abc",
        bad_request('resourceVersion: Invalid value: "abc": must be a non-negative integer'),
    ),
    "rv too old for Exact": (
        f"{BASE}?resourceVersion=5&resourceVersionMatch=Exact",
        (410, status(410, "Expired", f"too old resource version: 5 ({CURRENT})")),
    ),
    "rvMatch unknown": (
        f"{BASE}?resourceVersion=1&resourceVersionMatch=Newest",
        bad_request('resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan"'),
    ),
    "rvMatch without rv": (
        f"{BASE}?resourceVersionMatch=NotOlderThan",
        bad_request("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ),
    # limit and timeoutSeconds
    "limit negative": (f"{BASE}?limit=-1", bad_request("limit: Invalid value: -1: must be greater than or equal to 0")),
    "limit a word": (f"{BASE}?limit=ten", bad_request('limit: Invalid value: "ten": must be an integer')),
    "limit a fullwidth digit": (f"{BASE}?limit=%EF%BC%91", bad_request('limit: Invalid value: "\\uff11": must be an integer')),
    "limit over int64": (
        f"{BASE}?limit=99999999999999999999",
        bad_request(f'limit: Invalid value: "99999999999999999999": {OVER_INT64}'),
    ),
    "timeoutSeconds negative": (
        f"{BASE}?watch=1&timeoutSeconds=-1",
        bad_request("timeoutSeconds: Invalid value: -1: must be greater than or equal to 0"),
    ),
    "timeoutSeconds a decimal": (
        f"{BASE}?watch=1&timeoutSeconds=1.5",
        bad_request('timeoutSeconds: Invalid value: "1.5": must be an integer'),
    ),
    "timeoutSeconds over int64": (
        f"{BASE}?watch=1&timeoutSeconds=99999999999999999999",
        bad_request(f'timeoutSeconds: Invalid value: "99999999999999999999": {OVER_INT64}'),
    ),
    # booleans and enums
    "sendInitialEvents on a list": (
        f"{BASE}?sendInitialEvents=true",
        bad_request("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"),
    ),
    "includeObject garbage": (
        f"{BASE}?includeObject=garbage",
        bad_request('includeObject: Unsupported value: "garbage": supported values: "None", "Metadata", "Object"'),
    ),
    # selectors, in the kube-apiserver's words
    "labelSelector unclosed set": (
        f"{BASE}?labelSelector=env%20in%20(prod",
        bad_request("unable to parse labelSelector: unable to parse requirement: found '', expected: ',' or ')'"),
    ),
    "labelSelector triple equals": (
        f"{BASE}?labelSelector=a%3D%3D%3Db",
        bad_request("unable to parse labelSelector: unable to parse requirement: found '=', expected: identifier"),
    ),
    "fieldSelector unsupported field": (
        f"{BASE}?fieldSelector=spec.provider%3Dx",
        bad_request("field label not supported: spec.provider"),
    ),
    "fieldSelector without operator": (
        f"{BASE}?fieldSelector=metadata.name",
        bad_request("invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ),
    "fieldSelector bad escape": (
        f"{BASE}?fieldSelector=metadata.name%3Da%5Cq",
        bad_request("invalid field selector: invalid escape sequence: \\q"),
    ),
}


@pytest.mark.parametrize(("path", "expected"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_a_bad_parameter_is_a_status_in_kube_words(gateway: RunningGateway, path: str, expected: tuple[int, Any]) -> None:
    assert await get(gateway, path) == expected


@pytest.mark.parametrize(("value", "watches"), [("", True), ("yes", True), ("True", True), ("FALSE", False), ("0", False)])
async def test_query_booleans_are_read_as_kube_reads_them(gateway: RunningGateway, value: str, watches: bool) -> None:
    """Only "false" and "0" (any case) are false; anything else, even "", is true (and authorization agrees)."""
    async with gateway.session() as s, s.get(f"{BASE}?watch={value}&timeoutSeconds=1") as resp:
        assert resp.status == 200
        if watches:
            first = json.loads(await resp.content.readline())
            assert (first["type"], first["object"]["kind"]) == ("ADDED", "ClusterGateway")
        else:
            assert (await resp.json())["kind"] == "ClusterGatewayList"


TOO_LARGE = status(504, "Timeout", f"Too large resource version: 99999, current: {CURRENT}", TOO_LARGE_CAUSES)


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}?resourceVersion=99999",
        f"{BASE}?resourceVersion=99999&resourceVersionMatch=NotOlderThan",
        f"{BASE}?resourceVersion=99999&resourceVersionMatch=Exact",
        f"{BASE}/alpha?resourceVersion=99999",
        f"{BASE}?limit=1&continue={v1(rv=99999, start='alpha')}",
    ],
    ids=["list", "list NotOlderThan", "list Exact", "get", "continue token from a newer listing"],
)
async def test_a_resource_version_newer_than_the_cache_is_too_large_not_too_old(gateway: RunningGateway, path: str) -> None:
    started = asyncio.get_running_loop().time()
    assert await get(gateway, path) == (504, TOO_LARGE)
    assert asyncio.get_running_loop().time() - started >= 2.9  # it waited for the cache, as the kube-apiserver does


async def test_a_watch_from_a_resource_version_newer_than_the_cache_ends_with_a_too_large_error_event(
    gateway: RunningGateway,
) -> None:
    async with gateway.session() as s, s.get(f"{BASE}?watch=1&resourceVersion=99999&timeoutSeconds=30") as resp:
        assert resp.status == 200
        lines = (await asyncio.wait_for(resp.read(), 10)).splitlines()
    assert [json.loads(line) for line in lines] == [{"type": "ERROR", "object": TOO_LARGE}]


async def test_a_resource_version_the_cache_reaches_while_waiting_is_served(gateway: RunningGateway) -> None:
    async def catch_up() -> None:
        await asyncio.sleep(0.3)
        gateway.registry.apply("ADDED", cluster_secret("delta", CURRENT + 1))

    catching_up = asyncio.create_task(catch_up())
    code, body = await get(gateway, f"{BASE}/delta?resourceVersion={CURRENT + 1}")
    await catching_up
    assert code == 200 and body["metadata"]["name"] == "delta"


# --- Fuzzing: any continue token gets a Status (or a page), never a 500 or Python's words. ---------------


class ThreadedGateway:
    """A gateway on its own event loop thread, so synchronous hypothesis tests can call it over TLS."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self.gateway: RunningGateway | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with running_gateway(self._tmp, ManualSecretSource(SECRETS, str(CURRENT))) as gw:
            self.gateway = gw
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedGateway:
        self._thread.start()
        assert self._ready.wait(30), "the gateway did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()

    def get(self, path: str) -> tuple[int, bytes]:
        """One GET on a fresh TLS connection (the server's keep-alive is not what is tested here)."""
        assert self.gateway is not None
        port = int(self.gateway.url.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(self.gateway.ca_file))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def threaded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedGateway]:
    with ThreadedGateway(tmp_path_factory.mktemp("fuzzed")) as gw:
        yield gw


def assert_a_page_or_a_status(code: int, body: bytes) -> None:
    doc = json.loads(body)
    if code == 200:
        assert doc["kind"] == "ClusterGatewayList"
        return
    assert code in (400, 410), doc
    assert (doc["kind"], doc["apiVersion"], doc["status"], doc["code"]) == ("Status", "v1", "Failure", code)
    assert doc["reason"] == {400: "BadRequest", 410: "Expired"}[code]
    assert not any(leak in doc["message"] for leak in PYTHON_LEAKS), doc["message"]


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
# Token-shaped objects: the right keys, often with the right version, and any values. RVs at or below
# the cache's are served or expired; the fuzzing stays off RVs above it (those wait 3 s, tested above).
token_objects = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from(["meta.k8s.io/v1", "meta.k8s.io/v2", ""]) | json_values,
        "rv": st.integers(max_value=CURRENT) | st.integers(min_value=2**63) | json_values.filter(lambda v: type(v) is not int),
        "start": st.text(max_size=12) | json_values,
    },
)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_string_as_continue_is_a_page_or_a_status(threaded_gateway: ThreadedGateway, text: str) -> None:
    code, body = threaded_gateway.get(f"{BASE}?limit=1&continue={urllib.parse.quote(text, safe='')}")
    assert_a_page_or_a_status(code, body)


@FUZZ
@given(payload=json_values | token_objects)
def test_any_json_token_as_continue_is_a_page_or_a_status(threaded_gateway: ThreadedGateway, payload: Any) -> None:
    raw = json.dumps(payload).encode()
    code, body = threaded_gateway.get(f"{BASE}?limit=1&continue={token(raw)}")
    assert_a_page_or_a_status(code, body)


LIST_PARAMETERS = (
    "labelSelector",
    "fieldSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "includeObject",
    "sendInitialEvents",
    "allowWatchBookmarks",
)


@FUZZ
@given(parameter=st.sampled_from(LIST_PARAMETERS), value=st.text(max_size=60))
def test_any_string_in_any_list_parameter_is_a_page_or_a_status(
    threaded_gateway: ThreadedGateway, parameter: str, value: str
) -> None:
    # A resourceVersion above the cache's waits 3 s for a 504 (tested above); the fuzzing stays below it.
    assume(not (parameter == "resourceVersion" and value.isascii() and value.isdigit() and int(value) > CURRENT))
    code, body = threaded_gateway.get(f"{BASE}?{urllib.parse.urlencode({parameter: value})}")
    assert_a_page_or_a_status(code, body)
