"""JSON schemas of the ClusterGateway types and the meta types they reference.

Written once, in Swagger 2.0 form (`#/definitions/...` refs), and converted to OpenAPI 3
by `to_v3`. Names follow kube-openapi's convention (the reversed Go package path), so the
definitions line up with the ones cluster-gateway published and with the aggregator's
merged document. The descriptions are what `kubectl explain` prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .resource_info import CLUSTER_GATEWAYS, GROUP, PROXY, VERSION, VIRTUAL_CLUSTERS, gvk

Schema = dict[str, Any]

PKG: Final = "com.github.oam-dev.cluster-gateway.pkg.apis.cluster.v1alpha1."
META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1."
RUNTIME: Final = "io.k8s.apimachinery.pkg.runtime."

CLUSTER_GATEWAY: Final = PKG + CLUSTER_GATEWAYS.kind
CLUSTER_GATEWAY_LIST: Final = PKG + CLUSTER_GATEWAYS.list_kind
VIRTUAL_CLUSTER: Final = PKG + VIRTUAL_CLUSTERS.kind
VIRTUAL_CLUSTER_LIST: Final = PKG + VIRTUAL_CLUSTERS.list_kind
PROXY_OPTIONS: Final = PKG + PROXY.kind
OBJECT_META: Final = META + "ObjectMeta"
LIST_META: Final = META + "ListMeta"
TIME: Final = META + "Time"
WATCH_EVENT: Final = META + "WatchEvent"
PATCH: Final = META + "Patch"
API_GROUP_LIST: Final = META + "APIGroupList"
API_GROUP: Final = META + "APIGroup"
API_RESOURCE_LIST: Final = META + "APIResourceList"

V2_PREFIX: Final = "#/definitions/"
V3_PREFIX: Final = "#/components/schemas/"

_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer "
    "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)


def ref(name: str, description: str | None = None) -> Schema:
    """A Swagger 2.0 reference to definition `name`, with an optional field description."""
    schema: Schema = {"$ref": V2_PREFIX + name}
    if description:
        schema["description"] = description
    return schema


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _bool(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def _string_map(description: str) -> Schema:
    return {"type": "object", "description": description, "additionalProperties": {"type": "string", "default": ""}}


def _string_list(description: str) -> Schema:
    return {"type": "array", "description": description, "items": {"type": "string", "default": ""}}


def _object(
    description: str,
    properties: Schema,
    required: Iterable[str] = (),
    gvks: list[dict[str, str]] | None = None,
) -> Schema:
    schema: Schema = {"description": description, "type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if gvks:
        # What the aggregator and `kubectl explain` look kinds up by.
        schema["x-kubernetes-group-version-kind"] = gvks
    return schema


def _list(kind: str, item: str) -> Schema:
    """The schema of `<kind>List`, whose items are the definition `item`."""
    return _object(
        f"{kind}List is a list of {kind}s.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "items": {"type": "array", "description": f"Items is the list of {kind}s.", "items": ref(item)},
            "kind": _string(_KIND_DOC),
            "metadata": ref(LIST_META, "Standard list metadata."),
        },
        required=["items"],
        gvks=[gvk(kind + "List")],
    )


def _meta_gvk(kind: str) -> list[dict[str, str]]:
    return [{"group": "", "version": "v1", "kind": kind}]


# ---------------------------------------------------------------------------------------------
# cluster.core.oam.dev/v1alpha1
# ---------------------------------------------------------------------------------------------

_CLUSTER_TYPES: dict[str, Schema] = {
    CLUSTER_GATEWAY: _object(
        "ClusterGateway is a member cluster reachable through the gateway: where its kube-apiserver "
        "is and how the gateway authenticates to it. It is read-only and derived from a Secret of "
        "the same name in the gateway's secret namespace. Credential material is never returned.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "kind": _string(_KIND_DOC),
            "metadata": ref(OBJECT_META, "Standard object's metadata, taken from the cluster's Secret."),
            "spec": ref(PKG + "ClusterGatewaySpec", "Spec describes how the gateway reaches the cluster."),
            "status": ref(PKG + "ClusterGatewayStatus", "Status is the last reported health of the cluster."),
        },
        gvks=[gvk(CLUSTER_GATEWAYS.kind)],
    ),
    CLUSTER_GATEWAY_LIST: _list(CLUSTER_GATEWAYS.kind, CLUSTER_GATEWAY),
    PKG + "ClusterGatewaySpec": _object(
        "ClusterGatewaySpec defines how the gateway reaches and authenticates to a member cluster.",
        {
            "provider": _string("Provider is a free-form name of the cluster's provider, e.g. a cloud vendor."),
            "access": ref(PKG + "ClusterAccess", "Access holds the endpoint and credential type of the cluster."),
        },
        required=["provider", "access"],
    ),
    PKG + "ClusterAccess": _object(
        "ClusterAccess describes how to connect to the cluster's kube-apiserver.",
        {
            "endpoint": ref(PKG + "ClusterEndpoint", "Endpoint prescribes where the cluster's kube-apiserver is."),
            "credential": ref(
                PKG + "ClusterAccessCredential",
                "Credential holds the type of credential the gateway uses for the cluster. The credential "
                "itself (token, certificate and key, exec plugin) is never returned.",
            ),
        },
        required=["endpoint"],
    ),
    PKG + "ClusterEndpoint": _object(
        "ClusterEndpoint is a union of the ways to reach a cluster's kube-apiserver, discriminated by type.",
        {
            "type": _string(
                "Type is the union discriminator: Const for a fixed address, ClusterProxy for a "
                "Konnectivity tunnel through OCM's cluster-proxy (no address needed).",
                enum=["Const", "ClusterProxy"],
            ),
            "const": ref(
                PKG + "ClusterEndpointConst",
                "Const prescribes a fixed endpoint for requesting the target cluster. Set when type is Const.",
            ),
        },
        required=["type"],
    ),
    PKG + "ClusterEndpointConst": _object(
        "ClusterEndpointConst is a fixed address of the cluster's kube-apiserver.",
        {
            "address": _string(
                "Address is the URL of the cluster's kube-apiserver, e.g. https://10.0.0.1:6443. It may "
                "carry a path prefix, which proxied request paths are appended to. It is always https, "
                "and never carries credentials (user:password@)."
            ),
            "caBundle": _string(
                "CABundle is the PEM bundle, base64-encoded, that verifies the cluster's serving "
                "certificate (the Secret's ca.crt, or ca). A cluster without one is not verified at "
                "all, and shows insecure: true.",
                format="byte",
            ),
            "insecure": _bool(
                "Insecure indicates the cluster is accessed without verifying its serving certificate, "
                "which is the case whenever no caBundle is configured."
            ),
            "proxy-url": _string(
                "ProxyURL is an http, https or socks5 proxy the gateway dials the cluster through. "
                "Proxy credentials in it (user:password@) are used but never served: they show as REDACTED@."
            ),
        },
        required=["address"],
    ),
    PKG + "ClusterAccessCredential": _object(
        "ClusterAccessCredential tells how the gateway authenticates to the cluster. Only the type is served.",
        {
            "type": _string(
                "Type is the kind of credential: ServiceAccountToken (a bearer token), X509Certificate "
                "(a client certificate and key) or Dynamic (an exec plugin that prints an ExecCredential).",
                enum=["ServiceAccountToken", "X509Certificate", "Dynamic"],
            ),
        },
        required=["type"],
    ),
    PKG + "ClusterGatewayStatus": _object(
        "ClusterGatewayStatus is the observed health of the cluster: the newer of the gateway's own probe "
        "and the last write through the health subresource.",
        {
            "healthy": _bool(
                "Healthy is whether the cluster was last observed reachable and working. Under the "
                "HealthinessCheck feature gate, proxy requests to an unhealthy cluster fail fast with 503."
            ),
            "healthyReason": _string(
                "HealthyReason explains an unhealthy status: ClusterGatewayNotRegistered, "
                "CertificateMismatch, ConnectionTimeout, Unauthorized, ProbeFailed:<HTTP status>, or Unknown:<message>."
            ),
            "lastProbeTime": _string(
                "LastProbeTime is when the gateway's built-in prober last changed this status "
                "(probes that find nothing new do not update it). Absent while probing is off.",
                format="date-time",
            ),
            "kubernetesVersion": _string("KubernetesVersion is the gitVersion the cluster's /version last answered."),
            "insecure": _bool(
                "Insecure is true for a ClusterProxy cluster whose Secret has no ca.crt: the gateway reaches it "
                "through the Konnectivity tunnel without verifying its serving certificate. Omitted otherwise."
            ),
        },
    ),
    VIRTUAL_CLUSTER: _object(
        "VirtualCluster is one cluster a KubeVela user can target: the hosting cluster itself (local), a "
        "cluster Secret, or an OCM ManagedCluster that no Secret names. It is read-only and derived.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "kind": _string(_KIND_DOC),
            "metadata": ref(OBJECT_META, "Standard object's metadata, taken from the cluster's source object."),
            "spec": ref(PKG + "VirtualClusterSpec", "Spec describes the cluster."),
            "status": ref(
                PKG + "VirtualClusterStatus",
                "Status is the cluster's observed health (not in cluster-gateway's VirtualCluster). Absent for "
                "local, and for a ManagedCluster without the ManagedClusterConditionAvailable condition.",
            ),
        },
        gvks=[gvk(VIRTUAL_CLUSTERS.kind)],
    ),
    PKG + "VirtualClusterStatus": _object(
        "VirtualClusterStatus is the observed health of the cluster, in the ClusterGateway's status fields.",
        {
            "healthy": _bool(
                "Healthy is the ClusterGateway's status.healthy for a cluster Secret, and whether the "
                "ManagedClusterConditionAvailable condition is True for an OCM ManagedCluster."
            ),
            "healthyReason": _string(
                "HealthyReason explains an unhealthy status: the ClusterGateway's status.healthyReason, or the "
                "ManagedClusterConditionAvailable condition's reason (ManagedClusterConditionAvailable is "
                "<status> when it has none)."
            ),
            "lastProbeTime": _string(
                "LastProbeTime is the ClusterGateway's status.lastProbeTime: when the gateway's built-in prober "
                "last changed its status. Absent for ManagedClusters and while probing is off.",
                format="date-time",
            ),
        },
    ),
    VIRTUAL_CLUSTER_LIST: _list(VIRTUAL_CLUSTERS.kind, VIRTUAL_CLUSTER),
    PKG + "VirtualClusterSpec": _object(
        "VirtualClusterSpec describes a cluster. Empty fields are omitted.",
        {
            "alias": _string("Alias is a display name, from the annotation cluster.core.oam.dev/cluster-alias."),
            "accepted": _bool(
                "Accepted is whether the hub accepts the cluster: always for local and Secrets, "
                "spec.hubAcceptsClient for a ManagedCluster. Omitted when false."
            ),
            "endpoint": _string(
                "Endpoint is the URL of the cluster's kube-apiserver the gateway proxies to, ClusterProxy for a "
                "cluster reached through OCM's cluster-proxy, or - when the gateway does not proxy to it "
                "(local, and ManagedClusters without a Secret)."
            ),
            "credential-type": _string(
                "CredentialType is Internal for local, the Secret's credential type (ServiceAccountToken, "
                "X509Certificate or Dynamic), or ManagedCluster."
            ),
        },
    ),
    PROXY_OPTIONS: _object(
        "ClusterGatewayProxyOptions is the query string accepted by the proxy subresource.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "kind": _string(_KIND_DOC),
            "path": _string("Path is the URL path to request on the cluster's kube-apiserver."),
        },
        gvks=[gvk(PROXY.kind)],
    ),
}


# ---------------------------------------------------------------------------------------------
# meta.k8s.io/v1 (the subset the types above and the discovery paths use)
# ---------------------------------------------------------------------------------------------

_GROUP_VERSION_FOR_DISCOVERY = META + "GroupVersionForDiscovery"
_SERVER_ADDRESS = META + "ServerAddressByClientCIDR"
_API_RESOURCE = META + "APIResource"

_META_TYPES: dict[str, Schema] = {
    OBJECT_META: _object(
        "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        {
            "annotations": _string_map(
                "Annotations is an unstructured key value map stored with a resource that may be set by "
                "external tools to store and retrieve arbitrary metadata."
            ),
            "creationTimestamp": ref(
                TIME,
                "CreationTimestamp is a timestamp representing the server time when this object was created. "
                "It is represented in RFC3339 form and is in UTC.",
            ),
            "deletionTimestamp": ref(
                TIME, "DeletionTimestamp is the RFC 3339 date and time at which this resource will be deleted."
            ),
            "finalizers": _string_list(
                "Must be empty before the object is deleted from the registry. Each entry is an identifier "
                "for the responsible component that will remove the entry from the list."
            ),
            "generateName": _string(
                "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF "
                "the Name field has not been provided."
            ),
            "generation": {
                "type": "integer",
                "format": "int64",
                "description": "A sequence number representing a specific generation of the desired state.",
            },
            "labels": _string_map(
                "Map of string keys and values that can be used to organize and categorize (scope and "
                "select) objects. May match selectors of replication controllers and services."
            ),
            "name": _string(
                "Name must be unique within a namespace. It is required when creating resources, although "
                "some resources may allow a client to request the generation of an appropriate name "
                "automatically. Cannot be updated."
            ),
            "namespace": _string(
                "Namespace defines the space within which each name must be unique. Empty for "
                "cluster-scoped resources such as ClusterGateway."
            ),
            "resourceVersion": _string(
                "An opaque value that represents the internal version of this object that can be used by "
                "clients to determine when objects have changed. Clients must treat these values as opaque."
            ),
            "selfLink": _string("Deprecated: selfLink is a legacy read-only field that is no longer populated."),
            "uid": _string(
                "UID is the unique in time and space value for this object. It is typically generated by "
                "the server on successful creation of a resource and is not allowed to change on PUT "
                "operations."
            ),
        },
    ),
    LIST_META: _object(
        "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.",
        {
            "continue": _string(
                "continue may be set if the user set a limit on the number of items returned, and indicates "
                "that the server has more data available."
            ),
            "remainingItemCount": {
                "type": "integer",
                "format": "int64",
                "description": "remainingItemCount is the number of subsequent items in the list which are "
                "not included in this list response.",
            },
            "resourceVersion": _string(
                "String that identifies the server's internal version of this object that can be used by "
                "clients to determine when objects have changed."
            ),
            "selfLink": _string("Deprecated: selfLink is a legacy read-only field that is no longer populated."),
        },
    ),
    TIME: _string(
        "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON. "
        "Wrappers are provided for many of the factory methods that the time package offers.",
        format="date-time",
    ),
    WATCH_EVENT: _object(
        "Event represents a single event to a watched resource.",
        {
            "object": ref(
                RUNTIME + "RawExtension",
                "Object is: * If Type is Added or Modified: the new state of the object. * If Type is "
                "Deleted: the state of the object immediately before deletion. * If Type is Bookmark: "
                "the object (instance of a type being watched) where only ResourceVersion field is set. "
                "* If Type is Error: *Status is recommended; other types may make sense depending on "
                "context.",
            ),
            "type": _string("Type is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."),
        },
        required=["type", "object"],
        gvks=[{"group": GROUP, "version": VERSION, "kind": "WatchEvent"}],
    ),
    RUNTIME + "RawExtension": {
        "description": "RawExtension is used to hold extensions in external versions.",
        "type": "object",
    },
    PATCH: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        "type": "object",
    },
    _GROUP_VERSION_FOR_DISCOVERY: _object(
        'GroupVersion contains the "group/version" and "version" string of a version. It is made a struct to keep extensibility.',
        {
            "groupVersion": _string('groupVersion specifies the API group and version in the form "group/version"'),
            "version": _string('version specifies the version in the form of "version".'),
        },
        required=["groupVersion", "version"],
    ),
    _SERVER_ADDRESS: _object(
        "ServerAddressByClientCIDR helps the client to determine the server address that they should use, "
        "depending on the clientCIDR that they match.",
        {
            "clientCIDR": _string("The CIDR with which clients can match their IP to figure out the server address."),
            "serverAddress": _string("Address of this server, suitable for a client that matches the above CIDR."),
        },
        required=["clientCIDR", "serverAddress"],
    ),
    API_GROUP: _object(
        "APIGroup contains the name, the supported versions, and the preferred version of a group.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "kind": _string(_KIND_DOC),
            "name": _string("name is the name of the group."),
            "preferredVersion": ref(_GROUP_VERSION_FOR_DISCOVERY, "preferredVersion is the version preferred by the API server."),
            "serverAddressByClientCIDRs": {
                "type": "array",
                "description": "a map of client CIDR to server address that is serving this group.",
                "items": ref(_SERVER_ADDRESS),
            },
            "versions": {
                "type": "array",
                "description": "versions are the versions supported in this group.",
                "items": ref(_GROUP_VERSION_FOR_DISCOVERY),
            },
        },
        required=["name", "versions"],
        gvks=_meta_gvk("APIGroup"),
    ),
    API_GROUP_LIST: _object(
        "APIGroupList is a list of APIGroup, to allow clients to discover the API at /apis.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "groups": {"type": "array", "description": "groups is a list of APIGroup.", "items": ref(API_GROUP)},
            "kind": _string(_KIND_DOC),
        },
        required=["groups"],
        gvks=_meta_gvk("APIGroupList"),
    ),
    _API_RESOURCE: _object(
        "APIResource specifies the name of a resource and whether it is namespaced.",
        {
            "categories": _string_list("categories is a list of the grouped resources this resource belongs to."),
            "group": _string("group is the preferred group of the resource. Empty implies the group of the list."),
            "kind": _string("kind is the kind for the resource (e.g. 'Foo' is the kind for a resource 'foo')"),
            "name": _string("name is the plural name of the resource."),
            "namespaced": _bool("namespaced indicates if a resource is namespaced or not."),
            "shortNames": _string_list("shortNames is a list of suggested short names of the resource."),
            "singularName": _string("singularName is the singular name of the resource."),
            "storageVersionHash": _string("The hash value of the storage version, when one is published."),
            "verbs": _string_list(
                "verbs is a list of supported kube verbs (this includes get, list, watch, create, update, "
                "patch, delete, deletecollection, and proxy)"
            ),
            "version": _string("version is the preferred version of the resource."),
        },
        required=["name", "singularName", "namespaced", "kind", "verbs"],
    ),
    API_RESOURCE_LIST: _object(
        "APIResourceList is a list of APIResource, it is used to expose the name of the resources supported "
        "in a specific group and version, and if the resource is namespaced.",
        {
            "apiVersion": _string(_API_VERSION_DOC),
            "groupVersion": _string("groupVersion is the group and version this APIResourceList is for."),
            "kind": _string(_KIND_DOC),
            "resources": {
                "type": "array",
                "description": "resources contains the name of the resources and if they are namespaced.",
                "items": ref(_API_RESOURCE),
            },
        },
        required=["groupVersion", "resources"],
        gvks=_meta_gvk("APIResourceList"),
    ),
}

DEFINITIONS: Final[dict[str, Schema]] = {**_CLUSTER_TYPES, **_META_TYPES}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str):
            yield target.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def closure(roots: Iterable[str], extra: Any = None) -> dict[str, Schema]:
    """The definitions named in `roots` or referenced by `extra` (e.g. paths), and all they reference."""
    todo = [*roots, *_refs(extra)]
    seen: dict[str, Schema] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = DEFINITIONS[name]
        todo.extend(_refs(seen[name]))
    return dict(sorted(seen.items()))


def to_v3(node: Any) -> Any:
    """Convert Swagger 2.0 schemas to OpenAPI 3.0, as kube-openapi's builder3 does.

    Refs move to `#/components/schemas/`, and a ref with sibling keywords (a field
    description) becomes `allOf: [{$ref}]` plus the siblings, since OpenAPI 3.0 ignores
    siblings of `$ref`. `kubectl explain` follows both forms.
    """
    if isinstance(node, list):
        return [to_v3(value) for value in node]
    if not isinstance(node, dict):
        return node
    target = node.get("$ref")
    if isinstance(target, str):
        reference = {"$ref": V3_PREFIX + target.removeprefix(V2_PREFIX)}
        siblings = {key: to_v3(value) for key, value in node.items() if key != "$ref"}
        return {"allOf": [reference], **siblings} if siblings else reference
    return {key: to_v3(value) for key, value in node.items()}
