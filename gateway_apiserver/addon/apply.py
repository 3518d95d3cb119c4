"""Keeping objects as the manager wants them: create what is missing, replace what drifted.

Drift is judged on the fields the manager sets only ("is the wanted object contained in the
live one"), so what the API server and other controllers add (defaults, status, annotations)
neither triggers a write nor is overwritten by a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from .kube import Kube, Obj, Ref, is_status

log = logging.getLogger(__name__)


def contains(live: Any, wanted: Any) -> bool:
    """Whether every field of `wanted` has the same value in `live` (maps: recursively; lists: item by item)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(contains(live.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(live, list) and len(live) == len(wanted) and all(contains(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


def merged(live: Obj, wanted: Obj) -> Obj:
    """`live` with `wanted`'s top-level fields, labels and annotations put back, ready to replace (keeps resourceVersion)."""
    meta = {**(live.get("metadata") or {})}
    wanted_meta = wanted.get("metadata") or {}
    for key in ("labels", "annotations"):
        if wanted_meta.get(key):
            meta[key] = {**(meta.get(key) or {}), **wanted_meta[key]}
    out = {**live, **{k: v for k, v in wanted.items() if k != "metadata"}, "metadata": meta}
    out.pop("status", None)
    return out


async def ensure(kube: Kube, wanted: Obj) -> str:
    """Create `wanted`, or replace the live object if it drifted: "created", "updated" or "unchanged".

    A conflict (someone wrote in between) or a race on create is raised: the next pass retries."""
    ref = Ref.of(wanted)
    live = await kube.get(ref)
    if live is None:
        try:
            await kube.create(wanted)
        except Exception as exc:
            if not is_status(exc, 409):
                raise
            return "unchanged"  # created concurrently; the next pass compares it
        log.info("created %s", ref)
        return "created"
    if contains(live, wanted):
        return "unchanged"
    await kube.replace(merged(live, wanted))
    log.info("repaired %s", ref)
    return "updated"


async def ensure_namespace(kube: Kube, wanted: Obj) -> None:
    """Create a namespace unless it exists (its content is not the manager's)."""
    try:
        await kube.create(wanted)
    except Exception as exc:
        if not is_status(exc, 409):
            raise
