"""ClusterProxy endpoints: member clusters reached through OCM cluster-proxy's Konnectivity proxy-server.

`konnectivity.proto` restates the apiserver-network-proxy wire protocol; `konnectivity_pb2` is
generated from it by `./dev protos` and committed.
"""

import os

# gRPC's fork support crashes a child forked while the channel's poller runs (uvloop spawns exec plugins and
# kubectl that way); the gateway never uses gRPC in a child, so it is off unless the operator set it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
