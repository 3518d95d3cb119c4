"""Kubernetes `Status` error objects, the only error shape a client ever sees."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

GROUP = "cluster.core.oam.dev"
RESOURCE = "clustergateways"

# HTTP code -> Kubernetes StatusReason, as in k8s.io/apimachinery/pkg/api/errors.
_REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    501: "NotImplemented",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class StatusError(Exception):
    """An error that is answered to the client as a Kubernetes Status object."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason if reason is not None else _REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def to_status(self) -> dict[str, Any]:
        """The Status object for this error."""
        return status_object(self.code, self.message, reason=self.reason, details=self.details)


def status_object(code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a `v1.Status` failure object."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details is not None:  # kube sends `"details":{}` where its error carries empty details (a non-resource 403)
        status["details"] = details
    return status


def status_body(error: StatusError) -> bytes:
    """The JSON body of the answer to `error`."""
    return json.dumps(error.to_status(), separators=(",", ":")).encode()


def status_response(error: StatusError) -> web.Response:
    """Render a StatusError as an aiohttp response."""
    return web.Response(status=error.code, body=status_body(error), content_type="application/json", headers=error.headers)


def not_found(name: str, message: str | None = None, *, resource: str = RESOURCE) -> StatusError:
    """404 for an object of our group (a ClusterGateway unless `resource` says otherwise), in the
    kube-apiserver's wording unless a reason is given."""
    return StatusError(
        404,
        message or f'{resource}.{GROUP} "{name}" not found',
        details={"name": name, "group": GROUP, "kind": resource},
    )


def no_such_cluster(name: str, error: StatusError) -> StatusError:
    """A cluster's 404 reworded to start with "no such cluster NAME: ", as the reference words it.

    KubeVela's clients match on that phrase: after writing a new cluster's Secret, `vela cluster join`
    retries while the gateway says "no such cluster" (it has not seen the Secret yet), and on any other
    error deletes the Secret it just wrote. Other errors pass through unchanged.
    """
    if error.code != 404:
        return error
    return StatusError(404, f"no such cluster {name}: {error.message}", details=error.details, headers=error.headers)


def method_not_allowed(method: str, what: str) -> StatusError:
    """405 for verbs the read-only resource does not support."""
    return StatusError(
        405,
        f"the server does not allow this method on the requested resource: {method} is not supported on {what}",
    )


INTERNAL_ERROR_MESSAGE = "an internal error occurred; see the gateway-apiserver log"


def internal_error() -> StatusError:
    """500 for a failure of our own: the client gets a generic message; the details (never credentials) go to our log."""
    return StatusError(500, INTERNAL_ERROR_MESSAGE)


def bad_request(message: str) -> StatusError:
    """400 BadRequest."""
    return StatusError(400, message)


def expired(message: str) -> StatusError:
    """410 Gone / Expired, as for a too old resourceVersion or continue token."""
    return StatusError(410, message, reason="Expired")


def initializing() -> StatusError:
    """429 with Retry-After, as the kube-apiserver answers while its watch cache is not ready yet.

    Clients (client-go, kubectl) wait and retry; an empty list would tell them there are no clusters.
    """
    return StatusError(
        429,
        "storage is (re)initializing: the first list of cluster Secrets has not completed",
        details={"retryAfterSeconds": 1},
        headers={"Retry-After": "1"},
    )
