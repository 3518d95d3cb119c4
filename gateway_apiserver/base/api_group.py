"""Our API group and version: the names every layer builds paths and objects from."""

GROUP = "cluster.core.oam.dev"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
# URL prefix of the group version, e.g. for route tables: /apis/cluster.core.oam.dev/v1alpha1
API_PREFIX = f"/apis/{GROUP_VERSION}"
