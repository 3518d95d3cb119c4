"""Run the gateway: a Secret source feeding the registry, and the HTTPS server in front."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml
from aiohttp import web
from aiohttp.typedefs import Middleware
from kubernetes_asyncio.client import Configuration

from .api.probes import READY_CHECKS
from .api.watch import WatchSettings
from .app import build_app
from .app_keys import AUTHORIZER
from .config import Config, ConfigError
from .observability.access_log import ACCESS_LOGGER, AccessLogger
from .observability.metrics import METRICS
from .proxy.fail_fast import FailFast
from .proxy.fast_path import FastProxy
from .proxy.handler import FAIL_FAST, IMPERSONATION, PROXY_SETTINGS, ImpersonationHook
from .proxy.health_probe import ProbeSettings, add_health_probing
from .proxy.impersonation import EMPTY, ClusterImpersonation, load_proxy_config_file
from .proxy.konnectivity.channel import KonnectivitySettings
from .proxy.transport import ProxySettings
from .registry.cache import ClusterRegistry
from .registry.health import SecretHealthWriter
from .registry.informer import SecretInformer, load_hosting_config
from .registry.managed_cluster_source import ManagedClusterSource, ready_check
from .registry.managed_clusters import ManagedClusterCache
from .registry.model import ClusterGateway
from .registry.source import SecretSource
from .registry.standalone import FileSecretSource
from .registry.virtual_clusters import VirtualClusterRegistry
from .security.authorization import Authorizer, PathAllowList
from .security.delegation import DelegatedSecurity, Security, standalone_security
from .security.identity import ANONYMOUS, UserInfo
from .security.middleware import RequestAuthenticator, security_middleware
from .security.tls import ServingCert, ServingPairError, TLSServing, ensure_self_signed, peer_certificate
from .security.tls_policy import tls_policy
from .serving.listener import ConnectionTimeouts, listen
from .serving.shutdown import SHUTDOWN_CHECK, InFlight

log = logging.getLogger(__name__)

DEFAULT_SECURE_PORT = 9443  # the flag's default: its kubeconfig keeps the plain name


def serving_hosts(config: Config) -> list[str]:
    """Names the self-signed certificate covers: the in-cluster Service names, loopback and the bind address."""
    svc, ns = config.service_name, config.secret_namespace
    hosts = ["localhost", "127.0.0.1", "::1"]
    if not config.standalone:
        hosts = [f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", f"{svc}.{ns}", svc, *hosts]
    bind = config.bind_address
    if bind not in hosts and not ipaddress.ip_address(bind).is_unspecified:
        hosts.append(bind)  # clients dial the bind address itself (the standalone kubeconfig does)
    return hosts


def kubeconfig_path(cert_dir: Path, port: int) -> Path:
    """Where the standalone kubeconfig goes: `kubeconfig` for the default port, `kubeconfig-<port>` otherwise.

    One file per port, so a second gateway on another port does not overwrite the first's.
    """
    return cert_dir / ("kubeconfig" if port == DEFAULT_SECURE_PORT else f"kubeconfig-{port}")


async def delegation_configuration(flag: str, kubeconfig: Path | None) -> Configuration | None:
    """The cluster --authentication-kubeconfig or --authorization-kubeconfig names (None: the hosting cluster)."""
    if kubeconfig is None:
        return None
    try:
        return await load_hosting_config(str(kubeconfig))
    except Exception as exc:
        raise ConfigError(f"{flag} {kubeconfig}: {exc}") from None


async def hosting_configuration(config: Config) -> Configuration:
    """The hosting cluster's client configuration (in-cluster, or --kubeconfig); ConfigError if neither works."""
    try:
        return await load_hosting_config(str(config.kubeconfig) if config.kubeconfig else None)
    except Exception as exc:
        if config.kubeconfig is not None:
            raise ConfigError(f"--kubeconfig {config.kubeconfig}: {exc}") from None
        raise ConfigError(f"cannot load the hosting cluster configuration: {exc}") from None


def konnectivity_settings(config: Config) -> KonnectivitySettings | None:
    """The proxy-server ClusterProxy clusters are reached through (--proxy-host and its files), if any.
    The files are read when a ClusterProxy cluster is first dialled, as the reference does."""
    if not config.cluster_proxy_host:
        return None
    return KonnectivitySettings(
        config.cluster_proxy_host,
        config.cluster_proxy_port,
        Path(config.cluster_proxy_ca_cert),
        Path(config.cluster_proxy_cert),
        Path(config.cluster_proxy_key),
    )


def impersonation_hook(impersonation: ClusterImpersonation) -> ImpersonationHook:
    """The proxy's impersonation hook: the caller (or the rule's target) as Impersonate-* headers."""

    def hook(user: UserInfo | None, cluster: ClusterGateway, requested: bool) -> list[tuple[str, str]]:
        return impersonation.headers(cluster, user or ANONYMOUS, requested=requested)

    return hook


def write_local_kubeconfig(path: Path, host: str, port: int, cert: ServingCert) -> Path:
    """A kubeconfig for the standalone server: no user, since standalone mode has no authentication."""
    server_host = f"[{host}]" if ":" in host else host
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "gateway-apiserver",
                "cluster": {"server": f"https://{server_host}:{port}", "certificate-authority": str(cert.cert_file.resolve())},
            }
        ],
        # kubectl prompts for a password when a user has no credential at all; the server ignores this one.
        "users": [{"name": "standalone", "user": {"token": "standalone-mode-has-no-authentication"}}],
        "contexts": [{"name": "gateway-apiserver", "context": {"cluster": "gateway-apiserver", "user": "standalone"}}],
        "current-context": "gateway-apiserver",
    }
    # Written whole then renamed: with --workers every worker writes it, and a reader never sees half.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(yaml.safe_dump(config, sort_keys=False))
    partial.replace(path)
    return path


def listening_socket(config: Config) -> socket.socket:
    """The bound TCP socket for --bind-address and --secure-port; ConfigError naming the flag if it cannot be had."""
    host, port = config.bind_address, config.secure_port
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.workers > 1 or config.permit_port_sharing:  # the kernel balances new connections between binders
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--secure-port {port}: address {address} is already in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--bind-address {host}: cannot listen on {address}: no such address on this machine") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"--secure-port {port}: permission denied to listen on {address}") from None
        raise ConfigError(f"--bind-address {host} --secure-port {port}: cannot listen on {address}: {exc.strerror}") from None
    return sock


def serving_tls(config: Config) -> tuple[ServingCert, TLSServing]:
    """The serving certificate (given, or self-signed into --cert-dir) loaded for TLS; ConfigError naming the flag."""
    given = config.tls_cert_file is not None and config.tls_private_key_file is not None
    try:
        if config.tls_cert_file is not None and config.tls_private_key_file is not None:
            cert = ServingCert(config.tls_cert_file, config.tls_private_key_file)
        else:
            cert = ensure_self_signed(Path(config.cert_dir), serving_hosts(config))
        policy = tls_policy(config.tls_min_version, config.tls_cipher_suites)  # checked when the flags were parsed
        return cert, TLSServing(cert, poll_interval=config.tls_reload_interval, policy=policy)
    except ServingPairError as exc:
        if not given:
            raise ConfigError(f"--cert-dir {config.cert_dir}: apiserver.crt/apiserver.key: {exc.problem}") from None
        cert_flag = f"--tls-cert-file {config.tls_cert_file}"
        key_flag = f"--tls-private-key-file {config.tls_private_key_file}"
        where = {"certificate": cert_flag, "key": key_flag}.get(exc.part, f"{key_flag} and {cert_flag}")
        raise ConfigError(f"{where}: {exc.problem}") from None
    except OSError as exc:
        what = exc.strerror or str(exc)
        if not given:
            raise ConfigError(f"--cert-dir {config.cert_dir}: cannot write the self-signed certificate: {what}") from None
        path = exc.filename or f"{config.tls_cert_file} / {config.tls_private_key_file}"
        flag = "--tls-private-key-file" if str(path) == str(config.tls_private_key_file) else "--tls-cert-file"
        raise ConfigError(f"{flag} {path}: cannot read it: {what}") from None


class GatewayServer:
    """One gateway process: start() it, stop() it; `port` is known once started."""

    def __init__(
        self,
        config: Config,
        source: SecretSource | None = None,
        *,
        authenticator: RequestAuthenticator | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.registry = ClusterRegistry(config.secret_namespace)
        # OCM ManagedClusters of the hosting cluster (none standalone): --ocm-integration and VirtualCluster read them.
        self.managed_clusters = ManagedClusterCache()
        self.virtual_clusters = VirtualClusterRegistry(
            self.registry, self.managed_clusters, with_control_plane=config.virtual_cluster_with_control_plane
        )
        self._source = source
        self._source_task: asyncio.Task[None] | None = None
        self._managed_cluster_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.in_flight = InFlight()
        self.port = config.secure_port
        self.cert: ServingCert | None = None
        self.kubeconfig: Path | None = None  # standalone: a kubeconfig for this server
        self.app: web.Application | None = None
        self.tls: TLSServing | None = None
        self.security: Security | None = None

    async def start(self) -> None:
        """Start the Secret source and the HTTPS listener."""
        cfg = self.config
        # Configuration errors first, before any side effect.
        hosting = None if cfg.standalone else await hosting_configuration(cfg)
        authentication = await delegation_configuration("--authentication-kubeconfig", cfg.authentication_kubeconfig)
        authorization = await delegation_configuration("--authorization-kubeconfig", cfg.authorization_kubeconfig)
        rules = load_proxy_config_file(cfg.cluster_gateway_proxy_config) if cfg.cluster_gateway_proxy_config else EMPTY
        impersonation = ClusterImpersonation(rules, penetration_enabled=cfg.feature_gates["ClientIdentityPenetration"])
        source = self._source
        if source is None:
            if hosting is None:
                source = FileSecretSource(cfg.secrets_dir, cfg.kubeconfig_clusters, cfg.secret_namespace)
            else:
                source = SecretInformer(hosting, cfg.secret_namespace)
        # Listen before minting a certificate: a port in use is then reported before any side effect.
        sock = listening_socket(cfg)
        try:
            self.cert, self.tls = serving_tls(cfg)
        except BaseException:
            sock.close()
            raise
        await self.tls.start()
        if hosting is None:
            self.security = standalone_security()
        else:
            self.security = DelegatedSecurity(cfg, hosting, self.tls, authentication=authentication, authorization=authorization)
        await self.security.start()
        if hosting is None:
            self.managed_clusters.mark_unavailable()
        else:
            managed_cluster_source = ManagedClusterSource(
                hosting,
                watch=cfg.feature_gates["OCMClusterCache"],
                discovery_interval=cfg.managed_cluster_discovery_interval,
                refresh_interval=cfg.managed_cluster_refresh_interval,
            )
            if cfg.ocm_integration:
                self.registry.use_managed_clusters(self.managed_clusters, hide_dangling=cfg.hide_dangling_cluster_gateways)
            self._managed_cluster_task = asyncio.create_task(
                self._supervise("ManagedCluster", lambda: managed_cluster_source.run(self.managed_clusters)),
                name="managed-cluster-source",
            )
        self._source_task = asyncio.create_task(
            self._supervise("Secret", lambda: source.run(self.registry)), name="secret-source"
        )
        authenticator = self.authenticator or self.security.authenticator
        authorizer = self.authorizer or self.security.authorizer
        security: list[Middleware] = [
            security_middleware(
                authenticator,
                authorizer,
                peer_certificate,
                authorize_proxy_subpath=cfg.authorize_proxy_subpath,
                always_allow_paths=PathAllowList(cfg.always_allow_paths),
            )
        ]
        watch_settings = WatchSettings(cfg.bookmark_interval, cfg.min_request_timeout)
        # Standalone mode has no Secret to store health on: its writes answer 405.
        health_writer = None if hosting is None else SecretHealthWriter(hosting, cfg.secret_namespace)
        app = build_app(
            self.registry,
            watch_settings,
            security,
            serving=[self.in_flight.middleware],
            virtual_clusters=self.virtual_clusters,
            health_writer=health_writer,
        )
        self.app = app
        app[READY_CHECKS].update(self.security.ready_checks())
        for cache, counts in self.security.cache_counts().items():
            app[METRICS].count_cache(cache, counts)
        if hosting is not None:
            app[READY_CHECKS]["managed-clusters-synced"] = ready_check(self.managed_clusters, cfg.managed_cluster_sync_timeout)
        app[READY_CHECKS][SHUTDOWN_CHECK] = self.in_flight.ready_check
        app[PROXY_SETTINGS] = ProxySettings(
            connect_timeout=cfg.proxy_connect_timeout,
            request_timeout=cfg.proxy_request_timeout,
            konnectivity=konnectivity_settings(cfg),
        )
        add_health_probing(app, ProbeSettings(cfg.health_probe_interval, cfg.health_probe_timeout, cfg.health_probe_concurrency))
        if cfg.feature_gates["HealthinessCheck"]:
            app[FAIL_FAST] = FailFast(self.registry.health_observation, cfg.fail_fast_cool_down)
        app[IMPERSONATION] = impersonation_hook(impersonation)
        app[AUTHORIZER] = authorizer  # the fan-out authorizes each member as its own proxied request
        # handler_cancellation: a client leaving a watch must end its handler at once.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = sock.getsockname()[1]
        self._listener = await listen(
            self._runner,
            sock,
            self.tls.context,
            ConnectionTimeouts(read_header=cfg.read_header_timeout, idle=cfg.idle_timeout),
            access_log_class=AccessLogger,
            access_log=logging.getLogger(ACCESS_LOGGER),
            fast_handler=self._fast_proxy(app, authenticator, authorizer) if cfg.proxy_fast_path else None,
        )
        log.info(
            "serving on https://%s:%d (%s mode)",
            cfg.bind_address,
            self.port,
            "standalone" if cfg.standalone else "hosting-cluster",
        )
        if cfg.standalone:
            path = kubeconfig_path(Path(cfg.cert_dir), self.port)
            self.kubeconfig = write_local_kubeconfig(path, cfg.bind_address, self.port, self.cert)
            log.info("try: kubectl --kubeconfig %s get clustergateways", self.kubeconfig)

    def _fast_proxy(self, app: web.Application, authenticator: RequestAuthenticator, authorizer: Authorizer) -> FastProxy:
        """The fast lane's proxy, with the same security, settings and tracking as the application's."""
        return FastProxy(
            app,
            authenticator,
            authorizer,
            authorize_proxy_subpath=self.config.authorize_proxy_subpath,
            in_flight=self.in_flight,
            access_log=logging.getLogger(ACCESS_LOGGER),
        )

    async def _supervise(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s source failed; restarting it in %.1fs", what, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()

    async def shutdown(self) -> None:
        """Stop gracefully, as the kube-apiserver does (see serving/shutdown.py), then stop()."""
        cfg = self.config
        runner_server = self._runner.server if self._runner is not None else None
        try:
            await self.in_flight.shutdown(
                runner_server, self._stop_listening, cfg.shutdown_delay_duration, cfg.shutdown_grace_period
            )
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop listening, close every connection at once, and stop the source."""
        self._stop_listening()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.security is not None:
            await self.security.stop()
        if self.tls is not None:
            await self.tls.stop()
        for task in (self._source_task, self._managed_cluster_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._source_task = self._managed_cluster_task = None


async def serve_forever(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (then shut down gracefully), or until cancelled (then stop at once)."""
    server = GatewayServer(config)
    await server.start()
    try:
        await (stop or asyncio.Event()).wait()
    except asyncio.CancelledError:
        await server.stop()
        raise
    await server.shutdown()
