"""The reference's (oam-dev/cluster-gateway) own test cases, restated as black-box checks against our server."""
