"""Query booleans as the kube-apiserver converts them; every reader of `watch` and `follow` uses this."""

from __future__ import annotations

import pytest

from gateway_apiserver.base.query import query_bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("", True),
        ("1", True),
        ("true", True),
        ("yes", True),
        ("f", True),
    ],
)
def test_only_absent_false_and_zero_are_false(value: str | None, expected: bool) -> None:
    assert query_bool(value) is expected
