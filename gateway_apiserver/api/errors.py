"""The middleware that makes every error a Kubernetes Status object."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ..base.status import StatusError, internal_error, status_response

log = logging.getLogger(__name__)


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render StatusError, routing errors and unexpected failures as Status objects."""
    try:
        return await handler(request)
    except StatusError as exc:
        return status_response(exc)
    except web.HTTPNotFound:
        return status_response(StatusError(404, "the server could not find the requested resource"))
    except web.HTTPMethodNotAllowed as exc:
        return status_response(
            StatusError(
                405,
                f"the server does not allow this method on the requested resource: {request.method} {request.path}",
                headers={"Allow": ", ".join(sorted(exc.allowed_methods))},
            )
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return status_response(StatusError(exc.status, exc.reason))
    except ConnectionError:
        transport = request.transport
        if transport is None or transport.is_closing():  # the client left mid-answer: nothing to answer, nothing wrong
            log.debug("client left during %s %s", request.method, request.path)
            raise
        return _internal_error(request)
    except Exception:
        return _internal_error(request)


def _internal_error(request: web.Request) -> web.Response:
    # The client gets a generic message; the details (never credentials) go to our log.
    log.exception("internal error serving %s %s", request.method, request.path)
    return status_response(internal_error())
