"""Kubernetes name and label validation (k8s.io/apimachinery/pkg/api/validate/content), with kube's messages.

Shared by the selector parser and by the sources that check object names.
"""

from __future__ import annotations

import re

_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_KEY_RE = re.compile(_KEY_FMT)
_ALNUM_ENDS = "and must start and end with an alphanumeric character"
_KEY_MSG = f"must consist of alphanumeric characters, '-', '_' or '.', {_ALNUM_ENDS}"
_VALUE_FMT = f"({_KEY_FMT})?"
_VALUE_RE = re.compile(_VALUE_FMT)
_VALUE_MSG = f"a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', {_ALNUM_ENDS}"
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _DNS_LABEL_FMT + r"(\." + _DNS_LABEL_FMT + ")*"
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN_FMT)
_SUBDOMAIN_MSG = f"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', {_ALNUM_ENDS}"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # content.RegexError, with its double space after each example's comma.
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # Go measures lengths in UTF-8 bytes


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Why `value` is not a lowercase RFC 1123 subdomain (a valid object name); [] when it is."""
    errs = ["must be no more than 253 bytes"] if _nbytes(value) > 253 else []
    if not _SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_SUBDOMAIN_MSG, _SUBDOMAIN_FMT, "example.com"))
    return errs


def label_key_errors(key: str) -> list[str]:
    """Why `key` is not a valid label key (`[DNS-subdomain/]name`); [] when it is."""
    parts = key.split("/")
    errs: list[str] = []
    if len(parts) > 2:
        return [
            "a valid label key "
            + _regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain_errors(parts[0]))
    if not name:
        errs.append("name part must be non-empty")
    elif _nbytes(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _KEY_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """Why `value` is not a valid label value (empty, or ≤ 63 of [-A-Za-z0-9_.]); [] when it is."""
    errs = ["must be no more than 63 bytes"] if _nbytes(value) > 63 else []
    if not _VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_VALUE_MSG, _VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs
