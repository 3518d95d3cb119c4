"""Health writes: a ClusterGateway's `status` stored as annotations of its Secret in the hosting cluster.

The pure half reads the health out of a client's ClusterGateway and builds the Secret merge patch;
the thin async half sends that patch with the hosting cluster's client (the one the informer uses).
A merge patch of two annotations needs no resourceVersion precondition: the kube-apiserver applies
it to the latest Secret itself. A 409 (its own internal retries exhausted) is still retried here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from ..base.api_group import GROUP_VERSION
from .model import ANNOTATION_HEALTHY, ANNOTATION_HEALTHY_REASON, ANNOTATION_HEALTHY_TIME, KIND
from .observed_health import precise_time

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH)  # in the order kube's 415 message lists them


class HealthBodyError(ValueError):
    """The client's body is not a ClusterGateway for this name (one-line message, safe to show)."""


class SecretGone(LookupError):
    """The cluster's Secret does not exist (any more) in the hosting cluster."""


class HealthWriteFailed(RuntimeError):
    """The hosting cluster refused or failed the patch (one-line message without the Secret's content)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Health:
    """The two fields a health write keeps."""

    healthy: bool
    reason: str


def health_from_cluster_gateway(body: Any, name: str) -> Health:
    """The health a client's ClusterGateway body carries; `HealthBodyError` if it is no ClusterGateway named `name`.

    As kube decodes a body for a typed endpoint, a missing kind/apiVersion defaults to the endpoint's
    and a missing status means the zero values (unhealthy, no reason).
    """
    if not isinstance(body, dict):
        raise HealthBodyError("the body of the request must be a ClusterGateway object")
    kind, api_version = body.get("kind", KIND), body.get("apiVersion", GROUP_VERSION)
    if (kind, api_version) != (KIND, GROUP_VERSION):
        raise HealthBodyError(f"the body of the request is a {kind} of {api_version}, not a {KIND} of {GROUP_VERSION}")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise HealthBodyError("metadata must be an object")
    body_name = metadata.get("name", name)
    if body_name != name:
        raise HealthBodyError(f"the name of the object ({body_name}) does not match the name on the URL ({name})")
    status = body.get("status") or {}
    if not isinstance(status, dict):
        raise HealthBodyError("status must be an object")
    healthy = status.get("healthy", False)
    if not isinstance(healthy, bool):
        raise HealthBodyError(f"status.healthy must be a boolean, not {json.dumps(healthy)[:64]}")
    reason = status.get("healthyReason", "")
    if not isinstance(reason, str):
        raise HealthBodyError(f"status.healthyReason must be a string, not {json.dumps(reason)[:64]}")
    return Health(healthy, reason)


def health_annotations(health: Health, written_at: datetime) -> dict[str, str]:
    """The Secret annotations that store `health`, written as the reference writes them, and the
    write's time, which lets the newer of a write and the built-in prober's result win."""
    return {
        ANNOTATION_HEALTHY: "true" if health.healthy else "false",
        ANNOTATION_HEALTHY_REASON: health.reason,
        ANNOTATION_HEALTHY_TIME: precise_time(written_at),
    }


def secret_merge_patch(health: Health, written_at: datetime) -> dict[str, Any]:
    """The merge patch (RFC 7386) of the Secret: its health annotations, nothing else."""
    return {"metadata": {"annotations": health_annotations(health, written_at)}}


class SecretHealthWriter:
    """Patches cluster Secrets of one namespace in the hosting cluster.

    `client` is a kubernetes-asyncio `Configuration` or a zero-argument factory returning an `ApiClient`.
    """

    def __init__(
        self,
        client: Configuration | Callable[[], Any],
        namespace: str,
        *,
        request_timeout: float = 10.0,
        conflict_retries: int = 3,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.conflict_retries = conflict_retries

    def _api_client(self) -> Any:
        return ApiClient(self._client) if isinstance(self._client, Configuration) else self._client()

    async def write(self, name: str, health: Health) -> Mapping[str, Any]:
        """Store `health` on Secret `name`; returns the patched Secret. Raises SecretGone or HealthWriteFailed."""
        patch = secret_merge_patch(health, datetime.now(UTC))
        async with self._api_client() as api:
            core: Any = CoreV1Api(api)  # raw responses (_preload_content=False), as the informer reads them
            for attempt in range(self.conflict_retries + 1):
                try:
                    resp = await core.patch_namespaced_secret(
                        name,
                        self.namespace,
                        patch,
                        _content_type=MERGE_PATCH,
                        _preload_content=False,
                        _request_timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                    )
                    try:
                        body: bytes = await resp.read()
                    finally:
                        resp.release()
                    status = int(resp.status)
                except ApiException as exc:  # raised by the client for some failures even with raw responses
                    status, body = exc.status or 500, exc.body or b""
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise HealthWriteFailed(503, f"the hosting cluster did not answer: {type(exc).__name__}") from None
                if status == 404:
                    raise SecretGone(name)
                if status == 409 and attempt < self.conflict_retries:
                    continue
                if status != 200:
                    raise HealthWriteFailed(status, _failure(status, body))
                try:
                    secret = json.loads(body)
                except ValueError:
                    secret = None
                if not isinstance(secret, dict):
                    raise HealthWriteFailed(502, "the hosting cluster answered the Secret patch with no object")
                return secret
        raise HealthWriteFailed(409, "the Secret kept changing")  # unreachable: the last attempt raises


def _failure(status: int, body: Any) -> str:
    """A one-line description of the hosting cluster's refusal: its Status message, never an echoed object."""
    message = ""
    try:
        parsed = json.loads(body) if body else None
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            message = " ".join(str(parsed.get("message", "")).split())[:300]
    except (TypeError, ValueError):
        pass
    return f"the hosting cluster refused the Secret patch ({status}){': ' + message if message else ''}"


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of `target` (not modified); `null` deletes a member."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
