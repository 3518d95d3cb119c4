"""Secret → ClusterGateway conversion: pure functions, compatible with cluster-gateway's format."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from yarl import URL

from ..base.api_group import GROUP_VERSION
from .managed_clusters import ManagedCluster
from .model import (
    ANNOTATION_CLUSTER_ALIAS,
    ANNOTATION_HEALTHY,
    ANNOTATION_HEALTHY_REASON,
    ANNOTATION_PROXY_CONFIGURATION,
    KIND,
    LABEL_CREDENTIAL_TYPE,
    LABEL_ENDPOINT_TYPE,
    ClusterCredential,
    ClusterGateway,
    CredentialType,
    EndpointType,
    encode,
)

# uuid5 namespace so a ClusterGateway uid is stable for a Secret uid but never equal to it.
_UID_NAMESPACE = uuid.UUID("7c1f5d2e-4a8b-5f3c-9e6d-0b1a2c3d4e5f")
_PROXY_SCHEMES = frozenset({"http", "https", "socks5", "socks5h"})
# Unicode control, format (e.g. zero-width), surrogate, private, unassigned, space and separator
# characters: none belongs in a URL or an HTTP header, and \r\n would split a request.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Visible ASCII: what may appear in an Authorization header's token (RFC 9110 field-vchar, no obs-text).
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")
# A DNS name or an IP address, as a TLS server name (SNI and certificate check).
_SERVER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?")
REDACTED = "REDACTED"  # replaces a proxy-url's userinfo wherever the URL is served or logged
_EXEC_API_VERSIONS = frozenset({"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"})
# Go's strconv.ParseBool, which the reference uses for the healthy annotation.
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


class ConversionError(ValueError):
    """The Secret does not describe a usable cluster; the message says why."""


def gateway_uid(secret_uid: str | None, namespace: str, name: str) -> str:
    """A ClusterGateway uid derived deterministically from its Secret."""
    seed = secret_uid or f"{namespace}/{name}"
    return str(uuid.uuid5(_UID_NAMESPACE, seed))


def _decode(data: Mapping[str, Any], key: str) -> bytes | None:
    raw = data.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConversionError(f"data[{key!r}] is not a base64 string")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConversionError(f"data[{key!r}] is not valid base64: {exc}") from None


def _text(value: bytes, key: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ConversionError(f"data[{key!r}] is not UTF-8 text") from None


def is_bearer_token(value: str) -> bool:
    """True if `value` can be sent as `Authorization: Bearer <value>`: visible ASCII, no space or control."""
    return _TOKEN_CHARACTERS.fullmatch(value) is not None


def _unsafe_character(value: str) -> bool:
    """True if `value` holds a control, format or whitespace character (none belong in a URL or header)."""
    return any(unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in value)


def _authority(url: str) -> str:
    """The `user:password@host:port` part of a URL, found without parsing (so it works on any input)."""
    _, sep, rest = url.partition("://")
    return re.split(r"[/?#]", rest if sep else url, maxsplit=1)[0]


def redact_url(url: str) -> str:
    """`url` with any userinfo (user and password) replaced by the fixed marker REDACTED."""
    authority = _authority(url)
    if "@" not in authority:
        return url
    scheme, sep, rest = url.partition("://")
    rest = rest if sep else url
    host_and_path = authority.rpartition("@")[2] + rest[len(authority) :]
    return f"{scheme}://{REDACTED}@{host_and_path}" if sep else f"{REDACTED}@{host_and_path}"


def _quoted(url: str) -> str:
    """`url` as an error message may show it: redacted, without query or fragment, or not at all."""
    shown = re.split(r"[?#]", redact_url(url), maxsplit=1)[0]
    # An '@' left over means userinfo this crude split did not find (e.g. a '/' in the password).
    return "(not shown: it holds an '@')" if "@" in shown.replace(f"{REDACTED}@", "", 1) else repr(shown)


def _check_url(url: str, what: str, schemes: frozenset[str]) -> None:
    # Messages never quote a URL's userinfo, query or fragment: a proxy-url may carry a password.
    shown = _quoted(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        detail = "" if "@" in url else f": {exc}"  # the parser's message may quote the userinfo
        raise ConversionError(f"{what} {shown} is not a valid URL{detail}") from None
    if parts.scheme not in schemes or "://" not in url:
        # Without "://" what urlsplit calls the scheme may be a user name ("user:pw@host").
        scheme = parts.scheme if "://" in url and parts.scheme else "(none)"
        raise ConversionError(f"{what} {shown} has scheme {scheme!r}, want one of {', '.join(sorted(schemes))}")
    if not parts.hostname:
        raise ConversionError(f"{what} {shown} has no host")
    if parts.query or parts.fragment:
        raise ConversionError(f"{what} {shown} must not carry a query or fragment")
    try:
        host = URL(url).host  # the transport's parser decodes the host name (IDNA) lazily, and more strictly
    except ValueError:
        host = None
    if not host:
        raise ConversionError(f"{what} {shown} has a host name that is not valid (IDNA)")
    del port


def _url_value(data: Mapping[str, Any], key: str) -> str | None:
    """A URL-valued key: surrounding whitespace trimmed (a file's trailing newline), nothing unsafe inside."""
    raw = _decode(data, key)
    if raw is None:
        return None
    value = _text(raw, key).strip()
    if _unsafe_character(value):
        raise ConversionError(f"data[{key!r}] contains control or whitespace characters; a URL must not")
    return value


def _check_certificates(pem: bytes, what: str) -> None:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConversionError(f"{what} is not a valid PEM certificate bundle: {exc}") from None
    if not certs:
        raise ConversionError(f"{what} holds no PEM certificate")


def _check_private_key(pem: bytes, what: str) -> None:
    try:
        # Skipping RSA's slow consistency check keeps a 10,000-Secret sync fast; we only
        # need to know the key is a parseable, unencrypted PEM key.
        load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"{what} is not a valid unencrypted PEM private key: {exc}") from None


def _credential(kind: CredentialType, data: Mapping[str, Any]) -> ClusterCredential:
    if kind is CredentialType.SERVICE_ACCOUNT_TOKEN:
        token = _decode(data, "token")
        # Surrounding whitespace is trimmed, as client-go trims a token file (`--from-file` adds a newline).
        text = _text(token, "token").strip() if token is not None else ""
        if not text:
            raise ConversionError("ServiceAccountToken credential needs a non-empty data['token']")
        if not is_bearer_token(text):
            # Never quote the token: the reason is served by GET and logged.
            raise ConversionError(
                "data['token'] contains control, whitespace or non-ASCII characters; "
                "a bearer token is visible ASCII only (it is sent in the Authorization header)"
            )
        return ClusterCredential(kind, token=text)
    if kind is CredentialType.X509_CERTIFICATE:
        cert, key = _decode(data, "tls.crt"), _decode(data, "tls.key")
        if not cert or not key:
            raise ConversionError("X509Certificate credential needs data['tls.crt'] and data['tls.key']")
        _check_certificates(cert, "data['tls.crt']")
        _check_private_key(key, "data['tls.key']")
        return ClusterCredential(kind, client_certificate_pem=cert, client_key_pem=key)
    raw = _decode(data, "exec")
    if not raw:
        raise ConversionError("Dynamic credential needs data['exec'] (a client-go ExecConfig as JSON)")
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise ConversionError(f"data['exec'] is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("command"), str) or not config["command"]:
        raise ConversionError("data['exec'] must be a JSON object with a non-empty 'command'")
    api_version = config.get("apiVersion")
    if api_version not in _EXEC_API_VERSIONS:
        raise ConversionError(f"data['exec'].apiVersion {api_version!r} is not one of {', '.join(sorted(_EXEC_API_VERSIONS))}")
    return ClusterCredential(kind, exec_config=config)


def _server_name(data: Mapping[str, Any]) -> str | None:
    raw = _decode(data, "tls-server-name")
    if raw is None:
        return None
    name = _text(raw, "tls-server-name").strip()
    if not _SERVER_NAME.fullmatch(name):
        raise ConversionError("data['tls-server-name'] must be a DNS name or an IP address")
    return name


def _refuse_plain_http(address: str, credential_type: CredentialType, ca_key: str | None, server_name: str | None) -> None:
    """An http:// endpoint would send the credential in clear and ignore any TLS setting: refuse it."""
    if ca_key is not None or server_name is not None:
        what = f"data[{ca_key!r}]" if ca_key is not None else "data['tls-server-name']"
        raise ConversionError(f"endpoint {address!r} is plain http, so {what} would be ignored; use an https:// endpoint")
    raise ConversionError(
        f"endpoint {address!r} is plain http: the {credential_type.value} credential would cross the network "
        "unencrypted; use an https:// endpoint"
    )


def _managed_cluster_endpoint(mc: ManagedCluster, credential_type: CredentialType) -> tuple[str, bytes | None, bool]:
    """(address, CA bundle, insecure) from a ManagedCluster's first client config, checked as a Secret's would be."""
    config = mc.client_config
    where = f"ManagedCluster {mc.name!r}"
    if config is None:
        raise ConversionError(f"{where} has no spec.managedClusterClientConfigs, so it names no endpoint for the cluster")
    address = config.url.strip()
    what = f"{where} spec.managedClusterClientConfigs[0].url"
    if _unsafe_character(address):
        raise ConversionError(f"{what} contains control or whitespace characters; a URL must not")
    if "@" in _authority(address):
        raise ConversionError(f"{what} carries credentials in its URL (user:password@host), which are not supported")
    _check_url(address, what, frozenset({"https", "http"}))
    if urlsplit(address).scheme == "http":
        raise ConversionError(
            f"{what} {address!r} is plain http: the {credential_type.value} credential would cross the network "
            "unencrypted; use an https:// URL"
        )
    if config.ca_bundle_problem is not None:
        raise ConversionError(f"{where}: {config.ca_bundle_problem}")
    if not config.ca_bundle:
        return address, None, False  # no CA: verified against the system roots, as the reference does
    _check_certificates(config.ca_bundle, f"{where} spec.managedClusterClientConfigs[0].caBundle")
    return address, config.ca_bundle, False


def secret_to_cluster_gateway(secret: Mapping[str, Any], managed_cluster: ManagedCluster | None = None) -> ClusterGateway:
    """Convert one cluster Secret (Kubernetes JSON shape) into a ClusterGateway.

    With `managed_cluster` (--ocm-integration, the ManagedCluster of the Secret's name), a Const
    endpoint and its CA come from the ManagedCluster's first client config and the Secret's
    `endpoint` and CA are not read; the Secret still gives the credential and everything else.
    Raises ConversionError naming the problem: unknown type, missing endpoint, bad URL,
    bad base64 or bad PEM. Credential material is kept out of `manifest` and `json`.
    """
    meta = secret.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ConversionError("the Secret has no metadata.name")
    labels: dict[str, str] = dict(meta.get("labels") or {})
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    data: Mapping[str, Any] = secret.get("data") or {}

    raw_type = labels.get(LABEL_CREDENTIAL_TYPE)
    if raw_type is None:
        raise ConversionError(f"missing label {LABEL_CREDENTIAL_TYPE}")
    try:
        credential_type = CredentialType(raw_type)
    except ValueError:
        raise ConversionError(
            f"unknown credential type {raw_type!r} in label {LABEL_CREDENTIAL_TYPE} "
            f"(want one of {', '.join(t.value for t in CredentialType)})"
        ) from None
    raw_endpoint_type = labels.get(LABEL_ENDPOINT_TYPE) or EndpointType.CONST.value
    try:
        endpoint_type = EndpointType(raw_endpoint_type)
    except ValueError:
        raise ConversionError(
            f"unknown endpoint type {raw_endpoint_type!r} in label {LABEL_ENDPOINT_TYPE} "
            f"(want one of {', '.join(t.value for t in EndpointType)})"
        ) from None

    address: str | None = None
    ca_bundle: bytes | None = None
    proxy_url: str | None = None
    insecure = False
    tls_server_name = _server_name(data)
    if endpoint_type is EndpointType.CONST and managed_cluster is not None:
        address, ca_bundle, insecure = _managed_cluster_endpoint(managed_cluster, credential_type)
        proxy_url = _url_value(data, "proxy-url") or None
        if proxy_url:
            _check_url(proxy_url, "proxy-url", _PROXY_SCHEMES)
    elif endpoint_type is EndpointType.CONST:
        # One trailing newline (and any surrounding whitespace) is trimmed, as the reference does.
        address = _url_value(data, "endpoint")
        if not address:
            raise ConversionError("missing data['endpoint'] (the member cluster's API server URL)")
        if "@" in _authority(address):
            # Never quote the URL here: it holds a password.
            raise ConversionError(
                "data['endpoint'] carries credentials in its URL (user:password@host), which are not supported; "
                "put the credential in data['token'], or data['tls.crt'] and data['tls.key']"
            )
        _check_url(address, "endpoint", frozenset({"https", "http"}))
        ca_key = "ca.crt" if "ca.crt" in data else "ca"
        ca_bundle = _decode(data, ca_key)
        plain_http = urlsplit(address).scheme == "http"
        if plain_http:
            _refuse_plain_http(address, credential_type, ca_key if ca_bundle else None, tls_server_name)
        if ca_bundle:
            _check_certificates(ca_bundle, f"data[{ca_key!r}]")
        elif not plain_http:
            # As in the reference: no CA means no server verification. Shown as insecure: true.
            ca_bundle, insecure = None, True
        proxy_url = _url_value(data, "proxy-url") or None
        if proxy_url:
            _check_url(proxy_url, "proxy-url", _PROXY_SCHEMES)
    else:  # ClusterProxy: reached through a Konnectivity tunnel, verified against the Secret's CA if it has one
        ca_key = "ca.crt" if "ca.crt" in data else "ca"
        ca_bundle = _decode(data, ca_key) or None
        if ca_bundle:
            _check_certificates(ca_bundle, f"data[{ca_key!r}]")
        else:
            insecure = True  # as for Const endpoints: no CA, no verification (shown in status)

    credential = _credential(credential_type, data)

    healthy = False
    raw_healthy = annotations.get(ANNOTATION_HEALTHY)
    if raw_healthy is not None:
        if raw_healthy not in _GO_BOOLS:
            raise ConversionError(f"annotation {ANNOTATION_HEALTHY}={raw_healthy!r} is not a boolean")
        healthy = _GO_BOOLS[raw_healthy]
    healthy_reason = annotations.get(ANNOTATION_HEALTHY_REASON, "")

    gateway = ClusterGateway(
        name=name,
        uid=gateway_uid(meta.get("uid"), meta.get("namespace", ""), name),
        resource_version=str(meta.get("resourceVersion", "")),
        creation_timestamp=meta.get("creationTimestamp"),
        labels=labels,
        provider="",
        endpoint_type=endpoint_type,
        address=address,
        ca_bundle=ca_bundle,
        insecure=insecure,
        proxy_url=proxy_url,
        healthy=healthy,
        healthy_reason=healthy_reason,
        credential=credential,
        proxy_configuration=annotations.get(ANNOTATION_PROXY_CONFIGURATION),
        tls_server_name=tls_server_name,
        alias=annotations.get(ANNOTATION_CLUSTER_ALIAS, ""),
    )
    return with_manifest(gateway)


def _manifest(gw: ClusterGateway) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": gw.name, "uid": gw.uid, "resourceVersion": gw.resource_version}
    if gw.creation_timestamp:
        metadata["creationTimestamp"] = gw.creation_timestamp
    if gw.labels:
        metadata["labels"] = dict(gw.labels)
    endpoint: dict[str, Any] = {"type": gw.endpoint_type.value}
    if gw.endpoint_type is EndpointType.CONST:
        const: dict[str, Any] = {"address": gw.address}
        if gw.ca_bundle:
            const["caBundle"] = base64.b64encode(gw.ca_bundle).decode()
        if gw.insecure:
            const["insecure"] = True
        if gw.proxy_url:
            const["proxy-url"] = redact_url(gw.proxy_url)
        endpoint["const"] = const
    status: dict[str, Any] = {"healthy": gw.healthy}
    if gw.endpoint_type is EndpointType.CLUSTER_PROXY and gw.insecure:
        status["insecure"] = True  # its member certificate is not verified: the Secret has no ca.crt
    if gw.healthy_reason:
        status["healthyReason"] = gw.healthy_reason
    if gw.last_probe_time:
        status["lastProbeTime"] = gw.last_probe_time
    if gw.kubernetes_version:
        status["kubernetesVersion"] = gw.kubernetes_version
    return {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "provider": gw.provider,
            "access": {"endpoint": endpoint, "credential": {"type": gw.credential.type.value}},
        },
        "status": status,
    }


def with_manifest(gw: ClusterGateway) -> ClusterGateway:
    """Return `gw` with its served manifest and JSON bytes (re)computed from its fields."""
    manifest = _manifest(gw)
    return dataclasses.replace(gw, manifest=manifest, json=encode(manifest), render_cache={})


def with_resource_version(gw: ClusterGateway, resource_version: str) -> ClusterGateway:
    """The same cluster at another resourceVersion (a deleted object carries the deletion's)."""
    return with_manifest(dataclasses.replace(gw, resource_version=resource_version))
