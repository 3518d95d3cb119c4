"""--feature-gates: the reference's four gates, and the Kubernetes gates its generic apiserver also accepts."""

from __future__ import annotations

from .checks import ConfigError
from .flag_values import FALSE_WORDS, TRUE_WORDS

FEATURE_GATES: dict[str, bool] = {
    "HealthinessCheck": False,
    "SecretCache": True,
    "ClientIdentityPenetration": False,
    "OCMClusterCache": True,
}
# Gates of the generic apiserver the reference links (k8s.io/apiserver's features v0.25 to v0.31,
# component-base's ComponentSLIs, and the feature-gate flag's own AllAlpha/AllBeta): accepted as
# booleans, with a warning, since nothing here depends on them. The KubeVela chart passes
# APIPriorityAndFairness=false.
KUBERNETES_FEATURE_GATES = frozenset(
    {
        "AllAlpha",
        "AllBeta",
        "ComponentSLIs",
        "APIListChunking",
        "APIPriorityAndFairness",
        "APIResponseCompression",
        "APIServerIdentity",
        "APIServerTracing",
        "APIServingWithRoutine",
        "AdmissionWebhookMatchConditions",
        "AdvancedAuditing",
        "AggregatedDiscoveryEndpoint",
        "AnonymousAuthConfigurableEndpoints",
        "AuthorizeWithSelectors",
        "ConcurrentWatchObjectDecode",
        "ConsistentListFromCache",
        "CoordinatedLeaderElection",
        "CustomResourceValidationExpressions",
        "DryRun",
        "EfficientWatchResumption",
        "InPlacePodVerticalScaling",
        "KMSv1",
        "KMSv2",
        "KMSv2KDF",
        "OpenAPIEnums",
        "OpenAPIV3",
        "RemainingItemCount",
        "RemoveSelfLink",
        "ResilientWatchCacheInitialization",
        "RetryGenerateName",
        "SeparateCacheWatchRPC",
        "ServerSideApply",
        "ServerSideFieldValidation",
        "StorageVersionAPI",
        "StorageVersionHash",
        "StrictCostEnforcementForVAP",
        "StrictCostEnforcementForWebhooks",
        "StructuredAuthenticationConfiguration",
        "StructuredAuthorizationConfiguration",
        "UnauthenticatedHTTP2DOSMitigation",
        "ValidatingAdmissionPolicy",
        "WatchBookmark",
        "WatchCacheInitializationPostStartHook",
        "WatchFromStorageWithoutResourceVersion",
        "WatchList",
        "ZeroLimitedNominalConcurrencyShares",
    }
)


def kubernetes_gate_warning(gate: str) -> str:
    """The one line printed for a Kubernetes feature gate given in --feature-gates."""
    return f"--feature-gates: {gate} is a gate of the Kubernetes generic apiserver and has no effect here"


def parse_feature_gates(text: str) -> dict[str, bool]:
    """`A=true,B=false` over the defaults; unknown gates and bad values are errors."""
    return feature_gates_and_warnings(text)[0]


def feature_gates_and_warnings(text: str) -> tuple[dict[str, bool], list[str]]:
    """The reference's gates over their defaults, and a warning per Kubernetes gate given (they change nothing).

    A gate neither knows is an error, in the words of k8s.io/component-base's feature gate flag.
    """
    gates = dict(FEATURE_GATES)
    warnings: list[str] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--feature-gates: missing bool value for {key}")
        if key not in FEATURE_GATES and key not in KUBERNETES_FEATURE_GATES:
            raise ConfigError(f"--feature-gates: unrecognized feature gate: {key}")
        value = value.strip()
        if value not in TRUE_WORDS | FALSE_WORDS:
            raise ConfigError(f"--feature-gates: invalid value of {key}={value}, err: invalid syntax")
        if key in FEATURE_GATES:
            gates[key] = value in TRUE_WORDS
        elif kubernetes_gate_warning(key) not in warnings:
            warnings.append(kubernetes_gate_warning(key))
    return gates, warnings
