#!/usr/bin/env bash
# The multi-cluster Gateway API walkthrough (README.md): from the hub, through the gateway, into each
# cluster. Server-side apply throughout, so running it again changes nothing.
#
#   HUB_KUBECONFIG=~/.kube/hub.yaml ./walkthrough.sh && HUB_KUBECONFIG=~/.kube/hub.yaml ./list-clusters.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=clusters.sh
. "$here/clusters.sh"

apply() {
  local cluster=$1
  shift
  member "$cluster" apply --server-side --field-manager "$FIELD_MANAGER" -n "$NAMESPACE" "$@"
}

printf '== 0. CRDs: Gateway API and Multi-Cluster Services, in every cluster that lacks them\n'
for cluster in $(all_clusters); do
  for crds in "$here"/crds/*.yaml; do
    # A cluster that already serves these resources keeps its own CRDs (the projects' full ones, say):
    # only a cluster without them gets the minimal ones.
    if member "$cluster" get -f "$crds" >/dev/null 2>&1; then
      printf '%s: %s already installed, kept\n' "$cluster" "$(basename "$crds")"
      continue
    fi
    member "$cluster" apply --server-side --field-manager "$FIELD_MANAGER" -f "$crds"
    member "$cluster" wait --for condition=Established --timeout 60s -f "$crds"
  done
done

printf '\n== 1. EPIC: the Gateway of %s, shared with %s\n' "$EPIC_CLUSTER_A" "$EPIC_CLUSTER_B"
apply "$EPIC_CLUSTER_A" -f "$here/epic/gateway-a.yaml"
sharing_key=$(member "$EPIC_CLUSTER_A" get gateway shared-gateway -n "$NAMESPACE" -o jsonpath='{.metadata.uid}')
printf 'sharing key (metadata.uid of shared-gateway in %s): %s\n' "$EPIC_CLUSTER_A" "$sharing_key"
sed "s/EPIC_SHARING_KEY/$sharing_key/" "$here/epic/gateway-b.yaml" | apply "$EPIC_CLUSTER_B" -f -

printf '\n== 2. Lattice: Gateways and HTTPRoutes in %s, Gateways served by %s and %s\n' \
  "$CONFIG_CLUSTER" "$BLUE_CLUSTER" "$ORANGE_CLUSTER"
apply "$CONFIG_CLUSTER" -f "$here/lattice/config/"
apply "$BLUE_CLUSTER" -f "$here/lattice/blue/"
apply "$ORANGE_CLUSTER" -f "$here/lattice/orange/"

printf '\nDone. See what each cluster holds: %s/list-clusters.sh\n' "$here"
