module gateway-apiserver/benchmarks/go_peer

go 1.19
