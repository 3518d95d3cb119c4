# Sourced by walkthrough.sh and list-clusters.sh: which clusters take part, and how kubectl reaches one
# of them through the gateway. Every name can be changed from the environment.

: "${HUB_KUBECONFIG:?set HUB_KUBECONFIG to a kubeconfig for the hub cluster (where kubectl get clustergateways works)}"
CONFIG_CLUSTER=${CONFIG_CLUSTER:-config}    # Lattice's config cluster: Gateways, HTTPRoutes, the ServiceImport
BLUE_CLUSTER=${BLUE_CLUSTER:-blue}          # a workload cluster serving gateway-1
ORANGE_CLUSTER=${ORANGE_CLUSTER:-orange}    # a workload cluster serving gateway-2
EPIC_CLUSTER_A=${EPIC_CLUSTER_A:-$BLUE_CLUSTER}      # EPIC: the cluster whose Gateway is shared...
EPIC_CLUSTER_B=${EPIC_CLUSTER_B:-$ORANGE_CLUSTER}    # ...and the cluster that joins it
NAMESPACE=${NAMESPACE:-default}
FIELD_MANAGER=${FIELD_MANAGER:-gateway-api-walkthrough}

HUB_SERVER=$(kubectl --kubeconfig "$HUB_KUBECONFIG" config view --minify -o jsonpath='{.clusters[0].cluster.server}')

# Every cluster taking part, once each.
all_clusters() {
  printf '%s\n' "$CONFIG_CLUSTER" "$BLUE_CLUSTER" "$ORANGE_CLUSTER" "$EPIC_CLUSTER_A" "$EPIC_CLUSTER_B" | awk '!seen[$0]++'
}

# kubectl on one member cluster: the hub's kubeconfig (its CA and credentials), with the cluster's proxy
# URL on the hub as the server.
member() {
  local cluster=$1
  shift
  kubectl --kubeconfig "$HUB_KUBECONFIG" \
    --server "${HUB_SERVER%/}/apis/cluster.core.oam.dev/v1alpha1/clustergateways/$cluster/proxy" "$@"
}
