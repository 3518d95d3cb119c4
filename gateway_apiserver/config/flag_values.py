"""Flag values parsed the way the reference's Go flags (spf13/pflag) parse them: booleans, durations, lists."""

from __future__ import annotations

import argparse
import re

# Go's strconv.ParseBool.
TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE_WORDS = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_DURATION = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_bool(value: str) -> bool:
    """Parse a boolean the way Go flags do."""
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def parse_duration(text: str) -> float:
    """A Go duration (`10s`, `1m30s`, `500ms`, `-5s`, `0`) in seconds; the sign is kept for the range checks."""
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (want e.g. 10s, 1m)")
    return sign * sum(float(n) * _DURATION[u] for n, u in parts)


def parse_csv(text: str) -> tuple[str, ...]:
    """A pflag string slice: comma-separated, blanks trimmed and dropped."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def format_seconds(seconds: float) -> str:
    """Seconds as a duration in messages (`10s`)."""
    return f"{seconds:g}s"
