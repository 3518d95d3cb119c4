"""Front-proxy (requestheader) and client-CA trust: where it comes from and how it stays current.

The kube-apiserver publishes the trust an aggregated API server needs in the ConfigMap
`kube-system/extension-apiserver-authentication` (keys `client-ca-file`,
`requestheader-client-ca-file`, and JSON-array strings for the allowed names and header
names). `RequestHeaderConfig.from_configmap` reads it (pure), `RequestHeaderFlags` lets the
`--requestheader-*` and `--client-ca-file` flags override single keys, and
`AuthenticationConfigWatcher` list+watches the ConfigMap so a rotated CA is picked up
without a restart. Certificates here are public material; nothing secret is read or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from ..registry.watching import RETRYABLE, Expired, Inactive, StreamError, describe, failure_from_response

log = logging.getLogger(__name__)

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP_NAME = "extension-apiserver-authentication"
_LIST_KEYS = {
    "allowed_names": "requestheader-allowed-names",
    "username_headers": "requestheader-username-headers",
    "uid_headers": "requestheader-uid-headers",
    "group_headers": "requestheader-group-headers",
    "extra_prefixes": "requestheader-extra-headers-prefix",
}


class RequestHeaderConfigError(ValueError):
    """The trust configuration is unusable (bad JSON, bad PEM, unreadable file); the message says where."""


def load_ca_bundle(pem: bytes, source: str) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle; `RequestHeaderConfigError` naming `source` if there is none or one is bad."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise RequestHeaderConfigError(f"{source}: not a PEM certificate bundle ({exc})") from None
    return tuple(certs)


def _string_list(raw: str, key: str) -> tuple[str, ...]:
    # As kube's deserializeStrings: "" or "null" is no value, anything but a JSON array of strings an error.
    if not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise RequestHeaderConfigError(f"ConfigMap key {key!r}: invalid JSON ({exc.args[0]})") from None
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestHeaderConfigError(f"ConfigMap key {key!r}: expected a JSON array of strings")
    return _clean(value)


def _clean(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values if v.strip())


@dataclass(frozen=True, slots=True)
class RequestHeaderConfig:
    """Whom to trust: the front proxy (requestheader CA, allowed CNs, header names) and the client CA.

    `ca_pem` None means no front proxy is trusted; `allowed_names` empty means any CN that
    `ca_pem` signed. `client_ca_pem` None means client certificates authenticate nobody.
    """

    ca_pem: bytes | None = field(default=None, repr=False)
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_prefixes: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    client_ca_pem: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """The configuration in the ConfigMap's `data`; `RequestHeaderConfigError` for bad JSON or PEM.

        As the kube-apiserver's dynamic controller, absent keys are empty: no header defaults.
        """
        lists = {name: _string_list(data.get(key) or "", key) for name, key in _LIST_KEYS.items()}
        pems: dict[str, bytes | None] = {}
        for name, key in (("ca_pem", "requestheader-client-ca-file"), ("client_ca_pem", "client-ca-file")):
            text = data.get(key) or ""
            pems[name] = None
            if text.strip():
                load_ca_bundle(text.encode(), f"ConfigMap key {key!r}")
                pems[name] = text.encode()
        return cls(ca_pem=pems["ca_pem"], client_ca_pem=pems["client_ca_pem"], **lists)

    def merged(self, flags: RequestHeaderFlags) -> RequestHeaderConfig:
        """This configuration with every flag that was given replacing its key (reads the CA files)."""
        return flags.apply(self)

    def describe(self) -> str:
        """A one-line summary for logs (subjects and names only)."""

        def cas(pem: bytes | None) -> str:
            if pem is None:
                return "none"
            try:
                return ", ".join(c.subject.rfc4514_string() for c in load_ca_bundle(pem, "CA"))
            except RequestHeaderConfigError:
                return "unreadable"

        names = ",".join(self.allowed_names) or "any"
        return (
            f"requestheader CA [{cas(self.ca_pem)}], allowed names [{names}], username headers "
            f"{list(self.username_headers)}, group headers {list(self.group_headers)}, extra prefixes "
            f"{list(self.extra_prefixes)}; client CA [{cas(self.client_ca_pem)}]"
        )


FlagList = str | Sequence[str] | None


def _flag_list(value: FlagList) -> tuple[str, ...] | None:
    # kube StringSlice flags: comma-separated (or repeated); "" given means an empty list.
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    return _clean(parts)


def _read_ca(path: str | os.PathLike[str] | None, flag: str) -> bytes | None:
    if path is None or str(path) == "":
        return None
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise RequestHeaderConfigError(f"{flag}={path}: {exc.strerror or exc}") from None
    load_ca_bundle(pem, f"{flag}={path}")
    return pem


@dataclass(frozen=True, slots=True)
class RequestHeaderFlags:
    """The command-line overrides; None means "not given, use the ConfigMap key"."""

    requestheader_client_ca_file: str | os.PathLike[str] | None = None
    requestheader_allowed_names: FlagList = None
    requestheader_username_headers: FlagList = None
    requestheader_group_headers: FlagList = None
    requestheader_extra_headers_prefix: FlagList = None
    requestheader_uid_headers: FlagList = None
    client_ca_file: str | os.PathLike[str] | None = None

    def apply(self, config: RequestHeaderConfig) -> RequestHeaderConfig:
        """`config` with the given flags winning; the CA files are read now (so re-applying picks up new files)."""
        changes: dict[str, Any] = {}
        ca = _read_ca(self.requestheader_client_ca_file, "--requestheader-client-ca-file")
        if ca is not None:
            changes["ca_pem"] = ca
        client_ca = _read_ca(self.client_ca_file, "--client-ca-file")
        if client_ca is not None:
            changes["client_ca_pem"] = client_ca
        for name, value in (
            ("allowed_names", self.requestheader_allowed_names),
            ("username_headers", self.requestheader_username_headers),
            ("group_headers", self.requestheader_group_headers),
            ("extra_prefixes", self.requestheader_extra_headers_prefix),
            ("uid_headers", self.requestheader_uid_headers),
        ):
            if (parsed := _flag_list(value)) is not None:
                changes[name] = parsed
        return replace(config, **changes) if changes else config


# --- the watcher --------------------------------------------------------------------------------


_RBAC_HINT = (
    "grant it with a RoleBinding in kube-system to the Role extension-apiserver-authentication-reader "
    "for this server's service account"
)


class AuthenticationConfigWatcher:
    """List+watch of kube-system/extension-apiserver-authentication, calling `on_change(config)`.

    `on_change` gets the ConfigMap's configuration with `flags` applied: once after the first
    list (also when the ConfigMap is missing: no front proxy trusted, flags only) and then
    whenever it changes. An invalid ConfigMap keeps the previous configuration. `client` is a
    kubernetes-asyncio `Configuration` or a factory returning an `ApiClient`, created in `run()`.
    The loop is the informer's: relist on 410, backoff with full jitter, inactivity timeout.
    """

    def __init__(
        self,
        client: Configuration | Callable[[], Any],
        on_change: Callable[[RequestHeaderConfig], object],
        *,
        flags: RequestHeaderFlags | None = None,
        namespace: str = AUTH_CONFIGMAP_NAMESPACE,
        name: str = AUTH_CONFIGMAP_NAME,
        watch_timeout: float = 300.0,
        inactivity_timeout: float | None = None,
        request_timeout: float = 30.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
    ) -> None:
        self._client = client
        self._on_change = on_change
        self.flags = flags or RequestHeaderFlags()
        self.namespace, self.name = namespace, name
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout if inactivity_timeout is not None else watch_timeout * 1.2 + 60
        self.request_timeout = request_timeout
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.config: RequestHeaderConfig | None = None  # the last configuration delivered
        self.synced = asyncio.Event()  # set once a first configuration was delivered
        self.resource_version: str | None = None
        self.lists = self.watches = 0
        self._failures = 0
        self._expired_streak = 0  # 410s since the last healthy stream
        self._missing_logged = False

    async def run(self) -> None:
        """Watch until cancelled."""
        api_client = ApiClient(self._client) if isinstance(self._client, Configuration) else self._client()
        try:
            await self._loop(CoreV1Api(api_client))
        finally:
            await api_client.close()

    async def _loop(self, core: Any) -> None:
        self.resource_version = None
        while True:
            try:
                if self.resource_version is None:
                    await self._list(core)
                await self._watch(core)
            except Expired as exc:
                log.info("authentication config: %s; relisting", exc)
                self.resource_version = None
                if self._expired_streak:  # 410 again before a healthy stream: do not hot-loop
                    await self._sleep_backoff()
                self._expired_streak += 1
            except Inactive:
                log.warning("authentication config: no watch events for %gs; reconnecting", self.inactivity_timeout)
            except RETRYABLE as exc:
                forbidden = (isinstance(exc, ApiException) and exc.status == 403) or "HTTP 403" in str(exc)
                hint = f"; {_RBAC_HINT}" if forbidden else ""
                log.warning("authentication config: ConfigMap %s/%s: %s%s", self.namespace, self.name, describe(exc), hint)
                await self._sleep_backoff()
            except Exception:
                log.exception("authentication config: unexpected error; relisting")
                self.resource_version = None
                await self._sleep_backoff()

    async def _sleep_backoff(self) -> None:
        # Full jitter: uniform in [0, min(cap, base * 2^failures)].
        delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**self._failures))
        self._failures += 1
        await asyncio.sleep(delay)

    def _deliver(self, data: Mapping[str, str] | None) -> None:
        """Compute the configuration for this ConfigMap content (None: missing) and hand it over if new."""
        where = f"{self.namespace}/{self.name}"
        if data is None and not self._missing_logged:
            log.warning("authentication config: ConfigMap %s not found; no front proxy or client CA trusted from it", where)
        self._missing_logged = data is None
        try:
            config = RequestHeaderConfig.from_configmap(data or {}).merged(self.flags)
        except RequestHeaderConfigError as exc:
            if self.config is not None:
                log.error("authentication config: ignoring invalid ConfigMap %s: %s", where, exc)
                return
            log.error("authentication config: invalid ConfigMap %s: %s; trusting the flags only", where, exc)
            try:
                config = RequestHeaderConfig().merged(self.flags)
            except RequestHeaderConfigError as flag_exc:
                log.error("authentication config: %s", flag_exc)
                config = RequestHeaderConfig()
        if config == self.config:
            return
        try:
            self._on_change(config)
        except Exception:
            log.exception("authentication config: on_change failed; will retry at the next change")
            return
        self.config = config
        self.synced.set()
        log.info("authentication config: %s", config.describe())

    async def _request(self, core: Any, *, watch: bool, timeout: aiohttp.ClientTimeout, **params: Any) -> Any:
        try:
            return await core.list_namespaced_config_map(
                self.namespace,
                field_selector=f"metadata.name={self.name}",
                watch=watch,
                _preload_content=False,
                _request_timeout=timeout,
                **params,
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Expired(exc.reason or "Gone") from None
            raise

    async def _list(self, core: Any) -> None:
        resp = await self._request(core, watch=False, timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            body: bytes = await resp.read()
        finally:
            resp.release()
        if resp.status != 200:
            raise failure_from_response(resp.status, body)
        try:
            listing = json.loads(body)
            items = listing.get("items") or []
            rv = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        except (ValueError, AttributeError):
            raise StreamError("undecodable list response") from None
        if not rv:
            raise StreamError("list response without metadata.resourceVersion")
        self.lists += 1
        self._deliver((items[0].get("data") or {}) if items else None)
        self.resource_version = rv

    async def _watch(self, core: Any) -> None:
        loop = asyncio.get_running_loop()
        self.watches += 1
        started, healthy = loop.time(), False
        connect = aiohttp.ClientTimeout(total=None, connect=self.request_timeout, sock_connect=self.request_timeout)
        try:
            async with asyncio.timeout(self.inactivity_timeout) as timer:
                resp = await self._request(
                    core,
                    watch=True,
                    timeout=connect,
                    resource_version=self.resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=max(1, round(self.watch_timeout * random.uniform(1.0, 1.2))),
                )
                try:
                    if resp.status != 200:
                        raise failure_from_response(resp.status, await resp.read())
                    while line := await resp.content.readline():
                        timer.reschedule(loop.time() + self.inactivity_timeout)
                        if line.strip():
                            self._handle_line(line)
                            healthy = True
                            self._failures = self._expired_streak = 0
                finally:
                    resp.close()
        except TimeoutError as exc:
            if timer.expired():
                raise Inactive from exc
            raise
        if not healthy and loop.time() - started < 1.0:
            raise StreamError("watch closed immediately")
        self._failures = self._expired_streak = 0

    def _handle_line(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            event_type, obj = event["type"], event["object"] or {}
        except (ValueError, KeyError, TypeError):
            raise StreamError("undecodable watch event") from None
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise Expired(str(obj.get("message") or "Expired"))
            raise StreamError(f"watch error {obj.get('code')} {obj.get('reason', '')}: {obj.get('message', '')}")
        if event_type in ("ADDED", "MODIFIED"):
            self._deliver(obj.get("data") or {})
        elif event_type == "DELETED":
            self._deliver(None)
        elif event_type != "BOOKMARK":
            raise StreamError(f"unknown watch event type {str(event_type)[:20]!r}")
        if rv := str((obj.get("metadata") or {}).get("resourceVersion") or ""):
            self.resource_version = rv
