"""Print fan-out Lists (lines of `<resource>\t<List JSON>` on stdin) as one table, then each cluster's outcome."""

import json
import sys

CLUSTER = "cluster.core.oam.dev/cluster-name"
ASSOCIATION = "application-networking.k8s.aws/lattice-vpc-association"
SHARING_KEY = "acnodal.io/epic-sharing-key"


def joined(values: list[object]) -> str:
    return ",".join(str(v) for v in values) or "<none>"


rows = [["CLUSTER", "KIND", "NAME", "VPC-ASSOCIATION", "SHARING-KEY", "PARENTS", "BACKENDS", "WEIGHTS"]]
outcomes = []
for line in sys.stdin:
    if not line.strip():
        continue
    resource, _, document = line.partition("\t")
    answer = json.loads(document)
    for item in answer["items"]:
        annotations = item["metadata"].get("annotations", {})
        spec = item.get("spec", {})
        backends = [ref for rule in spec.get("rules", []) for ref in rule.get("backendRefs", [])]
        rows.append([
            annotations[CLUSTER],
            item["kind"],
            item["metadata"]["name"],
            annotations.get(ASSOCIATION, "<none>"),
            annotations.get(SHARING_KEY, "<none>"),
            joined([ref["name"] for ref in spec.get("parentRefs", [])]),
            joined([ref.get("kind", "Service") for ref in backends]),
            joined([ref["weight"] for ref in backends if "weight" in ref]),
        ])
    for status in answer["clusters"]:
        outcomes.append(f'{resource}: {status["status"]}: {status.get("message", "")}')
rows[1:] = sorted(rows[1:])
widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
for row in rows:
    print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
print()
for outcome in outcomes:  # in the order asked, clusters sorted by name within each
    print(outcome)
