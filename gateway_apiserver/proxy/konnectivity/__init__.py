"""ClusterProxy endpoints: member clusters reached through OCM cluster-proxy's Konnectivity proxy-server.

`konnectivity.proto` restates the apiserver-network-proxy wire protocol; `konnectivity_pb2` is
generated from it by `./dev protos` and committed.
"""

import os

# gRPC's fork support crashes a child forked while the channel's poller runs (uvloop spawns exec plugins and
# kubectl that way); the gateway never uses gRPC in a child, so it is off unless the operator set it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# gRPC core's own INFO lines (handshake failures, GOAWAYs) would interleave unstructured text with the gateway's
# logs; every failure they describe reaches the client as a Status and the gateway's log.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
