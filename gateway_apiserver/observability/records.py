"""Log records that carry their own fields: how a writer attaches them and how formatters find them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

FIELDS_ATTR = "structured_fields"
MESSAGE_ATTR = "structured_message"


def structured(message: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """`extra=` for a record whose JSON line carries `fields` as top-level keys and `message` as its message.

    The text line shows the record's own message (`msg % args`) unchanged.
    """
    return {FIELDS_ATTR: dict(fields), MESSAGE_ATTR: message}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields attached to `record` (by `structured` or the request-context filter); empty if none."""
    fields = getattr(record, FIELDS_ATTR, None)
    return fields if isinstance(fields, dict) else {}


def structured_message(record: logging.LogRecord) -> str | None:
    """The JSON message of a `structured` record; None for any other record."""
    message = getattr(record, MESSAGE_ATTR, None)
    return message if isinstance(message, str) else None
