"""Hostile label and field selectors against the real server over TLS, for list and for watch.

Threat: a caller sends any bytes as `labelSelector` / `fieldSelector`. The only acceptable
answers are 200 with the right objects, or 400 BadRequest as a Kubernetes Status whose
message says what is wrong. Never a 500, never Python internals in the message.

Two kinds of input: arbitrary text (unicode, control characters, operators in random order),
and structured selectors built from kube's grammar. A structured selector made only of valid
parts must be accepted, and must select exactly what an independent evaluation of its
structure selects; the same selector with a mutation (a dropped parenthesis, a stray
operator, a bad key) may be accepted or refused, but only as above.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.gateway import ManualSecretSource, RunningGateway, running_gateway
from tests.fakes.secrets import cluster_secret

CG = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
INITIAL_EVENTS = {
    "watch": "true",
    "sendInitialEvents": "true",
    "allowWatchBookmarks": "true",
    "resourceVersionMatch": "NotOlderThan",
}
# Text that betrays a Python exception instead of a Kubernetes message.
LEAKS = re.compile(r"Traceback|object has no attribute|codec|Errno|NoneType|Exception|KeyError|IndexError|TypeError|ValueError")
# The prefixes of every selector error the kube-apiserver (and so this server) gives.
LABEL_ERROR = "unable to parse labelSelector: "
FIELD_ERRORS = ("invalid field selector: ", "invalid selector: ", "field label not supported: ")

CLUSTER_LABELS: dict[str, dict[str, str]] = {
    "prod-eu": {"env": "prod", "tier": "1", "team": "a", "example.com/owner": "ops"},
    "prod-us": {"env": "prod", "tier": "3", "team": "b"},
    "staging": {"env": "staging", "tier": "2", "example.com/owner": "dev.team-1"},
    "dev-1": {"env": "dev", "tier": "x"},
    "dev-2": {"env": "dev", "team": ""},
    "bare": {},
    "in": {"in": "notin", "notin": "in"},  # keywords as keys, values and names
}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway serving clusters whose labels exercise every operator."""
    secrets = [cluster_secret(name, i + 1, labels=labels) for i, (name, labels) in enumerate(CLUSTER_LABELS.items())]
    async with running_gateway(tmp_path, ManualSecretSource(secrets, "10")) as gw:
        yield gw


@dataclass(frozen=True)
class Answer:
    """What the server answered to one list or watch."""

    status: int
    names: list[str]  # the names listed, or the initial events' names (sorted); [] on error
    body: Any  # the Status object on error


async def list_with(session: aiohttp.ClientSession, params: Mapping[str, str]) -> Answer:
    async with session.get(CG, params=params) as resp:
        body = json.loads(await resp.read())
    if resp.status != 200:
        return Answer(resp.status, [], body)
    assert body["kind"] == "ClusterGatewayList"
    return Answer(200, sorted(item["metadata"]["name"] for item in body["items"]), body)


async def watch_with(session: aiohttp.ClientSession, params: Mapping[str, str]) -> Answer:
    """The initial events of a watch (up to its initial-events-end bookmark), then the watch is closed."""
    async with session.get(CG, params={**params, **INITIAL_EVENTS}) as resp:
        if resp.status != 200:
            return Answer(resp.status, [], json.loads(await resp.read()))
        names: list[str] = []
        async for line in resp.content:
            event = json.loads(line)
            assert event["type"] in ("ADDED", "BOOKMARK"), event
            if event["type"] == "BOOKMARK":
                assert event["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
                return Answer(200, sorted(names), None)
            assert event["object"]["kind"] == "ClusterGateway"
            names.append(event["object"]["metadata"]["name"])
    pytest.fail("the watch ended before its initial-events-end bookmark")


def assert_bad_request(answer: Answer, prefixes: tuple[str, ...]) -> None:
    """A 400 Status that says which selector is wrong, and nothing of the server's insides."""
    status = answer.body
    assert answer.status == 400, answer
    assert {k: status[k] for k in ("kind", "apiVersion", "status", "reason", "code")} == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "BadRequest",
        "code": 400,
    }
    assert status["message"].startswith(prefixes), status["message"]
    assert not LEAKS.search(status["message"]), status["message"]


async def check_both(gateway: RunningGateway, param: str, selector: str) -> tuple[Answer, Answer]:
    """List and watch with one selector; they must agree on the verdict and on the objects."""
    async with gateway.session() as session:
        listed = await list_with(session, {param: selector})
        watched = await watch_with(session, {param: selector})
    assert listed.status in (200, 400), listed
    assert (watched.status, watched.names) == (listed.status, listed.names)
    if listed.status == 400:
        assert watched.body == listed.body  # the same Status, word for word
    return listed, watched


# --- arbitrary text -----------------------------------------------------------------------------

# Unicode without lone surrogates (which no client can encode into a URL).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
# Dense in the grammar's own symbols, so the parsers' error paths are reached often.
SELECTOR_ALPHABET = st.sampled_from([*"=!(),<>\\ \t\n\x00aeinostxy/.-_019é", "in", "notin", "==", "!=", "\u00a0", "\u2028"])
SELECTORISH = st.lists(SELECTOR_ALPHABET, max_size=25).map("".join)


@settings(max_examples=150)
@given(selector=st.one_of(ANY_TEXT, SELECTORISH))
async def test_any_label_selector_is_answered_200_or_a_400_status(gateway: RunningGateway, selector: str) -> None:
    listed, _ = await check_both(gateway, "labelSelector", selector)
    if listed.status == 400:
        assert_bad_request(listed, (LABEL_ERROR,))


@settings(max_examples=150)
@given(selector=st.one_of(ANY_TEXT, SELECTORISH, SELECTORISH.map(lambda s: "metadata.name" + s)))
async def test_any_field_selector_is_answered_200_or_a_400_status(gateway: RunningGateway, selector: str) -> None:
    listed, _ = await check_both(gateway, "fieldSelector", selector)
    if listed.status == 400:
        assert_bad_request(listed, FIELD_ERRORS)


# --- structured label selectors -----------------------------------------------------------------

KEYS = ["env", "tier", "team", "example.com/owner", "missing", "in", "notin", "A.b-c_9"]
VALUES = ["prod", "staging", "dev", "1", "2", "3", "", "ops", "dev.team-1", "in", "notin", "x"]
# Signed numbers are no label values, so kube refuses `k>-1` too: only digits here.
INTEGERS = ["0", "1", "2", "3", "007", "9223372036854775807"]
Labels = Mapping[str, str]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None and re.fullmatch(r"[+-]?[0-9]+", text) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Term:
    """One requirement as a structure; `text` renders it, `selects` is its meaning (kube's)."""

    key: str
    op: str  # "=", "==", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...]
    space: str  # whitespace put around operators and inside sets

    def text(self) -> str:
        s = self.space
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{s}{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op}{s}({s}{f'{s},{s}'.join(self.values)}{s})"
        return f"{self.key}{s}{self.op}{s}{self.values[0]}"

    def selects(self, labels: Labels) -> bool:
        value = labels.get(self.key)
        checks: dict[str, Callable[[], bool]] = {
            "=": lambda: value == self.values[0],
            "==": lambda: value == self.values[0],
            "!=": lambda: value != self.values[0],  # a missing key is "not equal"
            "in": lambda: value in self.values,
            "notin": lambda: value not in self.values,  # a missing key is "not in"
            "exists": lambda: value is not None,
            "!": lambda: value is None,
            ">": lambda: (n := _int(value)) is not None and n > int(self.values[0]),
            "<": lambda: (n := _int(value)) is not None and n < int(self.values[0]),
        }
        return checks[self.op]()


OPERATORS = ["=", "==", "!=", "in", "notin", "exists", "!", ">", "<"]
SPACE = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def terms(draw: st.DrawFn) -> Term:
    key, op, space = draw(st.sampled_from(KEYS)), draw(st.sampled_from(OPERATORS)), draw(SPACE)
    if op in ("in", "notin"):
        values = tuple(draw(st.lists(st.sampled_from([v for v in VALUES if v]), min_size=1, max_size=3)))
    elif op in (">", "<"):
        values = (draw(st.sampled_from(INTEGERS)),)
    elif op in ("exists", "!"):
        values = ()
    else:
        values = (draw(st.sampled_from(VALUES)),)
    return Term(key, op, values, space)


SELECTORS = st.lists(terms(), min_size=1, max_size=4)


def render(selector: list[Term], comma: str = ",") -> str:
    return comma.join(t.text() for t in selector)


def expected_names(selector: list[Term]) -> list[str]:
    return sorted(name for name, labels in CLUSTER_LABELS.items() if all(t.selects(gateway_labels(labels)) for t in selector))


def gateway_labels(secret_labels: Labels) -> dict[str, str]:
    """The labels a ClusterGateway carries: the Secret's, with the credential-type label."""
    return {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken", **secret_labels}


@settings(max_examples=150)
@given(selector=SELECTORS, comma=st.sampled_from([",", " , ", ",\t"]))
async def test_valid_label_selectors_select_exactly_what_they_mean(
    gateway: RunningGateway, selector: list[Term], comma: str
) -> None:
    listed, _ = await check_both(gateway, "labelSelector", render(selector, comma))
    assert (listed.status, listed.names) == (200, expected_names(selector))


# Mutations that turn a valid selector into a near-miss: a truncated set, a doubled operator,
# a key that is not a label key, stray escapes and unicode lookalikes.
MUTATIONS: list[Callable[[str], str]] = [
    lambda s: s.replace(")", "", 1),
    lambda s: s.replace("(", "", 1),
    lambda s: s.replace("=", "===", 1),
    lambda s: s.replace("!", "!!", 1),
    lambda s: s + ",",
    lambda s: "," + s,
    lambda s: s.replace(",", ",,", 1),
    lambda s: s.replace("env", "-env", 1),
    lambda s: s.replace("env", "a/b/env", 1),
    lambda s: s.replace("env", "Exämple.com/env", 1),
    lambda s: s.replace("prod", "pr\\,od", 1),
    lambda s: s.replace("=", "\uff1d", 1),  # a fullwidth equals sign
    lambda s: s + " in",
    lambda s: s + ">",
    lambda s: s.replace("1", "1.5", 1),
    lambda s: s.replace("in", "IN", 1),
    lambda s: s + "\x00junk",
    lambda s: s + "=" + "v" * 64,
    lambda s: "x" * 64 + "=" + s,
]


@settings(max_examples=150)
@given(selector=SELECTORS, mutation=st.sampled_from(MUTATIONS))
async def test_near_valid_label_selectors_are_answered_200_or_a_400_status(
    gateway: RunningGateway, selector: list[Term], mutation: Callable[[str], str]
) -> None:
    listed, _ = await check_both(gateway, "labelSelector", mutation(render(selector)))
    if listed.status == 400:
        assert_bad_request(listed, (LABEL_ERROR,))


# --- structured field selectors -----------------------------------------------------------------

NAMES = [*CLUSTER_LABELS, "nope", "a,b", "a=b", "a\\b", ""]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@settings(max_examples=100)
@given(terms=st.lists(st.tuples(st.sampled_from(["=", "==", "!="]), st.sampled_from(NAMES)), min_size=1, max_size=3))
async def test_valid_field_selectors_select_exactly_what_they_mean(gateway: RunningGateway, terms: list[tuple[str, str]]) -> None:
    selector = ",".join(f"metadata.name{op}{escape(name)}" for op, name in terms)
    expected = sorted(name for name in CLUSTER_LABELS if all((name == value) != (op == "!=") for op, value in terms))
    listed, _ = await check_both(gateway, "fieldSelector", selector)
    assert (listed.status, listed.names) == (200, expected)


@settings(max_examples=100)
@given(
    field=st.sampled_from(["metadata.name", "metadata.namespace", "spec.provider", "", "metadata.name ", "\uff4detadata.name"]),
    op=st.sampled_from(["=", "==", "!=", "!", "=~", ""]),
    value=st.sampled_from(["prod-eu", "a\\", "a\\x", "a,b", "a=b", "\\,", "é", "\x00", "%2C"]),
)
async def test_near_valid_field_selectors_are_answered_200_or_a_400_status(
    gateway: RunningGateway, field: str, op: str, value: str
) -> None:
    listed, _ = await check_both(gateway, "fieldSelector", f"{field}{op}{value}")
    if listed.status == 400:
        assert_bad_request(listed, FIELD_ERRORS)


async def test_the_exact_messages_for_typical_mistakes(gateway: RunningGateway) -> None:
    """The fuzzers accept any clear message; these are the words a user sees for common slips."""
    cases = {
        ("labelSelector", "env in (prod"): "unable to parse labelSelector: unable to parse requirement: "
        "found '', expected: ',' or ')'",
        ("labelSelector", "env=prod,"): "unable to parse labelSelector: found '', expected: identifier after ','",
        ("fieldSelector", "spec.provider=x"): "field label not supported: spec.provider",
        ("fieldSelector", "metadata.name=a\\x"): "invalid field selector: invalid escape sequence: \\x",
    }
    for (param, selector), message in cases.items():
        async with gateway.session() as session:
            listed = await list_with(session, {param: selector})
        assert_bad_request(listed, (message,))
        assert listed.body["message"] == message


async def test_a_number_too_long_for_python_to_parse_is_a_400(gateway: RunningGateway) -> None:
    """Python refuses int() on more than 4300 digits; kube's ParseInt merely fails. Either way: not an integer."""
    not_an_integer = "for 'Gt', 'Lt' operators, the value must be an integer"
    number = "9" * 30  # beyond int64, but a valid label value
    listed, _ = await check_both(gateway, "labelSelector", f"tier>{number}")
    assert_bad_request(listed, (LABEL_ERROR,))
    invalid = f'{LABEL_ERROR}unable to parse requirement: values[0]: Invalid value: "{number}"'
    assert listed.body["message"] == f"{invalid}: {not_an_integer}"
    number = "9" * 5000  # beyond what Python's int() parses, and too long for a label value
    listed, _ = await check_both(gateway, "labelSelector", f"tier>{number}")
    assert_bad_request(listed, (LABEL_ERROR,))
    assert listed.body["message"] == (
        f'{LABEL_ERROR}unable to parse requirement: [values[0]: Invalid value: "{number}": {not_an_integer}, '
        f'values[0][tier]: Invalid value: "{number}": must be no more than 63 bytes]'
    )


async def test_a_label_value_too_long_for_python_to_parse_never_matches_gt(tmp_path: Path) -> None:
    """Standalone Secrets are files, so their labels are not checked by any API server: a huge number may appear."""
    secrets = [cluster_secret("huge", labels={"tier": "9" * 5000}), cluster_secret("small", labels={"tier": "2"})]
    async with running_gateway(tmp_path, ManualSecretSource(secrets)) as gw:
        listed, _ = await check_both(gw, "labelSelector", "tier>1")
    assert (listed.status, listed.names) == (200, ["small"])
