"""Low-level pieces shared by our list+watch loops on the hosting cluster (Secrets, the trust ConfigMap).

The loops themselves differ in what they deliver; what they share is how a failed request or
stream is classified (410 → relist, anything else → back off and resume) and described in
logs without ever including a response body (which may echo Secret data or tokens).
"""

from __future__ import annotations

import json

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException


class Expired(Exception):
    """410 Gone: the requested resourceVersion (or continue token) is no longer available; relist."""


class StreamError(Exception):
    """A failed request or a broken stream; the message is safe to log."""


class Inactive(TimeoutError):
    """Nothing arrived on a watch for the inactivity timeout."""


def failure_from_response(status: int, body: bytes) -> Exception:
    """An exception for a non-2xx answer, from its Status body; only code, reason and message are kept."""
    reason = message = ""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            reason, message = str(parsed.get("reason", "")), str(parsed.get("message", ""))
    except ValueError:
        pass
    if status == 410:
        return Expired(message or "Gone")
    return StreamError(f"HTTP {status} {reason}: {message}".rstrip(": "))


def describe(exc: BaseException) -> str:
    """A one-line description of a failure that is safe to log."""
    # ApiException's str() includes the response body: never log it.
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


RETRYABLE: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError, ApiException, StreamError)
