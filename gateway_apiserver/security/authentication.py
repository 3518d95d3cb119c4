"""Authentication in the kube-apiserver's delegated order: front proxy, client certificate, bearer token, anonymous.

Semantics follow k8s.io/apiserver's `DelegatingAuthenticatorConfig`: a union of
authenticators where the first success wins and a failure (a certificate that does not
verify, a front-proxy CN that is not allowed, a rejected token) is remembered; when nothing
succeeds, any failure means 401, and only a request that presented nothing usable becomes
`system:anonymous` (or 401 with `anonymous_auth=False`). Tokens are checked with a
TokenReview against the hosting cluster and cached, allowed and rejected alike, for
`token_cache_ttl` under an HMAC-SHA-256 of the token: the token itself is never stored or logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio.client import ApiClient, AuthenticationV1Api, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from multidict import CIMultiDict

from ..base.status import StatusError
from ..observability.cache_counts import CacheCounts
from .identity import ANONYMOUS, UserInfo
from .requestheader import RequestHeaderConfig, load_ca_bundle

log = logging.getLogger(__name__)

# Always removed from requests that reach handlers, whatever the configured header names: the
# aggregator's defaults, and impersonation, which this server does not implement (a caller's
# Impersonate-* must never reach a member cluster under the gateway's own credential).
IDENTITY_HEADER_PREFIXES: tuple[str, ...] = ("X-Remote-", "Impersonate-")
STANDALONE_USER = UserInfo("standalone", groups=("system:masters",)).with_authenticated_group()


def unauthorized() -> StatusError:
    """The kube-apiserver's 401 (it never says why)."""
    return StatusError(401, "Unauthorized")


# --- headers ----------------------------------------------------------------------------------


def go_string(value: str) -> str:
    """A header value as Go reads its bytes into JSON: invalid UTF-8 becomes U+FFFD.

    aiohttp keeps bytes that are not UTF-8 as lone surrogates, which cannot be encoded again
    (an HMAC of a token, a TokenReview or SubjectAccessReview body). The kube-apiserver sends
    such bytes on as U+FFFD, so identities read from headers are always valid text.
    """
    if value.isascii():
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte decoded to: never from aiohttp, but be total
        raw = value.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    # Every value of a header, repeated ones included (CIMultiDictProxy.items() yields them all).
    wanted = name.lower()
    return [go_string(v) for k, v in headers.items() if k.lower() == wanted]


def _first_value(headers: Mapping[str, str], names: Iterable[str]) -> str:
    # kube's headerValue: the first header (in configured order) whose first value is non-empty.
    for name in names:
        values = _values(headers, name)
        if values and values[0]:
            return values[0]
    return ""


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_extra_key(encoded: str) -> str:
    """An extra key from its header suffix, as kube: lower-cased, then percent-decoded (raw if malformed)."""
    lowered = encoded.lower()
    if _BAD_ESCAPE.search(lowered):
        return lowered
    try:
        return unquote(lowered, errors="strict")
    except UnicodeDecodeError:
        return lowered


def _extras(headers: Mapping[str, str], prefixes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    extra: dict[str, list[str]] = {}
    for prefix in prefixes:  # prefixes first, as kube, so value order follows the configuration
        for name, value in headers.items():
            if len(name) > len(prefix) and name[: len(prefix)].lower() == prefix.lower():
                extra.setdefault(go_string(decode_extra_key(name[len(prefix) :])), []).append(go_string(value))
    return {key: tuple(values) for key, values in extra.items()}


@functools.lru_cache(maxsize=16)
def _identity_matchers(config: RequestHeaderConfig | None) -> tuple[tuple[str, ...], frozenset[str]]:
    # Lower-cased once per trust configuration: this runs for every header of every request.
    prefixes = IDENTITY_HEADER_PREFIXES + (config.extra_prefixes if config else ())
    names = (*config.username_headers, *config.uid_headers, *config.group_headers) if config else ()
    return tuple(p.lower() for p in prefixes), frozenset(n.lower() for n in names)


def is_identity_header(name: str, config: RequestHeaderConfig | None = None) -> bool:
    """Whether `name` carries identity: a configured username/uid/group header or extra prefix, or a default prefix."""
    prefixes, names = _identity_matchers(config)
    lower = name.lower()
    return lower.startswith(prefixes) or lower in names


def strip_identity_headers(headers: Mapping[str, str], config: RequestHeaderConfig | None = None) -> Mapping[str, str]:
    """`headers` without identity headers (see `is_identity_header`), repeated headers kept in order.

    The kube-apiserver also clears these after a successful front-proxy authentication, so
    the middleware can strip them from every request once it has authenticated it. When there
    is nothing to strip (the usual case), `headers` itself is returned: no copy on the hot path.
    """
    if not any(is_identity_header(k, config) for k in headers):
        return headers
    return CIMultiDict((k, v) for k, v in headers.items() if not is_identity_header(k, config))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of `Authorization: Bearer <token>`, parsed as kube's bearertoken authenticator does."""
    values = _values(headers, "Authorization")
    parts = (values[0].strip() if values else "").split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


# --- certificates -----------------------------------------------------------------------------


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def common_name(cert: x509.Certificate) -> str:
    """The subject CN (the last one, as Go's pkix.Name)."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return _text(attrs[-1].value) if attrs else ""


def organizations(cert: x509.Certificate) -> tuple[str, ...]:
    """The subject O values, in order: kube's groups for a client certificate."""
    return tuple(_text(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


def verify_client_cert(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> str | None:
    """None if `cert` was issued by one of `cas` and is usable for client auth now, else why not.

    The TLS layer has verified the chain (to any trusted CA): this decides *which* CA, and
    repeats the time and extended-key-usage checks Go's x509 Verify makes.
    """
    if not any(_issued_by(cert, ca) for ca in cas):
        return "not signed by a trusted CA"
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "expired or not yet valid"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        return "not valid for client authentication"
    return None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# --- the authenticator ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Trust:
    """The parsed form of a RequestHeaderConfig, swapped atomically by `update`."""

    config: RequestHeaderConfig
    front_proxy_cas: tuple[x509.Certificate, ...]
    client_cas: tuple[x509.Certificate, ...]


def _trust(config: RequestHeaderConfig) -> _Trust:
    front = load_ca_bundle(config.ca_pem, "requestheader CA") if config.ca_pem else ()
    client = load_ca_bundle(config.client_ca_pem, "client CA") if config.client_ca_pem else ()
    return _Trust(config, front, client)


class _ReviewFailed(Exception):
    """The TokenReview could not be made; the message is safe to log."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class _Verdict:
    user: UserInfo | None  # None: the token was rejected
    cacheable: bool


class Authenticator:
    """The delegated authenticator chain (see the module docstring).

    `client` is the hosting cluster's kubernetes-asyncio `Configuration` or a factory returning
    an `ApiClient` (created at the first TokenReview, inside the running loop; `close()` closes
    it). Without a client, bearer tokens are ignored, as kube does without a TokenReview client.
    `audiences`, when given, are sent in `spec.audiences` and must intersect the answer's.
    """

    def __init__(
        self,
        config: RequestHeaderConfig | None = None,
        *,
        client: Configuration | Callable[[], Any] | None = None,
        anonymous_auth: bool = True,
        token_cache_ttl: float = 10.0,
        audiences: Sequence[str] = (),
        request_timeout: float = 10.0,
        retries: int = 2,
        max_cache_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trust = _trust(config or RequestHeaderConfig())
        self._client = client
        self._api: ApiClient | None = None
        self.anonymous_auth = anonymous_auth
        self.token_cache_ttl = token_cache_ttl
        self.audiences = tuple(audiences)
        self.request_timeout = request_timeout
        self.retries = retries
        self._max_entries = max_cache_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)  # HMAC key: cache keys are useless outside this process
        self._cache: OrderedDict[bytes, tuple[float, UserInfo | None]] = OrderedDict()
        self.cache_counts = CacheCounts()  # TokenReview cache hits and misses, for /metrics
        self._inflight: dict[bytes, asyncio.Task[_Verdict]] = {}
        self.token_reviews = 0  # TokenReviews sent (tests, metrics)

    @property
    def config(self) -> RequestHeaderConfig:
        """The trust configuration in use."""
        return self._trust.config

    def update(self, config: RequestHeaderConfig) -> None:
        """Use a new trust configuration (e.g. from `AuthenticationConfigWatcher`); raises on unreadable CAs."""
        self._trust = _trust(config)

    def strip_identity_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """`headers` without identity headers, for the configured header names too."""
        return strip_identity_headers(headers, self._trust.config)

    async def close(self) -> None:
        """Close the hosting-cluster client, if one was created."""
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    async def authenticate(self, *, headers: Mapping[str, str], peer_certificate: x509.Certificate | None) -> UserInfo:
        """The caller of a request; `StatusError(401)` for credentials that do not authenticate."""
        trust = self._trust  # one consistent snapshot for the whole request
        failures: list[str] = []
        if peer_certificate is not None:
            for step in (self._front_proxy, self._client_cert):
                user, failure = step(trust, headers, peer_certificate)
                if user is not None:
                    return user.with_authenticated_group()
                if failure:
                    failures.append(failure)
        token = bearer_token(headers) if self._client is not None else None
        if token is not None:
            user = await self._token_user(token)
            if user is not None:
                return user.with_authenticated_group()
            failures.append("invalid bearer token")
        if failures:
            log.info("unable to authenticate the request: %s", "; ".join(failures))
            raise unauthorized()
        if not self.anonymous_auth:
            raise unauthorized()
        return ANONYMOUS

    # --- front proxy and client certificates ------------------------------------------------

    @staticmethod
    def _front_proxy(trust: _Trust, headers: Mapping[str, str], cert: x509.Certificate) -> tuple[UserInfo | None, str | None]:
        if not trust.front_proxy_cas:
            return None, None
        config, cn = trust.config, common_name(cert)
        if (why := verify_client_cert(cert, trust.front_proxy_cas)) is not None:
            return None, f"front proxy: certificate {cert.subject.rfc4514_string()!r} {why}"
        if config.allowed_names and cn not in config.allowed_names:
            return None, f"front proxy: subject with cn={cn} is not in the allowed list"
        name = _first_value(headers, config.username_headers)
        if not name:  # a verified proxy that names nobody: not authenticated by this step
            return None, None
        groups = tuple(v for g in config.group_headers for v in _values(headers, g) if v)
        uid = _first_value(headers, config.uid_headers)
        return UserInfo(name, uid, groups, _extras(headers, config.extra_prefixes)), None

    @staticmethod
    def _client_cert(trust: _Trust, headers: Mapping[str, str], cert: x509.Certificate) -> tuple[UserInfo | None, str | None]:
        if not trust.client_cas:
            return None, None
        if (why := verify_client_cert(cert, trust.client_cas)) is not None:
            return None, f"client certificate {cert.subject.rfc4514_string()!r} {why}"
        cn = common_name(cert)
        return (UserInfo(cn, groups=organizations(cert)) if cn else None), None

    # --- bearer tokens ----------------------------------------------------------------------

    async def _token_user(self, token: str) -> UserInfo | None:
        """The token's user from the cache or one shared TokenReview; None if rejected or not reviewable."""
        key = hmac.new(self._key, token.encode(), hashlib.sha256).digest()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            self.cache_counts.hits += 1
            return hit[1]
        self.cache_counts.misses += 1  # a review joined while in flight is a miss too: the cache did not answer
        task = self._inflight.get(key)
        if task is None:
            # One TokenReview per token at a time; shielded so a caller leaving does not cancel it for the others.
            task = asyncio.create_task(self._review_and_cache(key, token))
            self._inflight[key] = task
        return (await asyncio.shield(task)).user

    async def _review_and_cache(self, key: bytes, token: str) -> _Verdict:
        try:
            verdict = await self._review(token)
            if verdict.cacheable and self.token_cache_ttl > 0:
                self._cache[key] = (self._clock() + self.token_cache_ttl, verdict.user)
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
            return verdict
        finally:
            self._inflight.pop(key, None)

    async def _review(self, token: str) -> _Verdict:
        """Ask the hosting cluster; never raises (a failure is an uncached rejection)."""
        attempt = 0
        while True:
            try:
                status = await self._post_review(token)
            except _ReviewFailed as exc:
                if exc.retryable and attempt < self.retries:
                    # As kube's webhook client: retry connection errors, 429 and 5xx, with jittered backoff.
                    await asyncio.sleep(random.uniform(0.5, 1.0) * 0.2 * 2**attempt)
                    attempt += 1
                    continue
                log.warning("TokenReview failed: %s", exc)
                return _Verdict(None, cacheable=False)
            except Exception:
                log.exception("TokenReview failed unexpectedly")
                return _Verdict(None, cacheable=False)
            return _Verdict(self._user_from_status(status), cacheable=True)

    def _user_from_status(self, status: Mapping[str, Any]) -> UserInfo | None:
        if not status.get("authenticated"):
            log.debug("bearer token rejected by TokenReview")
            return None
        if self.audiences and status.get("audiences") and not set(self.audiences) & set(status["audiences"]):
            log.debug("bearer token rejected: none of the audiences %s", list(self.audiences))
            return None
        user = status.get("user") or {}
        name = str(user.get("username") or "")
        if not name:
            return None
        extra = {str(k): tuple(str(x) for x in (v or ())) for k, v in (user.get("extra") or {}).items()}
        groups = tuple(str(g) for g in user.get("groups") or ())
        return UserInfo(name, str(user.get("uid") or ""), groups, extra)

    async def _post_review(self, token: str) -> Mapping[str, Any]:
        """POST a TokenReview and return its status; `_ReviewFailed` for anything but an answer."""
        if self._client is None:
            raise _ReviewFailed("no hosting cluster client")
        if self._api is None:
            self._api = ApiClient(self._client) if isinstance(self._client, Configuration) else self._client()
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        self.token_reviews += 1
        api: Any = AuthenticationV1Api(self._api)  # used raw: the typed signatures do not apply
        try:
            # Raw response: the preloaded path debug-logs bodies, and a TokenReview echoes the token.
            resp = await api.create_token_review(
                body, _preload_content=False, _request_timeout=aiohttp.ClientTimeout(total=self.request_timeout)
            )
            try:
                raw: bytes = await resp.read()
            finally:
                resp.release()
        except ApiException as exc:  # its str() holds the body
            raise _ReviewFailed(f"HTTP {exc.status} {exc.reason}", retryable=_retryable(exc.status)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _ReviewFailed(f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")) from None
        if resp.status not in (200, 201):
            hint = " (is the service account bound to system:auth-delegator?)" if resp.status == 403 else ""
            raise _ReviewFailed(f"HTTP {resp.status}{hint}", retryable=_retryable(resp.status))
        try:
            status = json.loads(raw).get("status")
        except (ValueError, AttributeError):
            raise _ReviewFailed("undecodable TokenReview response") from None
        if not isinstance(status, dict):
            raise _ReviewFailed("TokenReview response without status")
        return status


def _retryable(status: int) -> bool:
    return status in (0, 429) or status >= 500


class StandaloneAuthenticator:
    """Standalone mode: no hosting cluster, so no delegated authentication.

    Every caller is the one local `user` (by default `standalone` in `system:masters`). This is
    safe only because standalone mode serves on loopback for the local user; identity headers
    are still stripped so nothing a caller sends can impersonate anyone downstream.
    """

    def __init__(self, user: UserInfo = STANDALONE_USER) -> None:
        self.user = user.with_authenticated_group()
        self.config = RequestHeaderConfig()

    async def authenticate(self, *, headers: Mapping[str, str], peer_certificate: x509.Certificate | None) -> UserInfo:
        """Always the local user."""
        return self.user

    def update(self, config: RequestHeaderConfig) -> None:
        """Ignored: nothing is delegated."""

    def strip_identity_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """`headers` without the default identity headers."""
        return strip_identity_headers(headers)

    async def close(self) -> None:
        """Nothing to close."""
