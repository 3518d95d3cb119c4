"""Property: whatever a Secret holds, conversion either yields a safe ClusterGateway or a ConversionError with a reason."""

from __future__ import annotations

import base64
import json
import unicodedata
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway_apiserver.registry.conversion import ConversionError, secret_to_cluster_gateway

CREDENTIAL_TYPES = ["ServiceAccountToken", "X509Certificate", "Dynamic", "Bogus"]
# Text biased towards what breaks URLs and headers: CR, LF, NUL, DEL, spaces, '@', ':', '/', zero-width and
# line-separator characters, next to ordinary URL pieces.
_PIECES = st.sampled_from(
    ["https://", "http://", "socks5://", "m", "10.0.0.1", ":6443", "/", "@", "admin:pw@", "\r\n", "\n", "\x00", "\x7f",
     " ", "\t", "\u200b", "\u2028", "?q=1", "#f", "[::1]", "%0d%0a", "ü", "xn--", "[", "\ufeff", "X-Injected: yes"]
)  # fmt: skip
URLISH = st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=8).map("".join)
VALUE = st.one_of(URLISH, st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8", errors="surrogatepass")).decode()


def _is_unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


@st.composite
def secrets(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.sets(st.sampled_from(["endpoint", "token", "proxy-url", "tls-server-name", "ca.crt", "exec"])))
    data = {key: _b64(draw(VALUE)) for key in keys}
    if draw(st.booleans()):
        data["not-base64"] = draw(st.text(max_size=10))
    labels = {"cluster.core.oam.dev/cluster-credential-type": draw(st.sampled_from(CREDENTIAL_TYPES))}
    if draw(st.booleans()):
        labels["cluster.core.oam.dev/cluster-endpoint-type"] = draw(st.sampled_from(["Const", "ClusterProxy", "x"]))
    return {"metadata": {"name": "fuzzed", "namespace": "vela-system", "labels": labels}, "data": data}


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (str(k), *_strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secrets())
def test_conversion_yields_a_safe_cluster_or_a_reason(secret: dict[str, Any]) -> None:
    try:
        gw = secret_to_cluster_gateway(secret)
    except ConversionError as exc:
        assert str(exc), "a conversion error always says why"
        assert "\r" not in str(exc) and "\n" not in str(exc)
        return
    served = json.loads(gw.json)
    for text in _strings(served):
        assert not any(_is_unsafe(ch) for ch in text), f"control or whitespace character served in {text!r}"
    const = served["spec"]["access"]["endpoint"].get("const", {})
    for url in (const.get("address"), const.get("proxy-url")):
        if url is not None:
            userinfo = urlsplit(url).username
            assert userinfo in (None, "REDACTED"), f"userinfo served in {url!r}"
    if const:
        assert urlsplit(const["address"]).scheme == "https"
        assert urlsplit(const["address"]).username is None
    for url in (gw.address, gw.proxy_url):
        if url is not None:
            assert URL(url).host, f"the transport cannot use {url!r}"  # yarl, as the transport parses it
    if gw.credential.token is not None:
        assert all(0x21 <= ord(ch) <= 0x7E for ch in gw.credential.token)
