"""The grammar of a `fieldSelector` value, as k8s.io/apimachinery's fields.ParseSelector reads it.

Shared by the list handler (which then checks the fields it supports) and by authorization
(which names the object a list or watch asks for), so both read a selector the same way.
"""

from __future__ import annotations


class FieldSelectorSyntaxError(ValueError):
    """A field selector the kube-apiserver cannot parse; the message is kube's."""


def field_terms(text: str) -> list[tuple[str, str, str]]:
    """The `(field, operator, value)` terms of `text`, sorted as kube sorts them, values unescaped.

    Terms are `field=value`, `field==value` or `field!=value` joined by commas; `\\`, `,` and
    `=` inside values are backslash-escaped. The operator is `=` (for `=` and `==`) or `!=`.
    Empty terms are skipped and nothing is trimmed, as in kube.
    """
    terms: list[tuple[str, str, str]] = []
    for part in sorted(_split_terms(text)) if text else ():
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise FieldSelectorSyntaxError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, operator, value = split
        terms.append((field, operator, _unescape(value)))
    return terms


def _split_terms(text: str) -> list[str]:
    # Split on commas that are not backslash-escaped; the escapes stay in the terms.
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first operator splits (field names are never escaped); at each position "!=" and
    # "==" win over "=", so "a==b" does not leave "=b" as the value.
    for i, ch in enumerate(term):
        if ch == "!" and term.startswith("!=", i):
            return term[:i], "!=", term[i + 2 :]
        if ch == "=":
            return term[:i], "=", term[i + (2 if term.startswith("==", i) else 1) :]
    return None


def _unescape(value: str) -> str:
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise FieldSelectorSyntaxError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Go formats the rune with %v, which prints its code point ("61" for '=').
            raise FieldSelectorSyntaxError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise FieldSelectorSyntaxError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)
