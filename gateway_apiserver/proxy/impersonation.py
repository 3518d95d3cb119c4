"""Impersonation on proxied requests, and the identity-exchange rules that can replace it.

Compatible with cluster-gateway (`clustergateway_proxy_configuration.go` and the proxy handler):

* Impersonation happens when the `ClientIdentityPenetration` gate is on, or when the request
  asked for it with `?impersonate=true`. Otherwise the member sees the gateway's own credential.
* When it happens, the rules are tried in order, per-cluster annotation first, then the global
  `--cluster-gateway-proxy-config` file; the first rule whose `source` matches wins:
  `PrivilegedIdentityExchanger` sends no impersonation (the gateway's credential),
  `StaticMappingIdentityExchanger` impersonates its `target`; no match impersonates the caller
  (user, groups and extras, but not the uid, as the reference does).
* Annotation rules are pinned to their own cluster, and are read only with the gate on (the
  reference parses the annotation only then; with the gate off, `?impersonate=true` sees the
  global rules alone).

Where the reference is unsafe, we differ on purpose (each is marked "Reference:" below):
rules are validated strictly instead of ignored or panicking; a bad annotation fails closed
for its own cluster (503) instead of silently dropping its rules; an invalid regexp is an
error instead of a pattern that matches everything.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from re import _parser as _sre_parser  # type: ignore[attr-defined]
from typing import Any

import yaml

from ..base.status import GROUP, RESOURCE, StatusError
from ..config import ConfigError
from ..registry.model import ANNOTATION_PROXY_CONFIGURATION, ClusterGateway
from ..security.identity import UserInfo

log = logging.getLogger(__name__)

API_VERSION = "cluster.core.oam.dev/v1alpha1"
KIND = "ClusterGatewayProxyConfiguration"
IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_UID = "Impersonate-Uid"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_EXTRA_PREFIX = "Impersonate-Extra-"

Headers = list[tuple[str, str]]


class ExchangerType(enum.StrEnum):
    """The identity exchangers this gateway implements."""

    PRIVILEGED = "PrivilegedIdentityExchanger"
    STATIC_MAPPING = "StaticMappingIdentityExchanger"


class ProxyConfigError(ConfigError):
    """An invalid ClusterGatewayProxyConfiguration; the message is one line and names the rule."""


@dataclass(frozen=True, slots=True)
class Source:
    """Who a rule applies to: every field that is set must match (a logical AND)."""

    user: str | None = None
    group: str | None = None
    uid: str | None = None
    cluster: str | None = None
    user_pattern: re.Pattern[str] | None = None
    group_pattern: re.Pattern[str] | None = None
    cluster_pattern: re.Pattern[str] | None = None

    def matches(self, user: UserInfo, cluster: str) -> bool:
        """Whether `user` calling `cluster` matches, as the reference's `matchIdentity`.

        Exact fields compare whole strings (`group`: any of the user's groups); patterns are
        unanchored searches, like Go's `regexp.Match` (`groupPattern`: any group matches).
        """
        if self.user is not None and user.name != self.user:
            return False
        if self.group is not None and self.group not in user.groups:
            return False
        if self.uid is not None and user.uid != self.uid:
            return False
        if self.cluster is not None and cluster != self.cluster:
            return False
        if self.user_pattern is not None and self.user_pattern.search(user.name) is None:
            return False
        if self.group_pattern is not None and not any(self.group_pattern.search(g) for g in user.groups):
            return False
        return self.cluster_pattern is None or self.cluster_pattern.search(cluster) is not None


@dataclass(frozen=True, slots=True)
class Target:
    """The identity a StaticMappingIdentityExchanger impersonates instead of the caller."""

    user: str = ""
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One `spec.clientIdentityExchanger.rules[]` entry; `origin` says where it came from, for logs."""

    name: str
    type: ExchangerType
    source: Source
    target: Target | None = None
    origin: str = ""


@dataclass(frozen=True, slots=True)
class ProxyConfiguration:
    """A parsed ClusterGatewayProxyConfiguration: its rules, in order."""

    rules: tuple[Rule, ...] = ()


EMPTY = ProxyConfiguration()


class Outcome(enum.StrEnum):
    """What identity exchange decided."""

    PRIVILEGED = "Privileged"  # no impersonation: the gateway's own credential
    STATIC_MAPPING = "StaticMapping"  # impersonate the rule's target
    NO_MATCH = "NoMatch"  # no rule matched: impersonate the caller


@dataclass(frozen=True, slots=True)
class Exchange:
    """The result of identity exchange: the outcome and the rule that decided it (if any)."""

    outcome: Outcome
    rule: Rule | None = None


NO_MATCH = Exchange(Outcome.NO_MATCH)

# ---------------------------------------------------------------------------------------------
# Parsing and validation.

_TOP_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})
_SOURCE_FIELDS = {k: k for k in ("user", "group", "uid", "cluster")} | {
    f"{k}Pattern": f"{k}_pattern" for k in ("user", "group", "cluster")
}
_RULE_KEYS = frozenset({"name", "type", "source", "target"})
_TARGET_KEYS = frozenset({"user", "groups", "uid"})
# Go's RE2 rejects these; Python would accept them (and backtrack on them), so we reject too.
_NOT_RE2 = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditionals",
    "ASSERT": "lookahead/lookbehind",
    "ASSERT_NOT": "lookahead/lookbehind",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Invalid(Exception):
    """A validation failure; the loader adds where it happened."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    # Unknown keys are errors: a typo such as `userpatern` would otherwise widen a rule silently.
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        raise _Invalid(f"{where}: unknown field(s) {', '.join(unknown)}")


def _mapping(obj: Any, where: str) -> Mapping[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise _Invalid(f"{where} must be a mapping")
    return obj


def _string(obj: Any, where: str) -> str:
    # YAML reads `uid: 12345` as a number; Go's decoder rejects that too, so ask for quotes.
    if not isinstance(obj, str) or not obj:
        raise _Invalid(f"{where} must be a non-empty string (quote numbers)")
    if _CONTROL.search(obj):
        raise _Invalid(f"{where} must not contain control characters")
    return obj


def _check_re2(tree: Any, where: str) -> None:
    for op, av in tree.data:
        if op.name in _NOT_RE2:
            raise _Invalid(f"{where}: {_NOT_RE2[op.name]} are not supported (patterns use Go's RE2 syntax)")
        if op.name == "SUBPATTERN" and (av[1] | av[2]) & re.VERBOSE:
            raise _Invalid(f"{where}: the (?x) flag is not supported (patterns use Go's RE2 syntax)")
        for child in av if isinstance(av, tuple | list) else (av,):
            if isinstance(child, _sre_parser.SubPattern):
                _check_re2(child, where)
            elif isinstance(child, list):
                for item in child:
                    if isinstance(item, _sre_parser.SubPattern):
                        _check_re2(item, where)


def compile_pattern(pattern: str, where: str = "pattern") -> re.Pattern[str]:
    """Compile a Go (RE2) regexp for an unanchored search, or raise ProxyConfigError.

    `re.ASCII` makes `\\d`, `\\w`, `\\s` and `\\b` ASCII-only, as in Go. Constructs that RE2
    rejects (backreferences, lookaround, atomic groups, possessive quantifiers) are rejected,
    and so are Python's nested-set warnings (`[[:alpha:]]` means something else in Python).
    Reference: an invalid pattern makes `denyQuery` return false, so the field matches every
    identity; here it is an error. Residual risk: Python's engine backtracks, so a pattern
    such as `(a+)+$` can be slow on long names; patterns come from operators and Secret
    editors only, never from callers.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tree = _sre_parser.parse(pattern, 0)
        _check_re2(tree, where)
        if tree.state.flags & re.VERBOSE:
            raise _Invalid(f"{where}: the (?x) flag is not supported (patterns use Go's RE2 syntax)")
        return re.compile(pattern, re.ASCII)
    except _Invalid as e:
        raise ProxyConfigError(str(e)) from None
    except (re.error, FutureWarning, DeprecationWarning, RecursionError) as e:
        raise ProxyConfigError(f"{where}: invalid regular expression {pattern!r}: {_one_line(str(e))}") from None


def _source(obj: Any, where: str) -> Source:
    # Reference: a missing source never matches, and `source: {}` matches everyone everywhere
    # (in an annotation, a missing source panics the Secret's conversion). Both are errors here.
    fields = _mapping(obj, where)
    _keys(fields, frozenset(_SOURCE_FIELDS), where)
    values: dict[str, Any] = {}
    for key, attr in _SOURCE_FIELDS.items():
        if key in fields:
            text = _string(fields[key], f"{where}.{key}")
            values[attr] = compile_pattern(text, f"{where}.{key}") if key.endswith("Pattern") else text
    if not values:
        raise _Invalid(f'{where} is empty, which would match everyone: say so explicitly, e.g. userPattern: ".*"')
    return Source(**values)


def _target(obj: Any, where: str) -> Target:
    fields = _mapping(obj, where)
    _keys(fields, _TARGET_KEYS, where)
    # Reference: a target without `user` sends an empty Impersonate-User, and the member answers
    # 500 ("requested ... without impersonating a user") to every request; reject it up front.
    if "user" not in fields:
        raise _Invalid(f"{where}.user is required: Kubernetes cannot impersonate groups or a uid without a user")
    groups = [] if fields.get("groups") is None else fields["groups"]
    if not isinstance(groups, list):
        raise _Invalid(f"{where}.groups must be a list")
    uid = _string(fields["uid"], f"{where}.uid") if "uid" in fields else ""
    return Target(
        _string(fields["user"], f"{where}.user"),
        tuple(_string(g, f"{where}.groups[{i}]") for i, g in enumerate(groups)),
        uid,
    )


def _rule(obj: Any, index: int, origin: str) -> Rule:
    fields = _mapping(obj, f"rules[{index}]")
    name = _string(fields.get("name"), f"rules[{index}]: name")
    where = f'rule "{name}"'
    kind = fields.get("type")
    if kind == "ExternalIdentityExchanger":
        # Reference: matches, returns an error, then dereferences a nil config (a panic). Said
        # before the key check: such a rule carries `url`, a key no other type has.
        raise _Invalid(f"{where}: type ExternalIdentityExchanger is not implemented")
    _keys(fields, _RULE_KEYS, where)
    if not isinstance(kind, str) or kind not in {t.value for t in ExchangerType}:
        raise _Invalid(f"{where}: unknown type {kind!r} (want {' or '.join(ExchangerType)})")
    rtype = ExchangerType(kind)
    source = _source(fields.get("source"), f"{where}: source")
    target: Target | None = None
    if rtype is ExchangerType.STATIC_MAPPING:
        if fields.get("target") is None:
            raise _Invalid(f"{where}: type {rtype} requires a target")
        target = _target(fields["target"], f"{where}: target")
    elif "target" in fields:
        # The reference ignores it; here it most likely means the type is wrong.
        raise _Invalid(f"{where}: type {rtype} takes no target")
    return Rule(name, rtype, source, target, origin)


def _parse(text: str, origin: str) -> ProxyConfiguration:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _Invalid(f"invalid YAML: {_one_line(str(e))}") from None
    top = _mapping(doc, "the document")
    _keys(top, _TOP_KEYS, "the document")
    # Absent apiVersion/kind are accepted: the reference never checks them.
    if top.get("apiVersion", API_VERSION) != API_VERSION:
        raise _Invalid(f"apiVersion must be {API_VERSION}, not {top['apiVersion']!r}")
    if top.get("kind", KIND) != KIND:
        raise _Invalid(f"kind must be {KIND}, not {top['kind']!r}")
    spec = _mapping(top.get("spec"), "spec")
    _keys(spec, frozenset({"clientIdentityExchanger"}), "spec")
    exchanger = _mapping(spec.get("clientIdentityExchanger"), "spec.clientIdentityExchanger")
    _keys(exchanger, frozenset({"rules"}), "spec.clientIdentityExchanger")
    raw_rules = [] if exchanger.get("rules") is None else exchanger["rules"]
    if not isinstance(raw_rules, list):
        raise _Invalid("spec.clientIdentityExchanger.rules must be a list")
    rules = tuple(_rule(r, i, origin) for i, r in enumerate(raw_rules))
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise _Invalid(f'rule "{rule.name}": duplicate rule name')
        seen.add(rule.name)
    return ProxyConfiguration(rules)


def parse_proxy_configuration(text: str, origin: str = "") -> ProxyConfiguration:
    """Parse and strictly validate a ClusterGatewayProxyConfiguration document.

    Raises ProxyConfigError with a one-line message naming the rule at fault.
    """
    try:
        return _parse(text, origin)
    except (_Invalid, ProxyConfigError) as e:
        raise ProxyConfigError(str(e)) from None


def load_proxy_config_file(path: str | os.PathLike[str]) -> ProxyConfiguration:
    """Load `--cluster-gateway-proxy-config`; any problem raises ProxyConfigError (fail at startup)."""
    flag = "--cluster-gateway-proxy-config"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ProxyConfigError(f"{flag} {os.fspath(path)}: {_one_line(reason)}") from None
    if not text.strip():
        raise ProxyConfigError(f"{flag} {os.fspath(path)}: the file is empty")
    try:
        return parse_proxy_configuration(text, origin=flag)
    except ProxyConfigError as e:
        raise ProxyConfigError(f"{flag} {os.fspath(path)}: {e}") from None


def parse_cluster_annotation(text: str, cluster: str) -> ProxyConfiguration:
    """Parse a cluster's proxy-configuration annotation, pinning every rule to that cluster.

    An empty annotation has no rules. Reference: `rule.Source.Cluster` is overwritten with the
    cluster name, so `cluster: other` silently applies here; here a different `cluster` is an
    error. `clusterPattern` is kept, and must match this cluster as well.
    """
    if not text.strip():
        return EMPTY
    config = parse_proxy_configuration(text, origin=f"annotation of cluster {cluster}")
    pinned = []
    for rule in config.rules:
        if rule.source.cluster not in (None, cluster):
            raise ProxyConfigError(
                f'rule "{rule.name}": source.cluster {rule.source.cluster!r} is not this cluster; '
                "annotation rules apply to their own cluster only"
            )
        pinned.append(replace(rule, source=replace(rule.source, cluster=cluster)))
    return ProxyConfiguration(tuple(pinned))


# ---------------------------------------------------------------------------------------------
# Exchange and headers.


def exchange(user: UserInfo, cluster: str, rules: Iterable[Rule]) -> Exchange:
    """The first rule (in order) whose source matches `user` calling `cluster` decides."""
    for rule in rules:
        if rule.source.matches(user, cluster):
            outcome = Outcome.PRIVILEGED if rule.type is ExchangerType.PRIVILEGED else Outcome.STATIC_MAPPING
            return Exchange(outcome, rule)
    return NO_MATCH


_HEADER_KEY_LEGAL = frozenset(b"!#$&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def escape_extra_key(key: str) -> str:
    """Percent-encode an extra key for `Impersonate-Extra-<key>`, as client-go's `headerKeyEscape`.

    Every UTF-8 byte that is not an RFC 7230 token character, and `%` itself, becomes `%XX`;
    the kube-apiserver lower-cases the key and unescapes it.
    """
    return "".join(chr(b) if b in _HEADER_KEY_LEGAL else f"%{b:02X}" for b in key.encode())


def identity_headers(
    user: str, groups: Sequence[str] = (), uid: str = "", extra: Mapping[str, Sequence[str]] | None = None
) -> Headers:
    """Impersonation headers for one identity, in client-go's order (groups and extras repeat)."""
    headers: Headers = [(IMPERSONATE_USER, user)]
    if uid:
        headers.append((IMPERSONATE_UID, uid))
    headers.extend((IMPERSONATE_GROUP, group) for group in groups)
    for key, values in (extra or {}).items():
        headers.extend((IMPERSONATE_EXTRA_PREFIX + escape_extra_key(key), value) for value in values)
    return headers


def exchange_headers(user: UserInfo, result: Exchange) -> Headers:
    """The impersonation headers that an exchange result calls for (empty when privileged)."""
    if result.outcome is Outcome.PRIVILEGED:
        return []
    if result.outcome is Outcome.STATIC_MAPPING:
        target = result.rule.target if result.rule is not None else None
        if target is None or not target.user:  # parsing forbids it; never fall back to the caller
            raise StatusError(500, "identity exchange: a static mapping rule has no target user")
        return identity_headers(target.user, target.groups, target.uid)
    if not user.name:
        # Impersonating nobody would fall back to the gateway's credential: fail closed.
        raise StatusError(403, "cannot impersonate a caller without a user name")
    # As the reference: the caller's name, groups and extras, but not its uid (sending
    # Impersonate-Uid would need an extra `impersonate uids` RBAC grant on every member).
    return identity_headers(user.name, user.groups, "", user.extra)


def impersonation_headers(
    user: UserInfo,
    cluster: str,
    *,
    penetration_enabled: bool,
    requested: bool,
    cluster_rules: Sequence[Rule],
    global_rules: Sequence[Rule],
) -> Headers:
    """The impersonation headers for one proxied request, as (name, value) pairs to add.

    Empty when there is no impersonation: neither the gate nor `?impersonate=true` asked for
    it (Reference, unsafe but compatible: every caller allowed to proxy then acts with the
    gateway's own credential; enable ClientIdentityPenetration to prevent that), or a
    Privileged rule matched. `cluster_rules` (the annotation's) count only with the gate on.
    """
    if not (penetration_enabled or requested):
        return []
    rules = (*cluster_rules, *global_rules) if penetration_enabled else tuple(global_rules)
    return exchange_headers(user, exchange(user, cluster, rules))


# ---------------------------------------------------------------------------------------------
# Per-cluster annotations, parsed once per Secret version.


@dataclass(frozen=True, slots=True)
class _Parsed:
    resource_version: str
    text: str | None
    config: ProxyConfiguration
    error: str | None


class ClusterImpersonation:
    """Impersonation for every cluster: the global rules, the gate, and cached annotations.

    A bad annotation fails closed for its own cluster only: `for_cluster` raises a 503
    StatusError naming the cluster and the rule, and other clusters are unaffected. 503, not
    500: like an unusable credential, it is that cluster's configuration (fixed by editing its
    Secret), not a gateway bug, and the cluster is unavailable through the gateway until then.
    Reference: a bad annotation is ignored, so the cluster's rules silently stop applying.
    """

    def __init__(self, global_config: ProxyConfiguration = EMPTY, *, penetration_enabled: bool = False) -> None:
        self.global_config = global_config
        self.penetration_enabled = penetration_enabled
        self._cache: dict[str, _Parsed] = {}

    def for_cluster(self, gw: ClusterGateway) -> ProxyConfiguration:
        """The annotation's rules for `gw`, parsed once per (name, resourceVersion)."""
        parsed = self._cache.get(gw.name)
        if parsed is None or parsed.resource_version != gw.resource_version or parsed.text != gw.proxy_configuration:
            parsed = self._parse(gw)
            self._cache[gw.name] = parsed
        if parsed.error is not None:
            raise StatusError(
                503,
                f'cluster "{gw.name}" has an invalid {ANNOTATION_PROXY_CONFIGURATION} annotation: {parsed.error}',
                details={"name": gw.name, "group": GROUP, "kind": RESOURCE},
            )
        return parsed.config

    @staticmethod
    def _parse(gw: ClusterGateway) -> _Parsed:
        text = gw.proxy_configuration
        if text is None:
            return _Parsed(gw.resource_version, text, EMPTY, None)
        try:
            return _Parsed(gw.resource_version, text, parse_cluster_annotation(text, gw.name), None)
        except ProxyConfigError as e:
            log.warning("cluster %s: invalid %s annotation: %s", gw.name, ANNOTATION_PROXY_CONFIGURATION, e)
            return _Parsed(gw.resource_version, text, EMPTY, str(e))

    def forget(self, name: str) -> None:
        """Drop a deleted cluster's cached annotation."""
        self._cache.pop(name, None)

    def headers(self, gw: ClusterGateway, user: UserInfo, *, requested: bool) -> Headers:
        """The impersonation headers for `user` proxying to `gw` (see `impersonation_headers`).

        Raises StatusError(503) when the gate is on and `gw`'s annotation is invalid.
        """
        cluster_rules = self.for_cluster(gw).rules if self.penetration_enabled else ()
        return impersonation_headers(
            user,
            gw.name,
            penetration_enabled=self.penetration_enabled,
            requested=requested,
            cluster_rules=cluster_rules,
            global_rules=self.global_config.rules,
        )
