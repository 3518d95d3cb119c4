"""What to answer a request aiohttp's HTTP parser rejected: a Status, never the parser's text.

The parser's messages quote the offending request bytes (a header line may hold a token), so
none of their text reaches the client or the log: each failure is recognised by its exception
class and llhttp's fixed error phrase, and answered with our own words.
"""

from __future__ import annotations

from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from ..base.status import INTERNAL_ERROR_MESSAGE, StatusError

HEADER_TOO_LARGE = "RequestHeaderFieldsTooLarge"
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS"


def _phrase(exc: BaseException) -> str:
    """llhttp's error phrase: the text before the quoted request bytes (lower-cased)."""
    message = getattr(exc, "message", "") or ""
    return str(message).split(":", 1)[0].lower() if isinstance(message, str) else ""


def parse_error_status(exc: BaseException | None, *, max_field_size: int, max_headers: int) -> StatusError:
    """The Status for a request the HTTP parser refused (`exc` as aiohttp hands it to handle_error)."""
    phrase = _phrase(exc) if exc is not None else ""
    if isinstance(exc, LineTooLong):
        return StatusError(
            431,
            f"request header fields too large: the request line or a header field is longer than {max_field_size} bytes",
            reason=HEADER_TOO_LARGE,
        )
    if isinstance(exc, BadHttpMessage) and "too many headers" in phrase:
        message = f"request header fields too large: the request has more than {max_headers} header fields"
        return StatusError(431, message, reason=HEADER_TOO_LARGE)
    if isinstance(exc, BadHttpMethod):
        return StatusError(
            405, f"the server does not allow this method on the requested resource: the method must be one of {METHODS}"
        )
    if isinstance(exc, InvalidURLError):
        where = "query" if "query" in phrase else "path"
        return StatusError(
            400,
            f"the request {where} is not a valid URL: it holds bytes that are not allowed "
            "(percent-encode non-ASCII and control characters)",
        )
    if isinstance(exc, BadStatusLine):
        return StatusError(400, "the request line is not valid HTTP/1.1 (method, target and HTTP version)")
    if isinstance(exc, InvalidHeader):
        return StatusError(400, "a request header value holds a control character")
    if "content-length" in phrase and "transfer-encoding" in phrase:
        return StatusError(400, "the request has both Content-Length and Transfer-Encoding headers; send only one")
    if "content-length" in phrase and "duplicate" in phrase:
        return StatusError(400, "the request has more than one Content-Length header")
    if "duplicate" in phrase:
        return StatusError(400, "the request repeats a header that may appear only once")
    if "host" in phrase and "missing" in phrase:
        return StatusError(400, "the request has no Host header")
    if isinstance(exc, TransferEncodingError) or "chunk" in phrase or "transfer-encoding" in phrase:
        return StatusError(400, "the request body's chunked encoding is malformed")
    if "content-length" in phrase:
        return StatusError(400, "the request's Content-Length header is not a valid number")
    if "header" in phrase:
        return StatusError(400, "a request header is malformed")
    return StatusError(400, "the request is not valid HTTP/1.1")


def handler_error_status(code: int) -> StatusError:
    """The Status for a failure aiohttp itself answers outside our middlewares (500, 504)."""
    if code == 504:
        return StatusError(504, "the request timed out", reason="Timeout")
    return StatusError(code, INTERNAL_ERROR_MESSAGE)
