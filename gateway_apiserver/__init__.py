"""gateway-apiserver: a multi-cluster Kubernetes API gateway (aggregated API server)."""

__version__ = "0.1.0"
