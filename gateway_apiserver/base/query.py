"""Query parameters as the kube-apiserver converts them (k8s.io/apimachinery's Convert_Slice_string_To_bool)."""

from __future__ import annotations


def query_bool(value: str | None) -> bool:
    """A boolean query value: absent, "false" or "0" (any case) is false; anything else, even "", is true.

    The list handler, authorization, the proxy's long-running check and shutdown all read
    `watch` (and `follow`) with this, so they agree with each other and with a member cluster.
    """
    return value is not None and value.lower() not in ("false", "0")
