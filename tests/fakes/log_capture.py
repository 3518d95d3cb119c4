"""The gateway's log output as its process writes it (`--log-format`), captured for a test; the spellings of a leaked secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from gateway_apiserver.observability.access_log import ACCESS_LOGGER
from gateway_apiserver.observability.logs import log_handler

LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
TEXT_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*?)"
    r'(?: auditID="(?P<auditID>[^"]*)" cluster="(?P<cluster>[^"]*)" user="(?P<user>[^"]*)")?$'
)
JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@contextmanager
def captured_log(log_format: str) -> Iterator[io.StringIO]:
    """Every record of every logger, DEBUG and up, formatted by the handler the command installs, into a buffer."""
    stream = io.StringIO()
    handler = log_handler(log_format, stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def leaked_forms(secret: str) -> list[str]:
    """The spellings under which `secret` could reach a log line: as is, percent-encoded, JSON-escaped,
    Python-repr'd, base64 at each of the three byte alignments it may have inside a longer value, and each
    run of 8 or more characters no encoding changes (so a partly encoded copy, e.g. a query string, is found too)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    forms.update(re.findall(r"[A-Za-z0-9_.~-]{8,}", secret))
    for offset in range(3):  # the secret's first byte at this position of a 3-byte group
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Only the characters whose 6 bits all come from the secret's bytes, whatever surrounds it.
        kept = [i for i in range(len(encoded)) if 6 * i // 8 >= offset and (6 * i + 5) // 8 < offset + len(raw)]
        forms.add(encoded[kept[0] : kept[-1] + 1])
    return sorted(form for form in forms if len(form) >= 8)


def parse_json_lines(output: str) -> list[dict[str, Any]]:
    """Each line as JSON, checked for the four fields every line has."""
    lines = [json.loads(line) for line in output.splitlines()]
    for line in lines:
        assert JSON_TIME.match(line["time"]) and line["level"] in LEVELS, line
        assert isinstance(line["logger"], str) and isinstance(line["message"], str), line
    return lines


def parse_text_lines(output: str) -> list[dict[str, Any]]:
    """Each line split into its fields (request fields only where the line has them); no line may fail to parse.

    An access-log line's message is its fields as compact JSON: they are added to the line's."""
    lines = []
    for line in output.splitlines():
        match = TEXT_LINE.match(line)
        assert match is not None and match["level"] in LEVELS, line
        fields = {key: value for key, value in match.groupdict().items() if value is not None}
        if fields["logger"] == ACCESS_LOGGER:
            fields |= json.loads(fields["message"])
        lines.append(fields)
    return lines


PARSERS = {"json": parse_json_lines, "text": parse_text_lines}
