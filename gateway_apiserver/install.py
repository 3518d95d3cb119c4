"""`./dev install` (`python -m gateway_apiserver.install`): deploy/ onto the current kubectl context, in one step.

Run from the repository root. Writes certs/out/ when it is absent (a new CA and serving certificate
for the Service), refuses certificate material that cannot serve the Service, renders deploy/ with
`kubectl kustomize`, moves it to the namespace, Secret namespace and Service name asked for (the
reference's names replace cluster-gateway in place), and pipes it to `kubectl apply -f -`.
`--dry-run` prints the manifests instead and contacts no cluster.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import certs

# The names deploy/ is written with; everything else is derived from them.
BASE_NAMESPACE = "vela-system"
BASE_SERVICE = "gateway-apiserver"
BASE_PORT = 443
APISERVICE = "v1alpha1.cluster.core.oam.dev"
OPTIONAL_KINDS = ("Service", "APIService")

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """Where the gateway goes: the Service's namespace and name, and the namespace of the cluster Secrets."""

    namespace: str = BASE_NAMESPACE
    secret_namespace: str = BASE_NAMESPACE
    service: str = BASE_SERVICE
    port: int = BASE_PORT


def retarget(docs: Iterable[Manifest], target: Target) -> list[Manifest]:
    """deploy/'s rendered manifests moved to `target` (pure).

    Kustomize's namespace transformer cannot do this: it would move the kube-system RoleBinding and
    leave the APIService's service reference and the gateway's `--secret-namespace` behind.
    """
    out: list[Manifest] = []
    for original in docs:
        doc = copy.deepcopy(original)
        kind, meta = doc["kind"], doc["metadata"]
        if kind == "Namespace" and meta["name"] == BASE_NAMESPACE:
            for name in dict.fromkeys([target.namespace, target.secret_namespace]):
                namespace = copy.deepcopy(doc)
                namespace["metadata"]["name"] = name
                out.append(namespace)
            continue
        if meta.get("namespace") == BASE_NAMESPACE:
            # Roles and their bindings in the base namespace exist to read the cluster Secrets.
            meta["namespace"] = target.secret_namespace if kind in ("Role", "RoleBinding") else target.namespace
        for subject in doc.get("subjects", []):
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") == BASE_NAMESPACE:
                subject["namespace"] = target.namespace
        if kind == "Service" and meta["name"] == BASE_SERVICE:
            meta["name"] = target.service
            for port in doc["spec"]["ports"]:
                if port["port"] == BASE_PORT:
                    port["port"] = target.port
        if kind == "APIService" and doc["spec"].get("service", {}).get("name") == BASE_SERVICE:
            doc["spec"]["service"] = {"name": target.service, "namespace": target.namespace, "port": target.port}
        if kind == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["args"] = [_secret_namespace_arg(a, target.secret_namespace) for a in container.get("args", [])]
        out.append(doc)
    return out


def _secret_namespace_arg(arg: str, namespace: str) -> str:
    return f"--secret-namespace={namespace}" if arg.startswith("--secret-namespace=") else arg


def without(docs: Iterable[Manifest], kinds: Iterable[str]) -> list[Manifest]:
    """The manifests minus those of the given kinds (pure)."""
    skip = set(kinds)
    return [d for d in docs if d["kind"] not in skip]


def render(root: Path, kubectl: str) -> list[Manifest]:
    """`kubectl kustomize deploy/` as manifests (needs certs/out/; contacts no cluster)."""
    done = subprocess.run([kubectl, "kustomize", str(root / "deploy")], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise InstallError(f"kubectl kustomize deploy/ failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


class InstallError(Exception):
    """A reason the install cannot go on, for the user (exit 2)."""


def ensure_certs(out: Path, target: Target, days: int) -> str | None:
    """Write new certificate material when `out` has none; refuse material that cannot serve the Service.

    Returns what was done, for the user, or None when the existing material is used.
    """
    host = certs.aggregator_host(target.service, target.namespace)
    if not certs.present(out):
        certs.write(out, certs.generate(target.namespace, target.service, days))
        return f"wrote a new CA and serving certificate for {host} into {out}/ (tls.key is secret; never commit it)"
    found = certs.problems(out, host)
    if found:
        raise InstallError(
            "the certificate material in "
            f"{out}/ cannot serve {host}: "
            + "; ".join(found)
            + f". Move {out}/ away to have new material minted, or see certs/README.md to bring your own."
        )
    return None


def live_selector(kubectl: str, service: Manifest) -> dict[str, str] | None:
    """The selector of the Service of that name in the cluster, or None when there is none (or it cannot be read)."""
    meta = service["metadata"]
    done = subprocess.run(
        [kubectl, "-n", meta["namespace"], "get", "service", meta["name"], "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None  # absent; any other failure shows again in `kubectl apply`
    selector: dict[str, str] = json.loads(done.stdout).get("spec", {}).get("selector") or {}
    return selector


def selector_conflict(service: Manifest, live: dict[str, str] | None) -> str | None:
    """Why applying `service` over the live one would leave it matching none of our pods, or None (pure).

    `kubectl apply` merges label selectors: the live Service's other keys (cluster-gateway's) would stay.
    """
    ours: dict[str, str] = service["spec"]["selector"]
    if live is None or live == ours:
        return None
    meta = service["metadata"]
    patch = json.dumps([{"op": "replace", "path": "/spec/selector", "value": ours}], separators=(",", ":"))
    return (
        f"Service {meta['namespace']}/{meta['name']} exists with the selector {json.dumps(live, sort_keys=True)}: "
        "kubectl apply would merge ours into it and match none of our pods. Once our Deployment is ready, "
        f"replace it: kubectl -n {meta['namespace']} patch service {meta['name']} --type json -p '{patch}' "
        "(README: Replacing cluster-gateway)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The install command line."""
    parser = argparse.ArgumentParser(
        prog="./dev install", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--namespace", default=BASE_NAMESPACE, help="namespace of the Deployment, Service and TLS Secret (default: %(default)s)"
    )
    parser.add_argument("--secret-namespace", default=None, help="namespace of the cluster Secrets (default: the --namespace)")
    parser.add_argument("--service", default=BASE_SERVICE, help="name of the Service (default: %(default)s)")
    parser.add_argument("--port", type=int, default=BASE_PORT, help="port of the Service (default: %(default)s)")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=OPTIONAL_KINDS,
        help="leave this kind out (repeatable): to run beside cluster-gateway before the switch",
    )
    parser.add_argument("--days", type=int, default=365, help="validity of newly minted certificates (default: %(default)s)")
    parser.add_argument("--kubectl", default="kubectl", help="the kubectl binary (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the manifests; contact no cluster")
    return parser


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Install (or print) the gateway; exit 2 with one line when something is in the way."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    if not 1 <= args.port <= 65535:
        parser.error("--port must be between 1 and 65535")
    root = root if root is not None else Path()
    if not (root / "deploy" / "kustomization.yaml").is_file() or not (root / "certs" / "kustomization.yaml").is_file():
        parser.error(f"{root.resolve()} has no deploy/ and certs/: run this from the repository root")
    target = Target(args.namespace, args.secret_namespace or args.namespace, args.service, args.port)
    try:
        done = ensure_certs(root / "certs" / "out", target, args.days)
        if done:
            print(f"install: {done}", file=sys.stderr)
        manifests = without(retarget(render(root, args.kubectl), target), args.without)
    except InstallError as e:
        print(f"install: error: {e}", file=sys.stderr)
        return 2
    text = yaml.safe_dump_all(manifests, sort_keys=False)
    if args.dry_run:
        sys.stdout.write(text)
        return 0
    for service in (m for m in manifests if m["kind"] == "Service"):
        refusal = selector_conflict(service, live_selector(args.kubectl, service))
        if refusal:
            print(f"install: error: {refusal}", file=sys.stderr)
            return 2
    applied = subprocess.run([args.kubectl, "apply", "-f", "-"], input=text, text=True, check=False)
    if applied.returncode == 0 and "APIService" not in args.without:
        print(f"install: now watch `kubectl get apiservice {APISERVICE}` until AVAILABLE is True", file=sys.stderr)
    return applied.returncode


if __name__ == "__main__":
    sys.exit(main())
