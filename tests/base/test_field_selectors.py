"""The field-selector grammar the list handler and authorization share: kube's fields.ParseSelector."""

from __future__ import annotations

import pytest

from gateway_apiserver.base.field_selectors import FieldSelectorSyntaxError, field_terms


def test_terms_are_sorted_split_on_unescaped_commas_and_unescaped() -> None:
    assert field_terms(r"spec.b!=x\,y,metadata.name==a\=b,,c=") == [
        ("c", "=", ""),
        ("metadata.name", "=", "a=b"),
        ("spec.b", "!=", "x,y"),
    ]


def test_nothing_is_trimmed_and_an_empty_selector_has_no_terms() -> None:
    assert field_terms(" metadata.name = a ") == [(" metadata.name ", "=", " a ")]
    assert field_terms("") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        (r"a=b\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_what_kube_cannot_parse_is_refused_in_its_words(text: str, message: str) -> None:
    with pytest.raises(FieldSelectorSyntaxError) as err:
        field_terms(text)
    assert str(err.value) == message
