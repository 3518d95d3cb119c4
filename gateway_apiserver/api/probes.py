"""`/healthz`, `/livez`, `/readyz` (kube-style checks, `?verbose`) and `/version`."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable

from aiohttp import web

from .. import __version__
from ..registry.cache import ClusterRegistry

Check = Callable[[], str | None]  # None when healthy, else the reason it fails
READY_CHECKS = web.AppKey("ready_checks", dict[str, Check])


def _render(request: web.Request, checks: dict[str, Check], kind: str) -> web.Response:
    excluded = set(request.query.getall("exclude", []))
    lines: list[str] = []
    failed: list[str] = []
    for name, check in checks.items():
        if name in excluded:
            lines.append(f"[+]{name} excluded: ok")
            continue
        reason = check()
        if reason is None:
            lines.append(f"[+]{name} ok")
        else:
            lines.append(f"[-]{name} failed: {reason}")
            failed.append(name)
    verbose = "verbose" in request.query
    if failed:
        body = "\n".join(lines) + f"\n{kind} check failed\n"
        return web.Response(status=500, text=body, content_type="text/plain")
    body = "\n".join(lines) + f"\n{kind} check passed\n" if verbose else "ok"
    return web.Response(text=body, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})


def registry_synced(registry: ClusterRegistry) -> Check:
    """Ready only once the first listing of cluster Secrets has been loaded."""

    def check() -> str | None:
        return None if registry.synced.is_set() else "the first list of cluster Secrets has not completed"

    return check


def _ping() -> str | None:
    return None


async def healthz(request: web.Request) -> web.Response:
    """Liveness, the legacy path."""
    return _render(request, {"ping": _ping}, "healthz")


async def livez(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return _render(request, {"ping": _ping}, "livez")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: ping plus every registered check (the registry's first sync)."""
    registered: dict[str, Check] = request.app[READY_CHECKS]
    checks: dict[str, Check] = {"ping": _ping, **registered}
    name = request.match_info.get("check")
    if name is not None:
        if name not in checks:
            raise web.HTTPNotFound()
        checks = {name: checks[name]}
    return _render(request, checks, "readyz")


async def version(request: web.Request) -> web.Response:
    """Build information, in the shape of the kube-apiserver's `version.Info`."""
    major, minor = __version__.split(".")[:2]
    return web.json_response(
        {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{__version__}",
            "gitCommit": "",
            "gitTreeState": "",
            "buildDate": "",
            "goVersion": f"python{platform.python_version()}",
            "compiler": sys.implementation.name,
            "platform": f"{sys.platform}/{platform.machine().lower()}",
        }
    )


def add_probe_routes(app: web.Application) -> None:
    """Register the probe and version routes."""
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/healthz/ping", healthz)
    r.add_get("/livez", livez)
    r.add_get("/livez/ping", livez)
    r.add_get("/readyz", readyz)
    r.add_get("/readyz/{check}", readyz)
    r.add_get("/version", version)
