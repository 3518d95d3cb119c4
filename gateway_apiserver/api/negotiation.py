"""Content negotiation: which representation the client asked for in `Accept`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..base.status import StatusError


class Shape(enum.Enum):
    """The representations our resource endpoints can produce."""

    OBJECT = "object"  # plain JSON ClusterGateway(List)
    TABLE = "table"  # meta.k8s.io/v1 Table
    PARTIAL_METADATA = "partial"  # meta.k8s.io/v1 PartialObjectMetadata(List)
    DISCOVERY_V2 = "discovery-v2"  # apidiscovery.k8s.io/v2 APIGroupDiscoveryList
    DISCOVERY_V2BETA1 = "discovery-v2beta1"


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One entry of an Accept header, e.g. `application/json;as=Table;v=v1;g=meta.k8s.io`."""

    type: str
    subtype: str
    params: dict[str, str]
    q: float


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an Accept header into media ranges, highest quality first (stable for ties)."""
    if not header or not header.strip():
        return [MediaRange("*", "*", {}, 1.0)]
    ranges: list[MediaRange] = []
    for raw in header.split(","):
        raw = raw.strip()
        if not raw:
            continue
        parts = [p.strip() for p in raw.split(";")]
        mime = parts[0].lower()
        if "/" not in mime:
            continue
        mtype, subtype = mime.split("/", 1)
        params: dict[str, str] = {}
        q = 1.0
        for p in parts[1:]:
            if "=" not in p:
                continue
            k, v = p.split("=", 1)
            k, v = k.strip().lower(), v.strip().strip('"')
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            else:
                params[k] = v
        if q > 0:
            ranges.append(MediaRange(mtype, subtype, params, q))
    return sorted(ranges, key=lambda r: -r.q)


def _is_json(r: MediaRange) -> bool:
    return (r.type, r.subtype) in {("application", "json"), ("application", "*"), ("*", "*")}


def negotiate(header: str | None, allowed: frozenset[Shape]) -> Shape:
    """Pick the first representation in the client's order that we can produce.

    Raises a 406 StatusError when nothing acceptable matches, as the kube-apiserver does.
    """
    for r in parse_accept(header):
        if not _is_json(r):
            continue
        kind = r.params.get("as")
        group = r.params.get("g")
        version = r.params.get("v")
        if kind is None:
            if Shape.OBJECT in allowed:
                return Shape.OBJECT
            continue
        if kind == "Table" and group == "meta.k8s.io" and version in {"v1", "v1beta1"}:
            if Shape.TABLE in allowed:
                return Shape.TABLE
        elif kind in {"PartialObjectMetadata", "PartialObjectMetadataList"} and group == "meta.k8s.io":
            if Shape.PARTIAL_METADATA in allowed and version in {"v1", "v1beta1"}:
                return Shape.PARTIAL_METADATA
        elif kind == "APIGroupDiscoveryList" and group == "apidiscovery.k8s.io":
            if version == "v2" and Shape.DISCOVERY_V2 in allowed:
                return Shape.DISCOVERY_V2
            if version == "v2beta1" and Shape.DISCOVERY_V2BETA1 in allowed:
                return Shape.DISCOVERY_V2BETA1
    supported = "application/json"
    raise StatusError(
        406,
        f"only the following media types are accepted: {supported}"
        if Shape.OBJECT in allowed
        else "the requested representation is not supported by this endpoint",
    )


def table_version(header: str | None) -> str:
    """The meta.k8s.io version of Table the client asked for (v1 or v1beta1)."""
    for r in parse_accept(header):
        if r.params.get("as") == "Table" and r.params.get("g") == "meta.k8s.io":
            return r.params.get("v", "v1")
    return "v1"
