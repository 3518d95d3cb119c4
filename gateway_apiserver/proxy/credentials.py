"""Member-cluster credentials: bearer tokens, X509 client certificates and exec plugins.

Nothing here ever logs or returns credential material: errors name the cluster, the plugin
command and what went wrong, never a token, key or the plugin's standard output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import shutil
import signal
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..registry.conversion import is_bearer_token
from ..registry.model import ClusterGateway, CredentialType

log = logging.getLogger(__name__)

_REFRESH_MARGIN = 60.0  # refresh an exec credential this long before it expires, as asked by the issue
_MAX_STDOUT = 1024 * 1024  # an ExecCredential is a few KB; more is a broken plugin


class CredentialError(Exception):
    """The cluster's credential cannot be used now; the message (no secrets) says why. Answered as 503.

    `stderr_bytes` is how much a failed plugin wrote to stderr: logged as a count only, since a
    plugin may print anything there, tokens included.
    """

    def __init__(self, message: str, stderr_bytes: int = 0) -> None:
        super().__init__(message)
        self.stderr_bytes = stderr_bytes


@dataclass(frozen=True, slots=True)
class ResolvedCredential:
    """What a request to the member carries: a bearer token and/or a client certificate."""

    token: str | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    not_after: datetime.datetime | None = None  # the client certificate's end of validity

    def headers(self) -> dict[str, str]:
        """The Authorization header for this credential (empty for certificate-only)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def certificate_validity(cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """(notBefore, notAfter) of the first certificate in `cert_pem`; CredentialError if unreadable."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except (ValueError, IndexError):
        raise CredentialError("the client certificate is not a valid PEM certificate") from None
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def check_validity(cluster: str, validity: tuple[datetime.datetime, datetime.datetime]) -> None:
    """Raise CredentialError if now is outside the client certificate's (notBefore, notAfter)."""
    not_before, not_after = validity
    now = _now()
    if now >= not_after:
        raise CredentialError(f'the client certificate of cluster "{cluster}" expired at {not_after.isoformat()}')
    if now < not_before:
        raise CredentialError(f'the client certificate of cluster "{cluster}" is not valid before {not_before.isoformat()}')


def load_client_certificate(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a client certificate and key from memory into `ctx`.

    `SSLContext.load_cert_chain` reads files only. On Linux the PEM goes into an anonymous
    memory file (memfd) that never touches a disk; elsewhere into a 0600 file in a private
    0700 directory, removed as soon as it is loaded.
    """
    data = key_pem.rstrip(b"\n") + b"\n" + cert_pem
    try:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("member-client-cert", os.MFD_CLOEXEC)
            try:
                os.write(fd, data)
                ctx.load_cert_chain(f"/proc/self/fd/{fd}")
                return
            except FileNotFoundError:
                pass  # no /proc: fall back to a temporary file
            finally:
                os.close(fd)
        with tempfile.TemporaryDirectory(prefix="gateway-cred-") as tmp:
            path = os.path.join(tmp, "client.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            try:
                ctx.load_cert_chain(path)
            finally:
                os.unlink(path)
    except ssl.SSLError as exc:
        reason = str(exc.reason or "")
        why = (
            "the private key does not match the certificate"
            if reason == "KEY_VALUES_MISMATCH"
            else reason.lower().replace("_", " ")
        )
        raise CredentialError(f"the client certificate and key cannot be used: {why or 'unreadable'}") from None


class CredentialProvider(Protocol):
    """Gives the current credential of one cluster."""

    async def get(self) -> ResolvedCredential:
        """The credential to use now; raises CredentialError when there is none."""

    def invalidate(self, credential: ResolvedCredential) -> None:
        """The member answered 401 to `credential`: do not use it for the next request."""

    async def close(self) -> None:
        """Stop any work in flight (an exec plugin run)."""


class StaticCredential:
    """A token or client certificate from the Secret: fixed until the Secret changes."""

    def __init__(self, cluster: str, credential: ResolvedCredential) -> None:
        self._cluster = cluster
        self._credential = credential
        self._validity: tuple[datetime.datetime, datetime.datetime] | None = None

    async def get(self) -> ResolvedCredential:
        """The credential; an expired client certificate is refused with a clear reason."""
        cred = self._credential
        if cred.client_cert_pem is not None:
            if self._validity is None:
                self._validity = certificate_validity(cred.client_cert_pem)  # parsed once, checked per use
            check_validity(self._cluster, self._validity)
        return cred

    def invalidate(self, credential: ResolvedCredential) -> None:
        """Nothing to refresh: a Secret's credential changes only with the Secret."""

    async def close(self) -> None:
        """Nothing to stop."""


def exec_info(api_version: str, cluster: Mapping[str, Any] | None) -> str:
    """The KUBERNETES_EXEC_INFO value client-go passes to a plugin (never interactive here)."""
    spec: dict[str, Any] = {"interactive": False}
    if cluster is not None:
        spec["cluster"] = dict(cluster)
    return json.dumps({"kind": "ExecCredential", "apiVersion": api_version, "spec": spec}, separators=(",", ":"))


def cluster_info(cluster: ClusterGateway) -> dict[str, Any]:
    """The ExecCredential `spec.cluster` for `provideClusterInfo: true`, as client-go builds it."""
    info: dict[str, Any] = {"server": cluster.address or f"https://{cluster.name}"}
    if cluster.ca_bundle:
        info["certificate-authority-data"] = base64.b64encode(cluster.ca_bundle).decode()
    if cluster.insecure:
        info["insecure-skip-tls-verify"] = True
    if cluster.tls_server_name:
        info["tls-server-name"] = cluster.tls_server_name
    if cluster.proxy_url:
        info["proxy-url"] = cluster.proxy_url
    return info


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    """Read to EOF keeping at most `limit` bytes; True if there was more."""
    if stream is None:
        return b"", False
    chunks: list[bytes] = []
    size, overflow = 0, False
    while chunk := await stream.read(65536):
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        overflow = overflow or size > limit
    return b"".join(chunks), overflow


async def _count_bytes(stream: asyncio.StreamReader | None) -> int:
    """Drain a stream (so the plugin never blocks on a full pipe), keeping only its length."""
    size = 0
    while stream is not None and (chunk := await stream.read(65536)):
        size += len(chunk)
    return size


def parse_exec_credential(
    output: bytes, api_version: str, what: str, now: datetime.datetime
) -> tuple[ResolvedCredential, datetime.datetime | None]:
    """Parse a plugin's stdout: (credential, expirationTimestamp). CredentialError names the problem, never the content."""
    try:
        obj = json.loads(output)
    except (ValueError, UnicodeDecodeError):
        raise CredentialError(f"{what} printed invalid output ({len(output)} bytes, not an ExecCredential JSON)") from None
    # client-go fills in a missing kind from apiVersion; another kind, or no apiVersion, is an error.
    if not isinstance(obj, dict) or obj.get("kind", "ExecCredential") != "ExecCredential":
        raise CredentialError(f"{what} printed JSON that is not an ExecCredential")
    if "apiVersion" not in obj:
        raise CredentialError(f"{what} returned an ExecCredential without apiVersion")
    if obj.get("apiVersion") != api_version:
        raise CredentialError(f"{what} returned an ExecCredential whose apiVersion is not the configured {api_version}")
    status = obj.get("status")
    if not isinstance(status, dict):
        raise CredentialError(f"{what} returned an ExecCredential without status")
    token = status.get("token")
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if token is not None and (not isinstance(token, str) or not token):
        raise CredentialError(f"{what} returned an empty or non-string status.token")
    if token is not None and not is_bearer_token(token):  # a CR/LF or space would bend the Authorization header
        raise CredentialError(f"{what} returned a status.token with characters a bearer token cannot have")
    if (cert is None) != (key is None) or (cert is not None and not (isinstance(cert, str) and isinstance(key, str))):
        raise CredentialError(f"{what} must return both status.clientCertificateData and status.clientKeyData")
    if token is None and cert is None:
        raise CredentialError(f"{what} returned neither status.token nor a client certificate")
    expires: datetime.datetime | None = None
    if (raw := status.get("expirationTimestamp")) is not None:
        try:
            expires = datetime.datetime.fromisoformat(str(raw))
        except ValueError:
            raise CredentialError(f"{what} returned an expirationTimestamp that is not an RFC 3339 time") from None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.UTC)
        if expires <= now:
            raise CredentialError(f"{what} returned a credential that expired at {expires.isoformat()}")
    cert_pem = key_pem = None
    not_after = None
    if isinstance(cert, str) and isinstance(key, str):
        cert_pem, key_pem = cert.encode(), key.encode()
        try:
            load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError):
            raise CredentialError(f"{what} returned a status.clientKeyData that is not a PEM private key") from None
        not_after = certificate_validity(cert_pem)[1]
        expires = min(expires, not_after) if expires else not_after
    return ResolvedCredential(token, cert_pem, key_pem, not_after), expires


class ExecCredentialProvider:
    """Runs a client-go exec plugin for one cluster and caches its ExecCredential.

    One run at a time (concurrent callers share it), shielded from the cancellation of any
    single request; the result is kept until 1 minute before `expirationTimestamp` (forever
    without one), a failure for `failure_backoff` seconds, so the plugin never runs per request.
    """

    def __init__(
        self,
        cluster: str,
        config: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        failure_backoff: float = 5.0,
        cluster_info: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self._config = config
        self._timeout = timeout
        self._failure_backoff = failure_backoff
        self._cluster_info = cluster_info
        self._clock = clock
        self._cached: ResolvedCredential | None = None
        self._refresh_at = 0.0
        self._failure: CredentialError | None = None
        self._retry_at = 0.0
        self._run_task: asyncio.Task[ResolvedCredential] | None = None
        self.runs = 0  # plugin executions, for tests and metrics
        # When the cached credential expires (its expirationTimestamp, or its certificate's notAfter), for /metrics.
        self.expires_at: datetime.datetime | None = None

    @property
    def command(self) -> str:
        """The plugin command as configured (safe to show: no credential)."""
        return str(self._config.get("command", ""))

    def _what(self) -> str:
        return f'exec plugin "{self.command}" for cluster "{self.cluster}"'

    async def get(self) -> ResolvedCredential:
        """The cached credential, or the result of one (shared) plugin run."""
        now = self._clock()
        if self._cached is not None and now < self._refresh_at:
            return self._cached
        if self._failure is not None and now < self._retry_at:
            raise self._failure
        if self._run_task is None:
            self._run_task = asyncio.get_running_loop().create_task(self._run(), name=f"exec-credential-{self.cluster}")
            self._run_task.add_done_callback(self._finished)
        return await asyncio.shield(self._run_task)

    def invalidate(self, credential: ResolvedCredential) -> None:
        """The member refused `credential` (401): the next request runs the plugin again, as client-go does.

        Only if it is still the cached one, so a burst of 401s for one credential causes one run.
        """
        if self._cached is credential:
            self._cached, self._refresh_at, self.expires_at = None, 0.0, None
            log.info("%s: the member answered 401; the plugin runs again on the next request", self._what())

    def _finished(self, task: asyncio.Task[ResolvedCredential]) -> None:
        self._run_task = None
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter was cancelled

    async def close(self) -> None:
        """Cancel a run in flight (its process group is killed)."""
        task = self._run_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CredentialError):
                await task

    async def _run(self) -> ResolvedCredential:
        try:
            credential, expires = await self._execute()
        except CredentialError as exc:
            # Never the plugin's output: its stderr may hold a token. Only how much there was.
            log.warning("%s (stderr: %d bytes, not logged)", exc, exc.stderr_bytes)
            self._failure, self._retry_at = exc, self._clock() + self._failure_backoff
            raise
        self._failure = None
        self._cached = credential
        self.expires_at = expires
        if expires is None:
            self._refresh_at = float("inf")
        else:
            left = (expires - _now()).total_seconds()
            # A credential shorter-lived than the margin is still reused for half its life.
            self._refresh_at = self._clock() + (left - _REFRESH_MARGIN if left > 2 * _REFRESH_MARGIN else left / 2)
        return credential

    def _argv_env(self) -> tuple[list[str], dict[str, str]]:
        cfg = self._config
        command = str(cfg.get("command") or "")
        if cfg.get("interactiveMode") == "Always":
            raise CredentialError(f"{self._what()} requires interactiveMode Always; the gateway cannot run it interactively")
        path = command if os.sep in command else shutil.which(command)
        if not path or not os.path.isfile(path):
            hint = cfg.get("installHint")
            raise CredentialError(f"{self._what()}: executable not found" + (f"; {hint}" if hint else ""))
        args = [str(a) for a in cfg.get("args") or []]
        env = dict(os.environ)
        for item in cfg.get("env") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                env[item["name"]] = str(item.get("value", ""))
        info = self._cluster_info if cfg.get("provideClusterInfo") else None
        env["KUBERNETES_EXEC_INFO"] = exec_info(str(cfg.get("apiVersion")), info)
        return [path, *args], env

    async def _execute(self) -> tuple[ResolvedCredential, datetime.datetime | None]:
        argv, env = self._argv_env()
        self.runs += 1
        try:
            # A new session, so a timeout can kill the plugin's children too (they hold its pipes).
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise CredentialError(f"{self._what()} could not start: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self._timeout):
                (out, out_overflow), err_bytes = await asyncio.gather(
                    _read_bounded(proc.stdout, _MAX_STDOUT), _count_bytes(proc.stderr)
                )
                code = await proc.wait()
        except TimeoutError:
            raise CredentialError(f"{self._what()} did not finish within {self._timeout:g}s") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if code != 0:
            raise CredentialError(f"{self._what()} failed with exit code {code}", stderr_bytes=err_bytes)
        if out_overflow:
            raise CredentialError(f"{self._what()} printed more than {_MAX_STDOUT} bytes")
        return parse_exec_credential(out, str(self._config.get("apiVersion")), self._what(), _now())


def credential_provider(
    cluster: ClusterGateway, *, exec_timeout: float = 30.0, exec_failure_backoff: float = 5.0
) -> CredentialProvider:
    """The provider for this cluster's credential type."""
    cred = cluster.credential
    if cred.type is CredentialType.DYNAMIC:
        return ExecCredentialProvider(
            cluster.name,
            cred.exec_config or {},
            timeout=exec_timeout,
            failure_backoff=exec_failure_backoff,
            cluster_info=cluster_info(cluster),
        )
    if cred.type is CredentialType.X509_CERTIFICATE:
        # Validity is checked on every use (StaticCredential.get), so an unreadable one is a 503 there.
        return StaticCredential(cluster.name, ResolvedCredential(None, cred.client_certificate_pem or b"", cred.client_key_pem))
    return StaticCredential(cluster.name, ResolvedCredential(cred.token))
