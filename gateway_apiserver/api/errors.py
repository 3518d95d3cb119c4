"""The middleware that makes every error a Kubernetes Status object."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from .status import StatusError, status_response

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
    except Exception:
        # The client gets a generic message; the details (never credentials) go to our log.
        log.exception("internal error serving %s %s", request.method, request.path)
        return status_response(StatusError(500, "an internal error occurred; see the gateway-apiserver log"))
