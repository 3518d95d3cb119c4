#!/usr/bin/env bash
# Step 4 of the walkthrough: the same question as step 3, one fan-out request per resource instead of
# one request per cluster. Each item comes back annotated with its cluster, and every cluster's outcome
# is listed, so a cluster that failed is seen, never silently missing. Needs python3 to print a table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=clusters.sh
. "$here/clusters.sh"

# Which ClusterGateways to ask (a label selector on them); empty: every ClusterGateway of the hub.
CLUSTER_SELECTOR=${CLUSTER_SELECTOR:-}
FANOUT=/apis/cluster.core.oam.dev/v1alpha1/clustergateways/-/proxy

for path in \
  "apis/gateway.networking.k8s.io/v1/namespaces/$NAMESPACE/gateways" \
  "apis/gateway.networking.k8s.io/v1/namespaces/$NAMESPACE/httproutes" \
  "apis/multicluster.x-k8s.io/v1alpha1/namespaces/$NAMESPACE/serviceexports" \
  "apis/multicluster.x-k8s.io/v1alpha1/namespaces/$NAMESPACE/serviceimports"; do
  query=""
  [ -n "$CLUSTER_SELECTOR" ] && query="?clusterSelector=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$CLUSTER_SELECTOR")"
  printf '%s\t' "${path##*/}"  # the resource, then its fan-out List, on one line
  kubectl --kubeconfig "$HUB_KUBECONFIG" get --raw "$FANOUT/$path$query"
  echo
done | python3 "$here/fan_out_table.py"
