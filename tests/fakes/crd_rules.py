"""What the apiextensions API server decides about a CustomResourceDefinition, restated as pure functions:
whether it is valid (its name; API approval for the groups kube protects), the status its controllers
give it (names accepted, Established), and what it serves (`Served`: the store kind, names, versions).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from .kube_store import KindInfo, Obj, StatusError

CRD_GROUP = "apiextensions.k8s.io"
APPROVAL = "api-approved.kubernetes.io"
CRDS = KindInfo(
    f"customresourcedefinitions.{CRD_GROUP}",
    "CustomResourceDefinition",
    group=CRD_GROUP,
    version="v1",
    namespaced=False,
    generation_ignores=("metadata", "status"),
)
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_APPROVAL_LINK = "see https://github.com/kubernetes/enhancements/pull/1111"


def now() -> str:
    """The time as kube writes it in objects."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def protected_group(group: str) -> bool:
    """Whether kube asks API approval for `group` (`k8s.io`, `kubernetes.io` and their subdomains)."""
    return any(group == base or group.endswith("." + base) for base in ("k8s.io", "kubernetes.io"))


def _approval_error(annotations: dict[str, str]) -> tuple[str, str] | None:
    """(cause reason, message) for a protected group's approval annotation, or None when it passes."""
    value = annotations.get(APPROVAL, "")
    if not value:
        return (
            "FieldValueRequired",
            f'Required value: protected groups must have approval annotation "{APPROVAL}", {_APPROVAL_LINK}',
        )
    url = urlsplit(value)
    if value.startswith("unapproved") or (url.scheme and url.netloc):
        return None
    detail = (
        f'protected groups must have approval annotation "{APPROVAL}" with either a URL or a reason starting with "unapproved"'
    )
    return "FieldValueInvalid", f"Invalid value: {json.dumps(value)}: {detail}, {_APPROVAL_LINK}"


def validate_crd(crd: Obj, old: Obj | None) -> None:
    """Raise kube's 422 for the CRD errors the fake checks: its name, and API approval of protected groups
    (an update that leaves the approval annotation as it was is not checked again, as kube)."""
    spec, meta = crd.get("spec") or {}, crd.get("metadata") or {}
    group, plural, name = str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")), meta.get("name", "")
    causes: list[Obj] = []
    if name != f"{plural}.{group}":
        message = f'Invalid value: {json.dumps(name)}: must be spec.names.plural+"."+spec.group'
        causes.append({"reason": "FieldValueInvalid", "message": message, "field": "metadata.name"})
    annotations = meta.get("annotations") or {}
    old_approval = None if old is None else (old["metadata"].get("annotations") or {}).get(APPROVAL)
    changed = old is None or old_approval != annotations.get(APPROVAL)
    if protected_group(group) and changed and (problem := _approval_error(annotations)) is not None:
        causes.append({"reason": problem[0], "message": problem[1], "field": f"metadata.annotations[{APPROVAL}]"})
    if causes:
        errors = [f"{c['field']}: {c['message']}" for c in causes]
        joined = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
        message = f'{CRDS.kind}.{CRD_GROUP} "{name}" is invalid: {joined}'
        details = {"name": name, "group": CRD_GROUP, "kind": CRDS.kind, "causes": causes}
        raise StatusError(422, "Invalid", message, details)


def _names(crd: Obj) -> Obj:
    names = dict(crd["spec"]["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    return names


def established(crd: Obj) -> Obj:
    """The CRD with the status kube's controllers give it: names accepted, Established, stored versions."""
    at, versions = now(), crd["spec"].get("versions") or []
    storage = [v["name"] for v in versions if v.get("storage")] or [v["name"] for v in versions[:1]]
    conditions = [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        },
    ]
    status = {
        "acceptedNames": _names(crd),
        "conditions": [{**c, "lastTransitionTime": at} for c in conditions],
        "storedVersions": storage,
    }
    return {**crd, "spec": {**crd["spec"], "names": _names(crd)}, "status": status}


def version_order(version: str) -> tuple[int, int, int]:
    """Kube's version priority: GA before beta before alpha, higher numbers first."""
    major, _, rest = version.removeprefix("v").partition("alpha" if "alpha" in version else "beta")
    stage = 0 if not rest and "beta" not in version and "alpha" not in version else (1 if "beta" in version else 2)
    return stage, -int(major or 0) if major.isdigit() else 0, -int(rest) if rest.isdigit() else 0


@dataclass(frozen=True)
class Served:
    """One resource a CRD serves: its store kind (store key `<plural>.<group>`), names and served versions."""

    info: KindInfo
    plural: str
    names: Obj
    versions: tuple[str, ...]
    status_subresource: bool

    @staticmethod
    def of(crd: Obj) -> Served:
        """What `crd` serves."""
        spec, names = crd["spec"], _names(crd)
        served = [v for v in spec.get("versions") or [] if v.get("served", True)]
        storage = next((v["name"] for v in served if v.get("storage")), served[0]["name"] if served else "v1")
        status = any("status" in (v.get("subresources") or {}) for v in served)
        info = KindInfo(
            f"{names['plural']}.{spec['group']}",
            names["kind"],
            group=spec["group"],
            version=storage,
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            generation_ignores=("metadata", "status") if status else ("metadata",),
        )
        versions = tuple(sorted((v["name"] for v in served), key=version_order))
        return Served(info, names["plural"], names, versions, status)

    def resource(self) -> Obj:
        """Its APIResource entry in discovery."""
        entry: Obj = {
            "name": self.plural,
            "singularName": self.names["singular"],
            "namespaced": self.info.namespaced,
            "kind": self.info.kind,
            "verbs": _VERBS,
        }
        for key in ("shortNames", "categories"):
            if self.names.get(key):
                entry[key] = list(self.names[key])
        return entry


CRD_SERVED = Served(
    CRDS,
    "customresourcedefinitions",
    {"singular": "customresourcedefinition", "listKind": "CustomResourceDefinitionList", "shortNames": ["crd", "crds"]},
    ("v1",),
    True,
)
