"""`gateway-apiserver kubeconfig CLUSTER | --all`: a kubeconfig that reaches member clusters through the hub.

Each member's server is the hub's server followed by the cluster's proxy path; everything else (CA,
TLS server name, proxy, the user and its credentials: token, client certificate, exec plugin,
auth provider) is the hub's own, copied from the hub's kubeconfig. Relative file paths are made
absolute, as kubectl resolves them against the file they are written in. A CLUSTER is not looked
up (the command works offline); `--all` lists the hub's ClusterGateways with the hub's credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .paths import InvalidClusterName, check_cluster_name, member_proxy_url

PROG = "gateway-apiserver kubeconfig"
KubeConfig = dict[str, Any]


class ExportError(Exception):
    """A one-line reason the command cannot write the kubeconfig (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ExportError(message)


def build_parser() -> argparse.ArgumentParser:
    """The subcommand's flags (also used to check the README's commands)."""
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Print a kubeconfig whose server is the hub's proxy URL of CLUSTER (or of every ClusterGateway, "
        "one context each), with the hub context's CA and user.",
    )
    p.add_argument("cluster", nargs="?", metavar="CLUSTER", help="the ClusterGateway to target")
    p.add_argument(
        "--hub-kubeconfig", type=Path, metavar="PATH", help="the hub's kubeconfig (default: $KUBECONFIG, else ~/.kube/config)"
    )
    p.add_argument("--context", metavar="NAME", help="the hub context to copy (default: its current-context)")
    p.add_argument("--all", action="store_true", help="one context per ClusterGateway the hub lists")
    return p


def main(argv: list[str]) -> int:
    """Print the kubeconfig; one line on standard error and exit 2 on any error."""
    try:
        args = build_parser().parse_args(argv)
        if (args.cluster is None) == (not args.all):
            raise ExportError("give a CLUSTER or --all" if args.cluster is None else "give a CLUSTER or --all, not both")
        hub = load_hub_kubeconfig(hub_kubeconfig_paths(args.hub_kubeconfig))
        clusters = [args.cluster] if args.cluster is not None else asyncio.run(list_cluster_names(hub, args.context))
        sys.stdout.write(yaml.safe_dump(member_kubeconfig(hub, args.context, clusters), sort_keys=False))
    except ExportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def hub_kubeconfig_paths(flag: Path | None) -> list[Path]:
    """The files to read, as kubectl chooses them: the flag, else each path of $KUBECONFIG, else ~/.kube/config."""
    if flag is not None:
        if not flag.is_file():
            raise ExportError(f"--hub-kubeconfig {flag}: no such file")
        return [flag]
    listed = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing = [p for p in listed if p.is_file()]
        if not existing:
            raise ExportError(f"KUBECONFIG={os.environ['KUBECONFIG']}: no such file")
        return existing
    default = Path.home() / ".kube" / "config"
    if not default.is_file():
        raise ExportError("no hub kubeconfig: pass --hub-kubeconfig or set KUBECONFIG")
    return [default]


def load_hub_kubeconfig(paths: list[Path]) -> KubeConfig:
    """The files merged as kubectl merges them (the first file to name an entry or current-context wins),
    with relative file references made absolute against the file that holds them."""
    merged: KubeConfig = {"clusters": [], "users": [], "contexts": [], "current-context": ""}
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ExportError(f"{path}: not a readable kubeconfig: {type(exc).__name__}") from None
        if not isinstance(loaded, dict):
            raise ExportError(f"{path}: not a kubeconfig (a YAML mapping)")
        base = path.resolve().parent
        for section, body_key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            known = {entry["name"] for entry in merged[section]}
            for entry in loaded.get(section) or []:
                if isinstance(entry, dict) and isinstance(entry.get(body_key), dict) and entry.get("name") not in known:
                    merged[section].append({"name": entry.get("name"), body_key: _absolute_paths(entry[body_key], base)})
                    known.add(entry.get("name"))
        merged["current-context"] = merged["current-context"] or str(loaded.get("current-context") or "")
    return merged


def member_kubeconfig(hub: KubeConfig, context: str | None, clusters: list[str]) -> KubeConfig:
    """One cluster entry and one context per member (named after it), all sharing the hub context's user.

    With a single cluster, its context is the current one; with several, none is (choose with --context)."""
    _, hub_cluster, hub_user = _hub_entries(hub, context)
    out: KubeConfig = {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []}
    for name in clusters:
        try:
            server = member_proxy_url(str(hub_cluster["cluster"].get("server") or ""), check_cluster_name(name))
        except InvalidClusterName as exc:
            raise ExportError(str(exc)) from None
        out["clusters"].append({"name": name, "cluster": {**copy.deepcopy(hub_cluster["cluster"]), "server": server}})
        member_context: dict[str, Any] = {"cluster": name}
        if hub_user is not None:
            member_context["user"] = hub_user["name"]
        out["contexts"].append({"name": name, "context": member_context})
    if hub_user is not None:
        out["users"].append(copy.deepcopy(hub_user))
    if len(clusters) == 1:
        out["current-context"] = clusters[0]
    return out


async def list_cluster_names(hub: KubeConfig, context: str | None) -> list[str]:
    """The names of the hub's ClusterGateways, listed with the hub context's own credentials."""
    import aiohttp
    import kubernetes_asyncio.client
    import kubernetes_asyncio.config

    from .fan_out import describe_error
    from .hub_asyncio import list_cluster_gateways_asyncio

    hub_context, hub_cluster, _ = _hub_entries(hub, context)
    server = hub_cluster["cluster"].get("server")
    configuration = kubernetes_asyncio.client.Configuration()
    try:
        await kubernetes_asyncio.config.load_kube_config_from_dict(
            hub, context=hub_context["name"], client_configuration=configuration
        )
    except Exception as exc:  # the package raises bare exceptions for unusable credentials (exec plugin, files)
        raise ExportError(f"cannot use the hub context {hub_context['name']!r}: {type(exc).__name__}") from None
    try:
        async with kubernetes_asyncio.client.ApiClient(configuration) as api:
            return (await list_cluster_gateways_asyncio(api)).names()
    except kubernetes_asyncio.client.ApiException as exc:
        raise ExportError(f"cannot list clustergateways on the hub {server}: {describe_error(exc)}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ExportError(f"cannot reach the hub {server}: {exc or type(exc).__name__}") from None


def _hub_entries(hub: KubeConfig, context: str | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    name = context or hub.get("current-context")
    if not name:
        raise ExportError("the hub kubeconfig has no current-context: pass --context")
    hub_context = _named(hub, "contexts", name)
    if hub_context is None:
        raise ExportError(
            f"--context {name}: no such context in the hub kubeconfig" if context else f"current-context {name}: no such context"
        )
    cluster_name = hub_context["context"].get("cluster")
    hub_cluster = _named(hub, "clusters", cluster_name)
    if hub_cluster is None or not hub_cluster["cluster"].get("server"):
        raise ExportError(f"context {name}: cluster {cluster_name!r} is missing or has no server")
    user_name = hub_context["context"].get("user")
    hub_user = _named(hub, "users", user_name) if user_name else None
    if user_name and hub_user is None:
        raise ExportError(f"context {name}: no such user {user_name!r}")
    return hub_context, hub_cluster, hub_user


def _named(config: Mapping[str, Any], section: str, name: object) -> dict[str, Any] | None:
    return next((entry for entry in config.get(section) or [] if entry.get("name") == name), None)


# File references kubectl resolves against the kubeconfig's directory.
_FILE_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


def _absolute_paths(body: dict[str, Any], base: Path) -> dict[str, Any]:
    fixed = copy.deepcopy(body)
    for key in _FILE_KEYS:
        value = fixed.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            fixed[key] = str(base / value)
    plugin = fixed.get("exec")
    if isinstance(plugin, dict):
        command = plugin.get("command")
        if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
            plugin["command"] = str(base / command)  # a bare name is looked up on the PATH, as by kubectl
    return fixed
