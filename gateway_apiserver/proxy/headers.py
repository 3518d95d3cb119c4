"""Header rewriting for the proxy, in both directions. Pure functions over multidicts.

Request: drop hop-by-hop headers (RFC 9110 §7.6.1, plus every header the `Connection`
header names) and every header that carries the *caller's* identity (`Authorization`,
`Impersonate-*`, `X-Remote-*` and the configured requestheader names): the member must only
ever see the gateway's credential, plus impersonation headers that the gateway itself adds.
Response: drop hop-by-hop headers; everything else (Content-Encoding included) passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from multidict import CIMultiDict, CIMultiDictProxy, istr

# RFC 9110 §7.6.1 names Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding and
# Upgrade; Trailer and the Proxy-Auth* pair are hop-by-hop too (RFC 7230 and Go's list).
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Set by the client library from the URL or handled by our own server, never forwarded as sent.
_REQUEST_ONLY = frozenset({"host", "expect", "content-length"})
IDENTITY_PREFIXES: tuple[str, ...] = ("impersonate-", "x-remote-")
IDENTITY_NAMES: frozenset[str] = frozenset({"authorization"})
AUDIT_ID = istr("Audit-ID")

HeaderValues = str | Sequence[str]


def connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    """Lower-cased header names listed in every `Connection` header."""
    values = headers.getall("Connection", [])
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


def is_upgrade(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> bool:
    """True for a protocol-upgrade request (`Connection: Upgrade` plus an `Upgrade` header)."""
    return "upgrade" in connection_tokens(headers) and bool(headers.get("Upgrade"))


# Request headers never forwarded as sent: hop-by-hop, the caller's identity, what the client
# library sets from the URL, and what request_headers sets itself.
_NOT_FORWARDED: frozenset[str] = (
    HOP_BY_HOP | IDENTITY_NAMES | _REQUEST_ONLY | {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "audit-id"}
)


def request_headers(
    incoming: CIMultiDictProxy[str] | CIMultiDict[str],
    *,
    client_ip: str | None,
    scheme: str,
    audit_id: str,
    identity_headers: Iterable[str] = (),
    identity_prefixes: Iterable[str] = (),
    keep_upgrade: bool = False,
) -> CIMultiDict[str]:
    """The headers to send the member, before the credential and impersonation are set.

    `identity_headers` and `identity_prefixes` name the configured requestheader headers
    (e.g. a custom `--requestheader-username-headers`), stripped like `X-Remote-*`.
    With `keep_upgrade`, `Connection: Upgrade` and `Upgrade` survive for the upgrade tunnel.
    `Content-Length` is dropped too: the caller passes it back when it streams a fixed body.
    """
    dropped = _NOT_FORWARDED
    if "Connection" in incoming:
        dropped = dropped | connection_tokens(incoming)
    if identity_headers:
        dropped = dropped | {h.lower() for h in identity_headers}
    prefixes = IDENTITY_PREFIXES + tuple(p.lower() for p in identity_prefixes) if identity_prefixes else IDENTITY_PREFIXES
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in dropped and not lower.startswith(prefixes):
            out.add(name, value)
    prior = ", ".join(v.strip() for v in incoming.getall("X-Forwarded-For", ()) if v.strip())
    if client_ip:
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    elif prior:
        out["X-Forwarded-For"] = prior
    out["X-Forwarded-Proto"] = scheme
    if host := incoming.get("Host"):
        out["X-Forwarded-Host"] = host
    out[AUDIT_ID] = audit_id
    if keep_upgrade and is_upgrade(incoming):
        out["Connection"] = "Upgrade"
        out["Upgrade"] = incoming["Upgrade"]
    return out


def set_headers(headers: CIMultiDict[str], extra: Mapping[str, HeaderValues] | Iterable[tuple[str, str]]) -> None:
    """Set (replacing) each header in `extra`: a mapping whose sequence values become repeated
    headers, or (name, value) pairs where a repeated name repeats the header."""
    if not extra:
        return
    pairs: list[tuple[str, str]] = []
    if isinstance(extra, Mapping):
        for name, value in extra.items():
            pairs.extend([(name, value)] if isinstance(value, str) else ((name, v) for v in value))
    else:
        pairs = list(extra)
    for name in {name.lower() for name, _ in pairs}:
        headers.popall(name, None)
    for name, value in pairs:
        headers.add(name, value)


def response_headers(upstream: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The member's response headers minus hop-by-hop ones and Content-Length (set by the caller).

    The member's Audit-Id is dropped too: the gateway answers its own (the same ID, forwarded).
    """
    named = connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named or lower in ("content-length", "audit-id"):
            continue
        out.add(name, value)
    return out
