"""Label and field selectors, parsed and matched exactly as the kube-apiserver does.

The label parser ports k8s.io/apimachinery/pkg/labels (lexer, recursive-descent parser,
key/value validation and error texts); the field parser ports k8s.io/apimachinery/pkg/fields
(comma split with backslash escapes, `=`, `==`, `!=`).

Parsing happens once per request, but matching runs for every object of a list and every
watch event, so each requirement is compiled at parse time into a closure over a constant or
a frozenset, and `matches` is a plain loop over those closures.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..base.field_selectors import FieldSelectorSyntaxError, field_terms
from ..base.validation import label_key_errors, label_value_errors

Check = Callable[[Mapping[str, str]], bool]


class SelectorError(ValueError):
    """A selector that the kube-apiserver would reject; the message is kube's."""


class Operator(enum.StrEnum):
    """Selector operators, spelled as k8s.io/apimachinery/pkg/selection spells them."""

    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_INT64_RE = re.compile(r"[+-]?[0-9]+")


_GO_ESCAPES = {
    **{'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f"},
    **{"\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"},
}


def _go_quote(text: str) -> str:
    """Go's %q (strconv.Quote), as field errors print their bad value."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch == " " or (ch.isprintable() and not ch.isspace()):
            out.append(ch)
        else:
            code = ord(ch)
            width = "x02" if code < 0x80 else "u04" if code < 0x10000 else "U08"
            out.append(f"\\{width[0]}{code:{width[1:]}x}")
    return '"' + "".join(out) + '"'


def _invalid(path: str, value: str, details: list[str]) -> str:
    # field.Invalid(path, value, strings.Join(details, "; ")).Error()
    return f"{path}: Invalid value: {_go_quote(value)}: {'; '.join(details)}"


def _parse_int64(text: str) -> int | None:
    # strconv.ParseInt(text, 10, 64): optional sign, ASCII digits, within int64.
    if not _INT64_RE.fullmatch(text):
        return None
    if len(text.lstrip("+-").lstrip("0")) > 19:
        return None  # beyond int64 anyway; and int() raises past 4300 digits
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


# --- label selectors -------------------------------------------------------------------------


def _compile(key: str, op: Operator, values: tuple[str, ...]) -> Check:
    """One requirement as a closure; a missing key behaves as in kube's Requirement.Matches."""
    if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS) or (op is Operator.IN and len(values) == 1):
        wanted = values[0]
        return lambda labels: labels.get(key) == wanted
    if op is Operator.NOT_EQUALS or (op is Operator.NOT_IN and len(values) == 1):
        unwanted = values[0]
        return lambda labels: labels.get(key) != unwanted  # a missing key matches
    if op is Operator.IN:
        allowed = frozenset(values)
        return lambda labels: labels.get(key) in allowed
    if op is Operator.NOT_IN:
        denied = frozenset(values)
        return lambda labels: labels.get(key) not in denied  # None is never in it: missing matches
    if op is Operator.EXISTS:
        return lambda labels: key in labels
    if op is Operator.DOES_NOT_EXIST:
        return lambda labels: key not in labels
    bound = _parse_int64(values[0])
    greater = op is Operator.GREATER_THAN

    def compare(labels: Mapping[str, str]) -> bool:
        raw = labels.get(key)
        number = None if raw is None else _parse_int64(raw)  # non-integers never match
        if number is None or bound is None:
            return False
        return number > bound if greater else number < bound

    return compare


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `key op values` term of a label selector; `values` are sorted and distinct."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        """Kube's canonical text: `!k`, `k`, `k=v`, `k in (a,b)`, `k>5`."""
        op, joined = self.operator, ",".join(self.values)
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        if op is Operator.EXISTS:
            return self.key
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({joined})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{joined}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of label requirements, sorted by key as kube sorts them."""

    requirements: tuple[Requirement, ...] = ()
    _checks: tuple[Check, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = tuple(_compile(r.key, r.operator, r.values) for r in self.requirements)
        object.__setattr__(self, "_checks", checks)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected. The empty selector matches all."""
        for check in self._checks:  # noqa: SIM110 - a loop beats all(<genexpr>) on the hot path
            if not check(labels):
                return False
        return True

    def exact_value(self, key: str) -> str | None:
        """The one value the selector requires for `key` (`=`, `==`, one-value `in`), else None."""
        for req in self.requirements:
            if req.key == key:
                exact = req.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                return req.values[0] if exact and len(req.values) == 1 else None
        return None

    def __str__(self) -> str:
        """The canonical selector string, as kube's Selector.String()."""
        return ",".join(str(r) for r in self.requirements)


# Token kinds are the keyword/symbol literals themselves, plus these two; neither can be an
# identifier's literal, since "<" ends an identifier.
_IDENT, _EOS = "<ident>", "<eos>"
_KEYWORDS = frozenset({"(", ")", ",", "!", "=", "==", "!=", ">", "<", "in", "notin"})
_OPERATORS = {
    "in": Operator.IN,
    "notin": Operator.NOT_IN,
    "=": Operator.EQUALS,
    "==": Operator.DOUBLE_EQUALS,
    "!=": Operator.NOT_EQUALS,
    ">": Operator.GREATER_THAN,
    "<": Operator.LESS_THAN,
}
_EXPECTED_OPERATORS = ", ".join(op.value for op in _OPERATORS.values())  # kube's order
_WHITESPACE = frozenset(" \t\r\n")
_SPECIAL = frozenset("=!(),><")
_NUL = "\x00"  # Go's lexer reads byte 0 at the end of input, so a NUL acts as one
_ENDS_IDENT = _SPECIAL | _WHITESPACE | {_NUL}


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokenise like labels.Lexer: identifiers run until whitespace or a special symbol."""
    items: list[tuple[str, str]] = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= size or text[pos] == _NUL:
            items.append((_EOS, ""))
            return items
        start, pos = pos, pos + 1
        if text[start] in _SPECIAL:
            if pos < size and text[start : pos + 1] in _KEYWORDS:
                pos += 1  # "==" or "!="
        else:
            while pos < size and text[pos] not in _ENDS_IDENT:
                pos += 1
        literal = text[start:pos]
        if pos < size and text[pos] == _NUL:
            pos += 1  # Go's lexer swallows a NUL that ends a token, then carries on after it
        items.append((literal if literal in _KEYWORDS else _IDENT, literal))


class _RequirementError(Exception):
    pass


class _LabelParser:
    """labels.Parser: lookahead/consume over the scanned tokens, with kube's error texts."""

    def __init__(self, text: str) -> None:
        self._items = _lex(text)
        self._pos = 0

    def _peek(self, values: bool = True) -> tuple[str, str]:
        kind, literal = self._items[min(self._pos, len(self._items) - 1)]
        if values and kind in ("in", "notin"):
            kind = _IDENT  # where a key or value is due, `in` and `notin` are plain words
        return kind, literal

    def _next(self, values: bool = True) -> tuple[str, str]:
        item = self._peek(values)
        self._pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self._peek()
            if kind == _EOS:
                return requirements
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except _RequirementError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            kind, literal = self._next()
            if kind == _EOS:
                return requirements
            if kind != ",":
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self._peek()
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        op: Operator | None = None
        kind, key = self._next()
        if kind == "!":
            op = Operator.DOES_NOT_EXIST
            kind, key = self._next()
        if kind != _IDENT:
            raise _RequirementError(f"found '{key}', expected: identifier")
        if errs := label_key_errors(key):
            raise _RequirementError(_invalid("<nil>", key, errs))  # kube's parser has a nil field path
        if op is None and self._peek()[0] in (_EOS, ","):
            op = Operator.EXISTS
        if op is not None:
            return Requirement(key, op)
        kind, literal = self._next(values=False)
        if kind not in _OPERATORS:
            raise _RequirementError(f"found '{literal}', expected: {_EXPECTED_OPERATORS}")
        op = _OPERATORS[kind]
        values = self._set_values() if op in (Operator.IN, Operator.NOT_IN) else self._exact_value()
        return _new_requirement(key, op, tuple(sorted(values)))

    def _set_values(self) -> set[str]:
        kind, literal = self._next()
        if kind != "(":
            raise _RequirementError(f"found '{literal}' expected: '('")
        kind, literal = self._peek()
        if kind == ")":  # "()" is the set holding the empty value
            self._next()
            return {""}
        if kind not in (_IDENT, ","):
            raise _RequirementError(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:  # comma-separated, possibly empty items; an empty item is ""
            kind, literal = self._next()
            if kind == _IDENT:
                values.add(literal)
                kind, literal = self._peek()
                if kind == ")":
                    break
                if kind != ",":
                    raise _RequirementError(f"found '{literal}', expected: ',' or ')'")
            elif kind == ",":
                ahead = self._peek()[0]
                if not values or ahead in (",", ")"):
                    values.add("")
                if ahead == ")":
                    break
            else:
                raise _RequirementError(f"found '{literal}', expected: ',', or identifier")
        self._next()  # the ")"
        return values

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_EOS, ","):
            return {""}  # "k=" selects the empty value
        kind, literal = self._next()
        if kind != _IDENT:
            raise _RequirementError(f"found '{literal}', expected: identifier")
        return {literal}


_NOT_AN_INTEGER = "for 'Gt', 'Lt' operators, the value must be an integer"


def _new_requirement(key: str, op: Operator, values: tuple[str, ...]) -> Requirement:
    """labels.NewRequirement's value checks (the parser validated the key already)."""
    errors: list[str] = []
    if op in (Operator.GREATER_THAN, Operator.LESS_THAN):
        for i, value in enumerate(values):
            if _parse_int64(value) is None:
                errors.append(_invalid(f"values[{i}]", value, [_NOT_AN_INTEGER]))
    for i, value in enumerate(values):
        if errs := label_value_errors(value):
            errors.append(_invalid(f"values[{i}][{key}]", value, errs))
    if errors:
        # utilerrors.Aggregate: one message alone, several deduplicated inside [a, b].
        unique = list(dict.fromkeys(errors))
        raise _RequirementError(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")
    return Requirement(key, op, values)


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a `labelSelector` query value as labels.Parse does; SelectorError on bad input.

    Requirements are joined by commas, each `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
    `k notin (a,b)`, `k>5` or `k<5`; whitespace between tokens is ignored.
    """
    requirements = _LabelParser(text).parse()
    requirements.sort(key=lambda r: r.key)
    return LabelSelector(tuple(requirements))


# --- field selectors -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """One `field=value` or `field!=value` term; `value` is unescaped."""

    field: str
    operator: Operator
    value: str

    def __str__(self) -> str:
        """The term with its value re-escaped, as kube prints it."""
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{'!=' if self.operator is Operator.NOT_EQUALS else '='}{escaped}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of field terms. A field the object lacks reads as "" (kube's Fields.Get)."""

    requirements: tuple[FieldRequirement, ...] = ()
    _terms: tuple[tuple[str, str, bool], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        terms = tuple((r.field, r.value, r.operator is Operator.NOT_EQUALS) for r in self.requirements)
        object.__setattr__(self, "_terms", terms)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether an object with these field values is selected."""
        for name, value, negate in self._terms:  # noqa: SIM110 - a loop beats all(<genexpr>)
            if (fields.get(name, "") == value) is negate:
                return False
        return True

    def exact_value(self, field_name: str) -> str | None:
        """The value the selector pins `field_name` to with `=` or `==`, else None.

        Lets a list go straight to one object by name; the caller must still apply
        `matches`, since other terms (e.g. `metadata.name!=x`) may exclude it.
        """
        for name, value, negate in self._terms:
            if name == field_name and not negate:
                return value
        return None

    def __str__(self) -> str:
        """The canonical selector string."""
        return ",".join(str(r) for r in self.requirements)


def parse_field_selector(text: str, supported: frozenset[str]) -> FieldSelector:
    """Parse a `fieldSelector` query value as fields.ParseSelector, then check the fields.

    Terms are `field=value`, `field==value` or `field!=value`, joined by commas; `\\`, `,`
    and `=` inside values are backslash-escaped. A field outside `supported` is rejected
    with kube's `field label not supported: <field>`. Nothing is trimmed, as in kube.
    """
    try:
        terms = field_terms(text)
    except FieldSelectorSyntaxError as exc:
        raise SelectorError(str(exc)) from None
    requirements = [
        FieldRequirement(label, Operator.NOT_EQUALS if op == "!=" else Operator.EQUALS, value) for label, op, value in terms
    ]
    for req in requirements:  # kube converts field labels only once the whole string parsed
        if req.field not in supported:
            raise SelectorError(f"field label not supported: {req.field}")
    return FieldSelector(tuple(requirements))
