"""Identity exchange rules and impersonation headers, compatible with cluster-gateway's proxy.

Parsing, matching and the exact header encoding are specified here; which rule applies when
(the gate, `?impersonate=true`, privileged and static rules, annotation before file) is proven
by outcomes at a member that authorizes as the impersonated user: test_impersonation_outcomes.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from multidict import CIMultiDict

from gateway_apiserver.base.status import StatusError
from gateway_apiserver.config import ConfigError
from gateway_apiserver.proxy import impersonation as imp
from gateway_apiserver.proxy.impersonation import (
    EMPTY,
    ClusterImpersonation,
    Exchange,
    ExchangerType,
    Outcome,
    ProxyConfigError,
    Rule,
    Source,
    Target,
    compile_pattern,
    escape_extra_key,
    exchange,
    impersonation_headers,
    load_proxy_config_file,
    parse_cluster_annotation,
    parse_proxy_configuration,
)
from gateway_apiserver.registry.conversion import secret_to_cluster_gateway
from gateway_apiserver.registry.model import ANNOTATION_PROXY_CONFIGURATION, ClusterGateway
from gateway_apiserver.security.identity import UserInfo
from tests.fakes.secrets import cluster_secret

HEADER = "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\n"


def doc(rules: str) -> str:
    """A configuration document holding the given (un-indented) YAML rule list."""
    body = textwrap.indent(textwrap.dedent(rules).strip(), "      ")
    return f"{HEADER}spec:\n  clientIdentityExchanger:\n    rules:\n{body}\n"


def privileged(name: str, **source: Any) -> Rule:
    return Rule(name, ExchangerType.PRIVILEGED, Source(**source))


def static(name: str, target: Target, source: Source) -> Rule:
    return Rule(name, ExchangerType.STATIC_MAPPING, source, target)


def gateway(name: str, annotation: str | None, rv: int = 1) -> ClusterGateway:
    annotations = {ANNOTATION_PROXY_CONFIGURATION: annotation} if annotation is not None else {}
    return secret_to_cluster_gateway(cluster_secret(name, rv, annotations=annotations))


# --- Ported from the reference's TestExchangeIdentity ------------------------------------------


@pytest.mark.parametrize(
    ("rules", "user", "cluster", "outcome", "rule_name", "target"),
    [
        pytest.param(
            [privileged("user-match", user="test")], UserInfo("test"), "", Outcome.PRIVILEGED, "user-match", None, id="match-user"
        ),
        pytest.param(
            [static("group-match", Target(groups=("projected",)), Source(group="test-group"))],
            UserInfo("test", groups=("group", "test-group")),
            "",
            Outcome.STATIC_MAPPING,
            "group-match",
            Target(groups=("projected",)),
            id="match-group",
        ),
        pytest.param(
            [privileged("uid-match", uid="12345")],
            UserInfo("abc", uid="12345"),
            "",
            Outcome.PRIVILEGED,
            "uid-match",
            None,
            id="match-uid",
        ),
        pytest.param(
            [
                privileged("name-match", user="test", cluster="c1"),
                static("group-match", Target(groups=("projected",)), Source(group="test-group", cluster="c2")),
            ],
            UserInfo("test", groups=("group", "test-group")),
            "c2",
            Outcome.STATIC_MAPPING,
            "group-match",
            Target(groups=("projected",)),
            id="match-cluster",
        ),
        pytest.param(
            [Rule("user-pattern-match", ExchangerType.PRIVILEGED, Source(user_pattern=compile_pattern("test-.*")))],
            UserInfo("test-1234"),
            "",
            Outcome.PRIVILEGED,
            "user-pattern-match",
            None,
            id="match-user-pattern",
        ),
        pytest.param(
            [
                static(
                    "group-pattern-match", Target(groups=("projected",)), Source(group_pattern=compile_pattern("test-group:.+"))
                )
            ],
            UserInfo("test", groups=("group:1", "test-group:2")),
            "",
            Outcome.STATIC_MAPPING,
            "group-pattern-match",
            Target(groups=("projected",)),
            id="match-group-pattern",
        ),
        pytest.param(
            [static("cluster-pattern-match", Target(user="special"), Source(cluster_pattern=compile_pattern(r"cluster-\d+")))],
            UserInfo("test"),
            "cluster-1",
            Outcome.STATIC_MAPPING,
            "cluster-pattern-match",
            Target(user="special"),
            id="match-cluster-pattern",
        ),
        pytest.param(
            [static("cluster-pattern-match", Target(user="special"), Source(cluster_pattern=compile_pattern(r"cluster-\d+")))],
            UserInfo("test"),
            "cluster-other",
            Outcome.NO_MATCH,
            None,
            None,
            id="no-match",
        ),
    ],
)
def test_exchange_reference_cases(
    rules: list[Rule], user: UserInfo, cluster: str, outcome: Outcome, rule_name: str | None, target: Target | None
) -> None:
    result = exchange(user, cluster, rules)
    assert result.outcome is outcome
    assert (result.rule.name if result.rule else None) == rule_name
    assert (result.rule.target if result.rule else None) == target


def test_external_exchanger_is_rejected_at_parse_time() -> None:
    # The reference's "not-implemented" case: it matches, errors, then dereferences nil.
    text = doc(
        r"""
        - name: external-identity-exchange
          type: ExternalIdentityExchanger
          source: {clusterPattern: 'cluster-\d+'}
        """
    )
    with pytest.raises(
        ProxyConfigError, match=r'rule "external-identity-exchange": type ExternalIdentityExchanger is not implemented'
    ):
        parse_proxy_configuration(text)


# --- Matching ------------------------------------------------------------------------------------


def test_every_source_field_must_match() -> None:
    rule = parse_proxy_configuration(
        doc(
            """
            - name: both
              type: PrivilegedIdentityExchanger
              source: {user: alice, group: admins, uid: u-1, cluster: c1}
            """
        )
    ).rules[0]
    ok = UserInfo("alice", "u-1", ("admins",))
    assert exchange(ok, "c1", [rule]).outcome is Outcome.PRIVILEGED
    for user, cluster in [
        (UserInfo("bob", "u-1", ("admins",)), "c1"),
        (UserInfo("alice", "u-2", ("admins",)), "c1"),
        (UserInfo("alice", "u-1", ("devs",)), "c1"),
        (ok, "c2"),
    ]:
        assert exchange(user, cluster, [rule]) == Exchange(Outcome.NO_MATCH)


def test_exact_fields_compare_whole_strings() -> None:
    rules = [privileged("r", user="alice", group="ops")]
    assert exchange(UserInfo("alice2", groups=("ops",)), "c", rules).outcome is Outcome.NO_MATCH
    assert exchange(UserInfo("alice", groups=("ops-team",)), "c", rules).outcome is Outcome.NO_MATCH


def test_patterns_are_unanchored_searches_like_go_regexp_match() -> None:
    rules = [Rule("r", ExchangerType.PRIVILEGED, Source(user_pattern=compile_pattern("admin")))]
    assert exchange(UserInfo("cluster-admin-1"), "c", rules).outcome is Outcome.PRIVILEGED
    anchored = [Rule("r", ExchangerType.PRIVILEGED, Source(user_pattern=compile_pattern("^admin$")))]
    assert exchange(UserInfo("cluster-admin-1"), "c", anchored).outcome is Outcome.NO_MATCH
    assert exchange(UserInfo("admin"), "c", anchored).outcome is Outcome.PRIVILEGED


def test_group_pattern_needs_at_least_one_group() -> None:
    rules = [Rule("r", ExchangerType.PRIVILEGED, Source(group_pattern=compile_pattern(".*")))]
    assert exchange(UserInfo("nobody"), "c", rules).outcome is Outcome.NO_MATCH
    assert exchange(UserInfo("x", groups=("a",)), "c", rules).outcome is Outcome.PRIVILEGED


def test_digit_class_is_ascii_only_as_in_go() -> None:
    rules = [Rule("r", ExchangerType.PRIVILEGED, Source(cluster_pattern=compile_pattern(r"^cluster-\d+$")))]
    assert exchange(UserInfo("u"), "cluster-12", rules).outcome is Outcome.PRIVILEGED
    assert exchange(UserInfo("u"), "cluster-\u0661", rules).outcome is Outcome.NO_MATCH  # Arabic-Indic one


def test_first_match_wins_in_order() -> None:
    rules = [
        static("first", Target("mapped"), Source(user="alice")),
        privileged("second", user="alice"),
    ]
    assert exchange(UserInfo("alice"), "c", rules).rule == rules[0]
    assert exchange(UserInfo("alice"), "c", rules[::-1]).rule == rules[1]


# --- Parsing -------------------------------------------------------------------------------------

FULL = doc(
    r"""
    - name: super-admins
      type: PrivilegedIdentityExchanger
      source:
        group: super-admin
    - name: ci
      type: StaticMappingIdentityExchanger
      source:
        userPattern: '^system:serviceaccount:ci:.*$'
        groupPattern: 'ci-.+'
        clusterPattern: 'prod-\d+'
        uid: "1001"
      target:
        user: ci-bot
        groups: [ci, deployers]
        uid: "42"
    """
)


def test_parse_full_document() -> None:
    config = parse_proxy_configuration(FULL, origin="test")
    assert [r.name for r in config.rules] == ["super-admins", "ci"]
    first, second = config.rules
    assert first.type is ExchangerType.PRIVILEGED and first.source == Source(group="super-admin") and first.target is None
    assert second.type is ExchangerType.STATIC_MAPPING
    assert second.target == Target("ci-bot", ("ci", "deployers"), "42")
    assert second.source.uid == "1001" and second.origin == "test"
    assert second.source.cluster_pattern is not None and second.source.cluster_pattern.pattern == r"prod-\d+"


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: cluster.core.oam.dev/v1alpha1\nkind: ClusterGatewayProxyConfiguration\n",
        "spec: {}\n",
        "spec:\n  clientIdentityExchanger:\n    rules: []\n",
        "# only a comment\n",
    ],
)
def test_documents_without_rules(text: str) -> None:
    assert parse_proxy_configuration(text) == EMPTY


def test_api_version_and_kind_may_be_omitted_as_the_reference_never_checks_them() -> None:
    text = (
        "spec:\n  clientIdentityExchanger:\n    rules:\n    - {name: r, type: PrivilegedIdentityExchanger, source: {user: a}}\n"
    )
    assert [r.name for r in parse_proxy_configuration(text).rules] == ["r"]


RULE = "- name: r\n  type: PrivilegedIdentityExchanger\n  source: {user: a}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spec: [unclosed\n", r"^invalid YAML: "),
        ("- a\n- b\n", r"^the document must be a mapping$"),
        ("apiVersion: v1\n", r"^apiVersion must be cluster\.core\.oam\.dev/v1alpha1, not 'v1'$"),
        ("kind: ClusterGateway\n", r"^kind must be ClusterGatewayProxyConfiguration, not 'ClusterGateway'$"),
        ("spek: {}\n", r"^the document: unknown field\(s\) spek$"),
        ("spec: {clientIdentityExchanger: {rules: {}}}\n", r"^spec\.clientIdentityExchanger\.rules must be a list$"),
        (doc("- type: PrivilegedIdentityExchanger\n  source: {user: a}"), r"^rules\[0\]: name must be a non-empty string"),
        (doc(RULE + RULE), r'^rule "r": duplicate rule name$'),
        (
            doc("- name: r\n  type: Privileged\n  source: {user: a}"),
            r"^rule \"r\": unknown type 'Privileged' \(want PrivilegedIdentityExchanger or ",
        ),
        (doc("- name: r\n  type: PrivilegedIdentityExchanger"), r'^rule "r": source is empty, which would match everyone'),
        (doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {}"), r'^rule "r": source is empty'),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {userpattern: a}"),
            r'^rule "r": source: unknown field\(s\) userpattern$',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {user: a}\n  url: x"),
            r'^rule "r": unknown field\(s\) url$',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {uid: 1001}"),
            r'^rule "r": source\.uid must be a non-empty string \(quote numbers\)$',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {user: ''}"),
            r'^rule "r": source\.user must be a non-empty string',
        ),
        (
            doc("- name: r\n  type: StaticMappingIdentityExchanger\n  source: {user: a}"),
            r'^rule "r": type StaticMappingIdentityExchanger requires a target$',
        ),
        (
            doc("- name: r\n  type: StaticMappingIdentityExchanger\n  source: {user: a}\n  target: {groups: [g]}"),
            r'^rule "r": target\.user is required: Kubernetes cannot impersonate groups or a uid without a user$',
        ),
        (
            doc("- name: r\n  type: StaticMappingIdentityExchanger\n  source: {user: a}\n  target: {user: b, groups: g}"),
            r'^rule "r": target\.groups must be a list$',
        ),
        (
            doc('- name: r\n  type: StaticMappingIdentityExchanger\n  source: {user: a}\n  target: {user: "b\\r\\nX-Evil: 1"}'),
            r'^rule "r": target\.user must not contain control characters$',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {user: a}\n  target: {user: b}"),
            r'^rule "r": type PrivilegedIdentityExchanger takes no target$',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: '(unclosed'}"),
            r"^rule \"r\": source\.userPattern: invalid regular expression '\(unclosed': ",
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: '(?=a)b'}"),
            r'^rule "r": source\.userPattern: lookahead/lookbehind are not supported',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {groupPattern: '(a)\\1'}"),
            r'^rule "r": source\.groupPattern: backreferences are not supported',
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: 'x(?:a*+)'}"),
            r"possessive quantifiers are not supported",
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: '[[:alpha:]]'}"),
            r"invalid regular expression '\[\[:alpha:\]\]'",
        ),
        (
            doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: '(?x) a b'}"),
            r"the \(\?x\) flag is not supported",
        ),
    ],
)
def test_parse_errors_name_the_rule(text: str, message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message) as info:
        parse_proxy_configuration(text)
    assert "\n" not in str(info.value)


def test_valid_go_patterns_compile() -> None:
    for pattern in [r"^system:serviceaccount:(ns-a|ns-b):.*$", r"[a-z0-9-]+\.example\.com", r"(?i)admin", r"a{2,3}"]:
        assert compile_pattern(pattern).pattern == pattern


# --- The global file -----------------------------------------------------------------------------


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(FULL)
    config = load_proxy_config_file(path)
    assert [r.name for r in config.rules] == ["super-admins", "ci"]
    assert {r.origin for r in config.rules} == {"--cluster-gateway-proxy-config"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"No such file or directory$"),
        ("", r"the file is empty$"),
        ("kind: Nope\n", r"kind must be ClusterGatewayProxyConfiguration, not 'Nope'$"),
        (doc("- name: bad\n  type: Nope\n  source: {user: a}"), r'rule "bad": unknown type'),
    ],
)
def test_load_file_errors_are_one_line_config_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "proxy.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_proxy_config_file(path)
    assert str(info.value).startswith(f"--cluster-gateway-proxy-config {path}: ")
    assert "\n" not in str(info.value)


# --- Annotations ---------------------------------------------------------------------------------


def test_annotation_rules_are_pinned_to_their_cluster() -> None:
    config = parse_cluster_annotation(
        doc("- name: all\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: '.*'}"), "c1"
    )
    assert config.rules[0].source.cluster == "c1"
    assert exchange(UserInfo("u"), "c1", config.rules).outcome is Outcome.PRIVILEGED
    assert exchange(UserInfo("u"), "c2", config.rules).outcome is Outcome.NO_MATCH


def test_annotation_keeps_cluster_pattern_and_accepts_its_own_name() -> None:
    text = doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {cluster: c1, clusterPattern: '^c'}")
    assert parse_cluster_annotation(text, "c1").rules[0].source.cluster_pattern is not None
    text = doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {user: u, clusterPattern: '^x'}")
    assert exchange(UserInfo("u"), "c1", parse_cluster_annotation(text, "c1").rules).outcome is Outcome.NO_MATCH


def test_annotation_naming_another_cluster_is_an_error() -> None:
    text = doc("- name: r\n  type: PrivilegedIdentityExchanger\n  source: {cluster: other}")
    with pytest.raises(ProxyConfigError, match=r"rule \"r\": source\.cluster 'other' is not this cluster"):
        parse_cluster_annotation(text, "c1")


def test_empty_annotation_has_no_rules() -> None:
    assert parse_cluster_annotation("  \n", "c1") == EMPTY


# --- Headers -------------------------------------------------------------------------------------

CALLER = UserInfo(
    "alice",
    uid="uid-1",
    groups=("devs", "system:authenticated"),
    extra={"scopes": ("openid", "profile"), "acme.com/project": ("p1",)},
)
PASSTHROUGH = [
    ("Impersonate-User", "alice"),
    ("Impersonate-Group", "devs"),
    ("Impersonate-Group", "system:authenticated"),
    ("Impersonate-Extra-scopes", "openid"),
    ("Impersonate-Extra-scopes", "profile"),
    ("Impersonate-Extra-acme.com%2Fproject", "p1"),
]


def headers(
    *, gate: bool, requested: bool, cluster_rules: list[Rule] | None = None, global_rules: list[Rule] | None = None
) -> list[tuple[str, str]]:
    return impersonation_headers(
        CALLER,
        "c1",
        penetration_enabled=gate,
        requested=requested,
        cluster_rules=cluster_rules or [],
        global_rules=global_rules or [],
    )


def test_passthrough_sends_name_groups_and_extras_but_not_uid() -> None:
    sent = headers(gate=True, requested=False)
    assert sent == PASSTHROUGH
    assert not any(name == "Impersonate-Uid" for name, _ in sent)
    # The proxy sends these through a multidict: repeated headers must survive.
    assert CIMultiDict(sent).getall("impersonate-group") == ["devs", "system:authenticated"]


def test_static_mapping_impersonates_the_target_instead_of_the_caller() -> None:
    rule = static("s", Target("bot", ("ci", "deployers"), "42"), Source(group="devs"))
    assert headers(gate=True, requested=False, global_rules=[rule]) == [
        ("Impersonate-User", "bot"),
        ("Impersonate-Uid", "42"),
        ("Impersonate-Group", "ci"),
        ("Impersonate-Group", "deployers"),
    ]


def test_a_caller_without_a_name_is_refused() -> None:
    with pytest.raises(StatusError) as info:
        impersonation_headers(UserInfo(""), "c1", penetration_enabled=True, requested=False, cluster_rules=[], global_rules=[])
    assert (info.value.code, info.value.reason) == (403, "Forbidden")


@pytest.mark.parametrize(
    ("key", "escaped"),
    [
        ("scopes", "scopes"),
        ("acme.com/project", "acme.com%2Fproject"),
        ("100%", "100%25"),
        ("a b", "a%20b"),
        ("Mixed-Case_~", "Mixed-Case_~"),
        ("üser", "%C3%BCser"),
        ("k=v;x", "k%3Dv%3Bx"),
    ],
)
def test_extra_keys_are_percent_encoded_like_client_go(key: str, escaped: str) -> None:
    assert escape_extra_key(key) == escaped
    # What the kube-apiserver does with the header name: lower-case, then unescape.
    assert unquote(escaped.lower()) == key.lower()


# --- Per-cluster cache and isolation -------------------------------------------------------------

GOOD = doc("- name: admins\n  type: PrivilegedIdentityExchanger\n  source: {group: devs}")
BAD = doc("- name: broken\n  type: PrivilegedIdentityExchanger\n  source: {userPattern: '(oops'}")


def test_invalid_annotation_fails_only_its_own_cluster() -> None:
    clusters = ClusterImpersonation(penetration_enabled=True)
    bad, good, plain = gateway("bad", BAD), gateway("good", GOOD), gateway("plain", None)
    with pytest.raises(StatusError) as info:
        clusters.headers(bad, CALLER, requested=False)
    error = info.value
    assert error.code == 503 and error.reason == "ServiceUnavailable"
    assert (
        'cluster "bad"' in error.message and 'rule "broken"' in error.message and ANNOTATION_PROXY_CONFIGURATION in error.message
    )
    assert error.to_status()["details"] == {"name": "bad", "group": "cluster.core.oam.dev", "kind": "clustergateways"}
    assert clusters.headers(good, CALLER, requested=False) == []
    assert clusters.headers(plain, CALLER, requested=False) == PASSTHROUGH


def test_invalid_annotation_is_ignored_while_annotations_are_not_read() -> None:
    clusters = ClusterImpersonation(penetration_enabled=False)
    bad = gateway("bad", BAD)
    assert clusters.headers(bad, CALLER, requested=False) == []
    assert clusters.headers(bad, CALLER, requested=True) == PASSTHROUGH


def test_global_rules_apply_after_the_annotation() -> None:
    global_config = parse_proxy_configuration(
        doc("- name: map\n  type: StaticMappingIdentityExchanger\n  source: {user: alice}\n  target: {user: m}")
    )
    clusters = ClusterImpersonation(global_config, penetration_enabled=True)
    assert clusters.headers(gateway("good", GOOD), CALLER, requested=False) == []
    assert clusters.headers(gateway("plain", None), CALLER, requested=False) == [("Impersonate-User", "m")]


def test_annotation_is_parsed_once_per_resource_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = imp.parse_cluster_annotation

    def counting(text: str, cluster: str) -> imp.ProxyConfiguration:
        calls.append(cluster)
        return real(text, cluster)

    monkeypatch.setattr(imp, "parse_cluster_annotation", counting)
    clusters = ClusterImpersonation(penetration_enabled=True)
    for _ in range(3):
        with pytest.raises(StatusError) as info:
            clusters.for_cluster(gateway("c1", BAD, rv=1))
        assert (info.value.code, info.value.reason) == (503, "ServiceUnavailable")
    assert calls == ["c1"]
    # The Secret is fixed: a new resourceVersion is parsed again, and the cluster recovers.
    assert [r.name for r in clusters.for_cluster(gateway("c1", GOOD, rv=2)).rules] == ["admins"]
    clusters.for_cluster(gateway("c1", GOOD, rv=2))
    assert calls == ["c1", "c1"]
    clusters.forget("c1")
    clusters.for_cluster(gateway("c1", GOOD, rv=2))
    assert calls == ["c1", "c1", "c1"]


def test_a_static_mapping_without_target_user_never_falls_back_to_the_caller() -> None:
    # The reference's own "match-group" rule (groups only) is refused at parse time; built by hand, it fails closed.
    rule = static("groups-only", Target(groups=("projected",)), Source(user="alice"))
    with pytest.raises(StatusError) as info:
        headers(gate=True, requested=False, global_rules=[rule])
    assert (info.value.code, info.value.reason) == (500, "InternalError")


def test_rule_names_are_single_line() -> None:
    with pytest.raises(ProxyConfigError, match=r"^rules\[0\]: name must not contain control characters$"):
        parse_proxy_configuration(doc('- name: "a\\nb"\n  type: PrivilegedIdentityExchanger\n  source: {user: a}'))
