"""A thin REST client for the hosting cluster on kubernetes-asyncio, reading and writing plain dicts.

Objects are addressed by their apiVersion, resource (plural), namespace and name; the path
is kube's. Errors are `ApiException`s (status and Status body); `is_status` tells them apart.
Request and response bodies are never logged (they carry Secrets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

Obj = dict[str, Any]

# kind -> (plural, namespaced) for every kind the manager writes or reads.
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "ServiceAccount": ("serviceaccounts", True),
    "Secret": ("secrets", True),
    "Service": ("services", True),
    "Deployment": ("deployments", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "APIService": ("apiservices", False),
    "ManagedCluster": ("managedclusters", False),
    "ManagedClusterAddOn": ("managedclusteraddons", True),
    "ClusterManagementAddOn": ("clustermanagementaddons", False),
    "ManagedServiceAccount": ("managedserviceaccounts", True),
    "ClusterGatewayConfiguration": ("clustergatewayconfigurations", False),
    "ClusterGateway": ("clustergateways", False),
}


@dataclass(frozen=True)
class Ref:
    """Where an object lives: apiVersion, kind, namespace ("" if cluster-scoped) and name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @staticmethod
    def of(obj: Obj) -> Ref:
        """The address of `obj` (which carries apiVersion and kind)."""
        meta = obj.get("metadata") or {}
        return Ref(obj["apiVersion"], obj["kind"], str(meta.get("namespace", "")), str(meta.get("name", "")))

    def collection(self) -> str:
        """The path of its collection."""
        plural, namespaced = KINDS[self.kind]
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        # A namespaced kind without a namespace: the list across every namespace.
        return f"{root}/namespaces/{self.namespace}/{plural}" if namespaced and self.namespace else f"{root}/{plural}"

    def path(self) -> str:
        """The path of the object."""
        return f"{self.collection()}/{self.name}"

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def is_status(exc: BaseException, *codes: int) -> bool:
    """Whether `exc` is the hosting cluster answering one of `codes`."""
    return isinstance(exc, ApiException) and exc.status in codes


def describe(exc: BaseException) -> str:
    """A one-line account of a failed call: the Status message, never a body that may echo an object."""
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or b"{}").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"{exc.status} {message or exc.reason}"
    return " ".join(str(exc).split()) or type(exc).__name__


class Kube:
    """JSON requests to the hosting cluster through one kubernetes-asyncio `ApiClient`."""

    def __init__(self, api_client: ApiClient, *, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Obj | None = None, *, query: dict[str, str] | None = None) -> Obj:
        """Send one request; the parsed JSON answer. Non-2xx raise `ApiException`."""
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        resp = await self.api_client.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        try:
            raw = await resp.read()
        finally:
            resp.release()
        if not 200 <= resp.status < 300:  # unread bodies are not checked by the client: say it here
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = raw
            raise exc
        parsed: Obj = json.loads(raw) if raw else {}
        return parsed

    async def get(self, ref: Ref) -> Obj | None:
        """The object, or None if it does not exist."""
        try:
            return await self.request("GET", ref.path())
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, ref: Ref, *, label_selector: str = "") -> list[Obj]:
        """Every object of `ref`'s collection (its name is ignored), in one list."""
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[Obj] = (await self.request("GET", ref.collection(), query=query)).get("items") or []
        return items

    async def create(self, obj: Obj) -> Obj:
        """Create `obj`."""
        return await self.request("POST", Ref.of(obj).collection(), obj)

    async def replace(self, obj: Obj) -> Obj:
        """Replace `obj` (409 if its metadata.resourceVersion is stale)."""
        return await self.request("PUT", Ref.of(obj).path(), obj)

    async def replace_status(self, obj: Obj) -> Obj:
        """Replace the status of `obj` through its status subresource."""
        return await self.request("PUT", Ref.of(obj).path() + "/status", obj)

    async def delete(self, ref: Ref) -> bool:
        """Delete; False if it was already gone."""
        try:
            await self.request("DELETE", ref.path())
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
