"""Which Status answers which parser failure; the parser's text (it quotes the request) is never reused."""

from __future__ import annotations

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from gateway_apiserver.serving.protocol_errors import handler_error_status, parse_error_status

SECRET = "Bearer super-secret-token"
CASES: list[tuple[HttpProcessingError, int, str, str]] = [
    (LineTooLong(SECRET.encode(), 8190), 431, "RequestHeaderFieldsTooLarge", "longer than 8190 bytes"),
    (BadHttpMessage("Too many headers received"), 431, "RequestHeaderFieldsTooLarge", "more than 128 header fields"),
    (BadHttpMethod(error=f"Invalid method encountered:\n\n  b'{SECRET}'"), 405, "MethodNotAllowed", "the method must be one of"),
    (InvalidURLError(f"Invalid char in url query:\n\n  b'{SECRET}'"), 400, "BadRequest", "the request query is not a valid URL"),
    (InvalidURLError(f"Invalid char in url path:\n\n  b'{SECRET}'"), 400, "BadRequest", "the request path is not a valid URL"),
    (BadStatusLine(error=f"Bad status line:\n  Invalid HTTP version:\n\n  b'{SECRET}'"), 400, "BadRequest", "request line"),
    (InvalidHeader(SECRET.encode() + b"\x00"), 400, "BadRequest", "holds a control character"),
    (
        BadHttpMessage(f"Transfer-Encoding can't be present with Content-Length:\n\n  b'{SECRET}'"),
        400,
        "BadRequest",
        "both Content-Length and Transfer-Encoding",
    ),
    (BadHttpMessage(f"Duplicate Content-Length:\n\n  b'{SECRET}'"), 400, "BadRequest", "more than one Content-Length"),
    (BadHttpMessage("Duplicate 'Host' header found."), 400, "BadRequest", "repeats a header that may appear only once"),
    (BadHttpMessage("Missing 'Host' header in request."), 400, "BadRequest", "has no Host header"),
    (BadHttpMessage(f"Invalid character in chunk size:\n\n  b'{SECRET}'"), 400, "BadRequest", "chunked encoding is malformed"),
    (TransferEncodingError("Not enough data to satisfy transfer length header."), 400, "BadRequest", "chunked encoding"),
    (BadHttpMessage(f"Invalid header token:\n\n  b'{SECRET}'"), 400, "BadRequest", "a request header is malformed"),
    (BadHttpMessage(f"Something new:\n\n  b'{SECRET}'"), 400, "BadRequest", "the request is not valid HTTP/1.1"),
]


IDS = [f"{type(case[0]).__name__}-{i}" for i, case in enumerate(CASES)]


@pytest.mark.parametrize(("exc", "code", "reason", "says"), CASES, ids=IDS)
def test_each_parser_failure_has_its_own_status_and_never_quotes_the_request(
    exc: HttpProcessingError, code: int, reason: str, says: str
) -> None:
    error = parse_error_status(exc, max_field_size=8190, max_headers=128)
    assert (error.code, error.reason) == (code, reason)
    assert says in error.message
    assert "secret" not in error.message


def test_failures_outside_every_middleware_are_generic() -> None:
    assert handler_error_status(500).to_status()["message"] == "an internal error occurred; see the gateway-apiserver log"
    assert (handler_error_status(504).code, handler_error_status(504).reason) == (504, "Timeout")
