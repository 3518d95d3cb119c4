"""The Status-error middleware: every failure a client can still receive is a Status; a client that left is no failure."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway_apiserver.api.errors import status_errors


def _request(*, closing: bool) -> web.Request:
    transport = mock.Mock()
    transport.is_closing.return_value = closing
    return make_mocked_request("GET", "/apis/cluster.core.oam.dev/v1alpha1/clustergateways?watch=1", transport=transport)


async def _reset(request: web.Request) -> web.StreamResponse:
    raise ConnectionResetError("Cannot write to closing transport")


async def test_a_write_to_a_client_that_left_is_no_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway_apiserver.api.errors")
    with pytest.raises(ConnectionResetError):  # handed to the serving layer, which logs the client's departure
        await status_errors(_request(closing=True), _reset)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "client left during GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways")
    ]


async def test_a_connection_error_while_the_client_is_still_there_is_a_500_status(caplog: pytest.LogCaptureFixture) -> None:
    response = await status_errors(_request(closing=False), _reset)
    assert isinstance(response, web.Response) and response.status == 500
    assert response.body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"an internal error occurred; see the gateway-apiserver log","reason":"InternalError","code":500}'
    )
    assert [r.levelname for r in caplog.records] == ["ERROR"]
