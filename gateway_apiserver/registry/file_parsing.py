"""Reading the files of standalone mode: change stamps, YAML as Kubernetes reads it, and the two
ways a file or part of it can be unusable. Nothing here logs Secret data."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

Stamp = tuple[int, int, int]  # (mtime_ns, size, inode); the inode catches symlink swaps

_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when built


class YamlLoader(_BASE_LOADER):  # type: ignore[misc]
    """Safe YAML that keeps timestamps as strings, as Kubernetes' YAML-to-JSON decoding does."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BASE_LOADER.yaml_implicit_resolvers.items()
}


class Unusable(Exception):
    """One manifest or context is unusable; the message says why (never with Secret data)."""


class Unreadable(Exception):
    """A whole file cannot be read or parsed right now (perhaps mid-save); the message says why."""

    def __init__(self, reason: str, *, quiet: bool = False) -> None:
        super().__init__(reason)
        self.quiet = quiet  # nothing worth a warning unless it had content before


def file_stamp(path: Path) -> Stamp | None:
    """The change stamp of `path`, or None if it cannot be stat()ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def b64(raw: bytes) -> str:
    """Base64, as Secret data holds values."""
    return base64.b64encode(raw).decode()


def yaml_error(exc: yaml.YAMLError) -> str:
    """One line naming a YAML error and where it is, without quoting the text."""
    # One line, without the source snippet that str(exc) quotes: it could be Secret data.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        return f"{what or 'invalid YAML'}{where}"
    return type(exc).__name__
