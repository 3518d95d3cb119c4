"""Specification of label and field selectors: kube-apiserver syntax, semantics and errors."""

from __future__ import annotations

import pytest

from gateway_apiserver.api.selectors import (
    FieldSelector,
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from gateway_apiserver.base.validation import dns1123_subdomain_errors, label_key_errors, label_value_errors

NAME = frozenset({"metadata.name"})
KEY_HELP = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_HELP = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def selects(selector: str, labels: dict[str, str]) -> bool:
    return parse_label_selector(selector).matches(labels)


# --- label selectors: each operator ------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        # equality: `=` and `==` are the same; a missing key never equals
        ("env=prod", {"env": "prod"}, True),
        ("env=prod", {"env": "dev"}, False),
        ("env=prod", {}, False),
        ("env==prod", {"env": "prod"}, True),
        ("env==prod", {"env": "dev"}, False),
        # inequality: a missing key matches, as in kube
        ("env!=prod", {"env": "dev"}, True),
        ("env!=prod", {"env": "prod"}, False),
        ("env!=prod", {}, True),
        # set membership
        ("env in (prod,staging)", {"env": "staging"}, True),
        ("env in (prod,staging)", {"env": "dev"}, False),
        ("env in (prod,staging)", {}, False),
        ("env in (prod)", {"env": "prod"}, True),
        # set exclusion: a missing key matches, as in kube
        ("env notin (prod,staging)", {"env": "dev"}, True),
        ("env notin (prod,staging)", {"env": "prod"}, False),
        ("env notin (prod,staging)", {}, True),
        ("env notin (prod)", {}, True),
        # existence
        ("env", {"env": ""}, True),
        ("env", {"other": "x"}, False),
        ("!env", {"other": "x"}, True),
        ("!env", {"env": "x"}, False),
        # integer comparison: a missing key or a non-integer value never matches
        ("replicas>5", {"replicas": "6"}, True),
        ("replicas>5", {"replicas": "5"}, False),
        ("replicas>5", {}, False),
        ("replicas>5", {"replicas": "many"}, False),
        ("replicas<5", {"replicas": "4"}, True),
        ("replicas<5", {"replicas": "-10"}, True),
        ("replicas<5", {"replicas": "5"}, False),
        ("replicas<5", {"replicas": "4.5"}, False),
        ("replicas>0", {"replicas": "99999999999999999999"}, False),  # beyond int64
        # the empty value
        ("env=", {"env": ""}, True),
        ("env=", {"env": "x"}, False),
        ("env in ()", {"env": ""}, True),
        ("env in (,a)", {"env": ""}, True),
        ("env in (a,)", {"env": ""}, True),
        ("env in (a,,b)", {"env": ""}, True),
        ("env in (a,b)", {"env": ""}, False),
    ],
)
def test_label_operators(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selects(selector, labels) is expected


def test_empty_selector_matches_everything() -> None:
    for text in ("", "   ", "\t\n"):
        selector = parse_label_selector(text)
        assert selector.empty
        assert selector.matches({})
        assert selector.matches({"a": "b"})
        assert str(selector) == ""
    assert LabelSelector().matches({"x": "y"})


def test_requirements_are_anded() -> None:
    selector = parse_label_selector("env in (prod,staging),tier!=db,team,!legacy,version>2")
    assert selector.matches({"env": "prod", "tier": "web", "team": "a", "version": "3"})
    assert selector.matches({"env": "staging", "team": "a", "version": "10"})  # tier missing is fine
    assert not selector.matches({"env": "prod", "tier": "db", "team": "a", "version": "3"})
    assert not selector.matches({"env": "prod", "team": "a", "version": "3", "legacy": "true"})
    assert not selector.matches({"env": "prod", "team": "a", "version": "1"})
    assert not selector.matches({"env": "prod", "version": "3"})


def test_whitespace_is_tolerated_between_tokens() -> None:
    assert parse_label_selector("  env = prod ,  tier in ( a , b ) ,  ! legacy  ") == parse_label_selector(
        "env=prod,tier in (a,b),!legacy"
    )
    assert selects("env\t==\nprod", {"env": "prod"})
    assert selects("env\r\n!=\tprod", {"env": "dev"})


def test_keywords_are_plain_words_where_keys_and_values_are_due() -> None:
    assert selects("in in (in,notin)", {"in": "notin"})
    assert selects("notin=in", {"notin": "in"})


def test_prefixed_keys() -> None:
    key = "cluster.core.oam.dev/cluster-credential-type"
    assert selects(f"{key}=X509Certificate", {key: "X509Certificate"})
    assert selects("example.com/My_Key.1", {"example.com/My_Key.1": "v"})


def test_parsed_form_is_sorted_and_canonical_like_kube() -> None:
    selector = parse_label_selector("z notin (b,a,a), !y, x>1, w<2, v==1, u!=2, t=3, s in (q,,p), r")
    assert str(selector) == "r,s in (,p,q),t=3,u!=2,v==1,w<2,x>1,!y,z notin (a,b)"
    assert selector.requirements[0] == Requirement("r", Operator.EXISTS)
    assert selector.requirements[1] == Requirement("s", Operator.IN, ("", "p", "q"))
    assert parse_label_selector(str(selector)) == selector


def test_label_exact_value() -> None:
    selector = parse_label_selector("a=1,b==2,c in (3),d in (4,5),e!=6,f")
    assert [selector.exact_value(k) for k in "abcdefg"] == ["1", "2", "3", None, None, None, None]


def test_a_nul_byte_behaves_as_in_go() -> None:
    # Go's lexer reads byte 0 as the end of input, swallows it after a token, and carries on.
    assert parse_label_selector("a=\x00b") == parse_label_selector("a=b")
    assert parse_label_selector("a,\x00b") == parse_label_selector("a,b")
    assert parse_label_selector("a \x00b") == parse_label_selector("a")  # NUL where a token starts: the end
    with pytest.raises(SelectorError, match="found '', expected: identifier after ','"):
        parse_label_selector("a, \x00b")


# --- label selectors: errors, with kube's messages --------------------------------------------


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        # structure
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a !b", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt"),
        ("a,", "found '', expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
        ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("!=", "found '!=', expected: !, identifier, or 'end of string'"),
        ("!!a", "unable to parse requirement: found '!', expected: identifier"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a===b", "unable to parse requirement: found '=', expected: identifier"),
        ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in", "unable to parse requirement: found '' expected: '('"),
        ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a in (b))", "found ')', expected: ',' or 'end of string'"),
        ("a notin", "unable to parse requirement: found '' expected: '('"),
        # keys
        (
            "a/b/c",
            'unable to parse requirement: <nil>: Invalid value: "a/b/c": a valid label key '
            + KEY_HELP
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
        ("-a=b", 'unable to parse requirement: <nil>: Invalid value: "-a": name part ' + KEY_HELP),
        ("a_=b", 'unable to parse requirement: <nil>: Invalid value: "a_": name part ' + KEY_HELP),
        ("/a", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
        (
            "a/",
            'unable to parse requirement: <nil>: Invalid value: "a/": name part must be non-empty; name part ' + KEY_HELP,
        ),
        (
            "Example.com/a",
            'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part ' + SUBDOMAIN_HELP,
        ),
        (
            "k" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"k" * 64}": name part must be no more than 63 bytes',
        ),
        ('a"b', 'unable to parse requirement: <nil>: Invalid value: "a\\"b": name part ' + KEY_HELP),
        ("é", 'unable to parse requirement: <nil>: Invalid value: "é": name part ' + KEY_HELP),
        # values
        ("a=-b", 'unable to parse requirement: values[0][a]: Invalid value: "-b": ' + VALUE_HELP),
        ("a!=b_", 'unable to parse requirement: values[0][a]: Invalid value: "b_": ' + VALUE_HELP),
        (
            "a in (z,-y)",  # values are sorted before they are checked, as kube does
            'unable to parse requirement: values[0][a]: Invalid value: "-y": ' + VALUE_HELP,
        ),
        (
            "a notin (-x,-y)",
            "unable to parse requirement: ["
            f'values[0][a]: Invalid value: "-x": {VALUE_HELP}, '
            f'values[1][a]: Invalid value: "-y": {VALUE_HELP}]',
        ),
        (
            "a=" + "v" * 64,
            f'unable to parse requirement: values[0][a]: Invalid value: "{"v" * 64}": must be no more than 63 bytes',
        ),
        ("a=é", 'unable to parse requirement: values[0][a]: Invalid value: "é": ' + VALUE_HELP),
        # integer comparisons
        (
            "a>b",
            'unable to parse requirement: values[0]: Invalid value: "b": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "a<",
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "a>99999999999999999999",
            'unable to parse requirement: values[0]: Invalid value: "99999999999999999999": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (  # the label-value rules still apply, so negative bounds are rejected
            "a<-1",
            'unable to parse requirement: values[0][a]: Invalid value: "-1": ' + VALUE_HELP,
        ),
        (
            "a>1.5x_",
            "unable to parse requirement: ["
            "values[0]: Invalid value: \"1.5x_\": for 'Gt', 'Lt' operators, the value must be an integer, "
            f'values[0][a]: Invalid value: "1.5x_": {VALUE_HELP}]',
        ),
    ],
)
def test_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_label_selector(selector)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_label_value_lengths_are_counted_in_bytes_as_in_go() -> None:
    assert label_value_errors("v" * 63) == []
    assert "must be no more than 63 bytes" in label_value_errors("é" * 32)  # 64 bytes


# --- validation helpers ------------------------------------------------------------------------


def test_validation_helpers() -> None:
    assert label_key_errors("example.com/name") == []
    assert label_key_errors("a" * 63) == []
    assert label_key_errors("x" * 254 + "/a")[0] == "prefix part must be no more than 253 bytes"
    assert label_value_errors("") == []
    assert label_value_errors("My_value-1.0") == []
    assert dns1123_subdomain_errors("cluster-1.example.com") == []
    assert dns1123_subdomain_errors("Cluster") == [SUBDOMAIN_HELP]
    assert dns1123_subdomain_errors("a" * 254) == ["must be no more than 253 bytes"]


# --- field selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "name", "expected"),
    [
        ("metadata.name=a", "a", True),
        ("metadata.name=a", "b", False),
        ("metadata.name==a", "a", True),
        ("metadata.name!=a", "a", False),
        ("metadata.name!=a", "b", True),
        ("metadata.name=a,metadata.name!=b", "a", True),
        ("metadata.name=a,metadata.name=b", "a", False),  # both must hold
        ("metadata.name!=a,metadata.name!=b", "c", True),
        ("metadata.name=", "", True),
        ("metadata.name=a\\,b", "a,b", True),  # escaped comma is data, not a separator
        ("metadata.name=a\\=b", "a=b", True),
        ("metadata.name=a\\\\b", "a\\b", True),
        ("metadata.name= a", " a", True),  # nothing is trimmed
        (",metadata.name=a,,", "a", True),  # empty terms are skipped
        ("", "anything", True),
    ],
)
def test_field_operators(selector: str, name: str, expected: bool) -> None:
    assert parse_field_selector(selector, NAME).matches({"metadata.name": name}) is expected


def test_missing_field_reads_as_empty() -> None:
    assert parse_field_selector("metadata.name=", NAME).matches({})
    assert parse_field_selector("metadata.name!=a", NAME).matches({})
    assert not parse_field_selector("metadata.name=a", NAME).matches({})


def test_field_exact_value_shortcut() -> None:
    assert parse_field_selector("metadata.name=a", NAME).exact_value("metadata.name") == "a"
    assert parse_field_selector("metadata.name==a\\,b", NAME).exact_value("metadata.name") == "a,b"
    assert parse_field_selector("metadata.name!=a", NAME).exact_value("metadata.name") is None
    assert parse_field_selector("", NAME).exact_value("metadata.name") is None
    both = parse_field_selector("metadata.name=b,metadata.name!=b", NAME)
    assert both.exact_value("metadata.name") == "b"  # the short-cut names the candidate...
    assert not both.matches({"metadata.name": "b"})  # ...and `matches` still decides


def test_field_selector_canonical_form() -> None:
    selector = parse_field_selector("metadata.name!=b,metadata.name==a\\,c", NAME)
    assert str(selector) == "metadata.name!=b,metadata.name=a\\,c"  # sorted, re-escaped
    assert parse_field_selector(str(selector), NAME) == selector
    assert FieldSelector().empty and parse_field_selector("", NAME).empty


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("spec.foo=a", "field label not supported: spec.foo"),
        ("metadata.name=a,b=c", "field label not supported: b"),
        ("metadata.name =a", "field label not supported: metadata.name "),
        ("=a", "field label not supported: "),
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("x=1,metadata.name", "invalid selector: 'x=1,metadata.name'; can't understand 'metadata.name'"),
        ("metadata.name=a\\x", "invalid field selector: invalid escape sequence: \\x"),
        ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
        # Go prints the offending rune with %v, i.e. its code point: 61 is '='
        ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
        ("metadata.name==a=b", "invalid field selector: unescaped character in value: 61"),
        # syntax errors come before unsupported fields, whatever the order of the terms
        ("zzz=1,metadata.name=a\\q", "invalid field selector: invalid escape sequence: \\q"),
    ],
)
def test_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_field_selector(selector, NAME)
    assert str(caught.value) == message


def test_supported_fields_are_the_callers_choice() -> None:
    fields = frozenset({"metadata.name", "metadata.namespace"})
    selector = parse_field_selector("metadata.namespace=vela-system", fields)
    assert selector.matches({"metadata.name": "x", "metadata.namespace": "vela-system"})
