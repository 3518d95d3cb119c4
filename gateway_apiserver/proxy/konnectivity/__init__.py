"""ClusterProxy endpoints: member clusters reached through OCM cluster-proxy's Konnectivity proxy-server.

`konnectivity.proto` restates the apiserver-network-proxy wire protocol; `konnectivity_pb2` is
generated from it by `./dev protos` and committed.
"""
