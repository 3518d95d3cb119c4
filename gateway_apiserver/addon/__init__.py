"""The OCM add-on manager: installs the gateway from a ClusterGatewayConfiguration, rotates its
serving certificate, feeds it cluster Secrets from ManagedServiceAccounts and reports health."""
