#!/usr/bin/env bash
# Step 3 of the walkthrough: what each cluster holds, asked of one cluster after another.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=clusters.sh
. "$here/clusters.sh"

columns='KIND:.kind,NAME:.metadata.name'
columns+=',VPC-ASSOCIATION:.metadata.annotations.application-networking\.k8s\.aws/lattice-vpc-association'
columns+=',SHARING-KEY:.metadata.annotations.acnodal\.io/epic-sharing-key'
columns+=',PARENTS:.spec.parentRefs[*].name,BACKENDS:.spec.rules[*].backendRefs[*].kind'
columns+=',WEIGHTS:.spec.rules[*].backendRefs[*].weight'

for cluster in $(all_clusters); do
  printf '== %s\n' "$cluster"
  member "$cluster" get gateways,httproutes,serviceexports,serviceimports -n "$NAMESPACE" -o custom-columns="$columns"
done
