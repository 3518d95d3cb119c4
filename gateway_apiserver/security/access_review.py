"""SubjectAccessReview calls to the hosting cluster through kubernetes-asyncio."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, AuthorizationV1Api, Configuration


class HostingAccessReview:
    """Posts SubjectAccessReviews; the ApiClient is created inside the running loop, on first use."""

    def __init__(self, configuration: Configuration, timeout: float = 10.0) -> None:
        self._configuration = configuration
        self._timeout = timeout
        self._client: ApiClient | None = None

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one review; the answer's JSON. Raises on transport errors and non-201 answers."""
        if self._client is None:
            self._client = ApiClient(self._configuration)
        api: Any = AuthorizationV1Api(self._client)  # the generated signature wants a model; a dict serialises the same
        response: Any = await api.create_subject_access_review(
            body, _preload_content=False, _request_timeout=aiohttp.ClientTimeout(total=self._timeout)
        )
        try:
            payload = await response.read()
        finally:
            response.release()
        if response.status not in (200, 201):
            raise ConnectionError(f"SubjectAccessReview answered HTTP {response.status}")
        answer = json.loads(payload)
        if not isinstance(answer, dict):
            raise ConnectionError("SubjectAccessReview answer is not an object")
        return answer

    async def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
            self._client = None
