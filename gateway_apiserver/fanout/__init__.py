"""Server-side fan-out: one list or watch across every ClusterGateway a label selector matches."""
