"""The proxy subresource: forwarding requests to member clusters."""
