"""Kubeconfig contexts as cluster Secrets, for standalone mode's `--kubeconfig-clusters`.

Each context becomes one Secret named after it: its cluster's server, CA, proxy-url and
tls-server-name, and its user's credential (a token first, then a client certificate, then
exec). A context name that is not a valid object name is mapped (`context_object_name`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..base.validation import dns1123_subdomain_errors
from .file_parsing import Stamp, Unreadable, Unusable, YamlLoader, b64, file_stamp, yaml_error
from .model import LABEL_CREDENTIAL_TYPE, CredentialType
from .source import Secret

log = logging.getLogger(__name__)

_MAX_NAME = 253  # the longest DNS-1123 subdomain, hence Secret name


def context_object_name(context: str) -> str | None:
    """The cluster name a kubeconfig context is served as; None if nothing usable is left.

    A context name that is a valid object name (a DNS-1123 subdomain) once lower-cased is used
    as it is. Otherwise every run of characters other than a-z and 0-9 becomes one '-', '-' is
    trimmed from both ends, and the result is cut to 253 characters:
    `arn:aws:eks:us-east-1:123:cluster/prod` -> `arn-aws-eks-us-east-1-123-cluster-prod`,
    `admin@Kind-Prod` -> `admin-kind-prod`.
    """
    lowered = context.lower()
    if not dns1123_subdomain_errors(lowered):
        return lowered
    mapped = re.sub(r"[^a-z0-9]+", "-", lowered).strip("-")[:_MAX_NAME].rstrip("-")
    return mapped or None


def _object_names(contexts: list[str], origin: Path) -> dict[str, str]:
    """Context name -> object name, for the contexts whose object name is not taken.

    On a clash the context whose name needs no change wins, then the first in sorted order;
    each loser is logged. The result does not depend on the order of contexts in the file.
    """
    claimed: dict[str, str] = {}
    for context in sorted(contexts, key=lambda c: (c != c.lower() or bool(dns1123_subdomain_errors(c)), c)):
        name = context_object_name(context)
        if name is None:
            log.warning("kubeconfig %s: skipping context %r: no letter or digit to name a cluster after", origin, context)
        elif name in claimed:
            log.warning(
                "kubeconfig %s: skipping context %r: it would be served as %r, which context %r already is",
                origin,
                context,
                name,
                claimed[name],
            )
        else:
            if name != context:
                log.info("kubeconfig %s: context %r is served as cluster %r", origin, context, name)
            claimed[name] = context
    return {context: name for name, context in claimed.items()}


def _named(entries: Any, field: str) -> dict[str, Mapping[str, Any]]:
    if not isinstance(entries, list):
        return {}
    return {
        e["name"]: e.get(field) or {}
        for e in entries
        if isinstance(e, Mapping) and isinstance(e.get("name"), str) and isinstance(e.get(field) or {}, Mapping)
    }


class KubeconfigReader:
    """Turns the contexts of one kubeconfig into Secrets, remembering the files it read."""

    def __init__(self, path: Path, namespace: str) -> None:
        self.path = path
        self.namespace = namespace
        self.referenced: dict[Path, Stamp | None] = {}

    def _resolve(self, value: str) -> Path:
        # As client-go: relative paths in a kubeconfig are relative to its directory.
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def _read(self, value: str, what: str) -> bytes:
        path = self._resolve(value)
        self.referenced[path] = file_stamp(path)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise Unusable(f"cannot read {what} {path}: {exc.strerror}") from None

    def _inline_or_file(self, section: Mapping[str, Any], key: str) -> str | None:
        """base64 of `<key>-data` (already base64 in a kubeconfig) or of the file `<key>`."""
        inline = section.get(f"{key}-data")
        if inline:
            compact = "".join(str(inline).split())
            try:
                base64.b64decode(compact, validate=True)
            except (binascii.Error, ValueError):
                raise Unusable(f"{key}-data is not valid base64") from None
            return compact
        if section.get(key):
            return b64(self._read(str(section[key]), key))
        return None

    def read(self) -> list[Secret]:
        """The Secrets of all usable contexts; a warning for each skipped one.

        Raises `Unreadable` when the kubeconfig itself cannot be read or parsed.
        """
        self.referenced = {}
        try:
            config = yaml.load(self.path.read_text(encoding="utf-8"), Loader=YamlLoader)
        except (OSError, UnicodeDecodeError) as exc:
            raise Unreadable(f"cannot read it: {getattr(exc, 'strerror', None) or 'not UTF-8'}") from None
        except yaml.YAMLError as exc:
            raise Unreadable(f"not valid YAML: {yaml_error(exc)}") from None
        if not isinstance(config, Mapping):
            raise Unreadable("not a kubeconfig", quiet=config is None)
        clusters, users = _named(config.get("clusters"), "cluster"), _named(config.get("users"), "user")
        contexts = _named(config.get("contexts"), "context")
        secrets = []
        for context_name, name in _object_names(list(contexts), self.path).items():
            try:
                secrets.append(self._context_secret(name, contexts[context_name], clusters, users))
            except Unusable as exc:
                log.warning("kubeconfig %s: skipping context %r: %s", self.path, context_name, exc)
        return secrets

    def _context_secret(
        self,
        name: str,
        context: Mapping[str, Any],
        clusters: Mapping[str, Mapping[str, Any]],
        users: Mapping[str, Mapping[str, Any]],
    ) -> Secret:
        cluster = clusters.get(str(context.get("cluster")))
        if cluster is None:
            raise Unusable(f"cluster {context.get('cluster')!r} is not defined")
        user = users.get(str(context.get("user")))
        if user is None:
            raise Unusable(f"user {context.get('user')!r} is not defined")
        server = cluster.get("server")
        if not isinstance(server, str) or not server:
            raise Unusable("its cluster has no server")
        data = {"endpoint": b64(server.encode())}
        if cluster.get("insecure-skip-tls-verify") is not True:
            ca = self._inline_or_file(cluster, "certificate-authority")
            if ca:
                data["ca.crt"] = ca
        if cluster.get("proxy-url"):
            data["proxy-url"] = b64(str(cluster["proxy-url"]).encode())
        if cluster.get("tls-server-name"):
            data["tls-server-name"] = b64(str(cluster["tls-server-name"]).encode())
        credential_type, credential = self._credential(user)
        data.update(credential)
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {LABEL_CREDENTIAL_TYPE: credential_type.value},
            },
            "data": data,
        }

    def _credential(self, user: Mapping[str, Any]) -> tuple[CredentialType, dict[str, str]]:
        # One credential per Secret: a token first, then a client certificate, then exec.
        if user.get("token") or user.get("tokenFile"):
            if user.get("token"):
                token = str(user["token"])
            else:
                token = self._read(str(user["tokenFile"]), "tokenFile").decode(errors="replace")
            if not token.strip():
                raise Unusable("its user's token is empty")
            return CredentialType.SERVICE_ACCOUNT_TOKEN, {"token": b64(token.strip().encode())}
        cert = self._inline_or_file(user, "client-certificate")
        key = self._inline_or_file(user, "client-key")
        if cert or key:
            if not (cert and key):
                raise Unusable("its user has a client certificate without a key, or a key without a certificate")
            return CredentialType.X509_CERTIFICATE, {"tls.crt": cert, "tls.key": key}
        exec_config = user.get("exec")
        if isinstance(exec_config, Mapping) and exec_config.get("command"):
            config = dict(exec_config)
            command = str(config["command"])
            if "/" in command:  # client-go resolves only path-like commands, not PATH lookups
                config["command"] = str(self._resolve(command))
            return CredentialType.DYNAMIC, {"exec": b64(json.dumps(config).encode())}
        raise Unusable("its user has no token, tokenFile, client certificate or exec credential")
