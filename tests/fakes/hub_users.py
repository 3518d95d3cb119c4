"""Hub users as kubeconfigs, the way clients meet them: a bearer token, a client certificate, an exec plugin.

The hub is a hosting-mode gateway (tests/fakes/hosting.py): tokens are checked by the fake hosting
cluster's TokenReview (`api.users`), client certificates against the gateway's client CA.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import yaml

from .hosting import HostingGateway
from .kube_apiserver import FakeKubeAPIServer
from .pki import CertKey, issue_client_cert

EXEC_PLUGIN = '''\
"""An exec credential plugin: each run prints the next token, expiring in a minute (so clients run it again)."""
import datetime, json, pathlib, sys

counter = pathlib.Path(sys.argv[1])
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)
status = {"token": f"{sys.argv[2]}-{runs}", "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": status}))
'''


def kubeconfig_with_user(path: Path, server: str, ca_pem: bytes, user: dict[str, Any]) -> Path:
    """A one-context kubeconfig: `server` trusted by `ca_pem`, as `user` (a kubeconfig `user:` mapping)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "hub", "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": "hub-user", "user": user}],
        "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": "hub-user"}}],
        "current-context": "hub",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def token_user(api: FakeKubeAPIServer, token: str, name: str, groups: tuple[str, ...]) -> dict[str, Any]:
    """A bearer-token user the hosting cluster's TokenReview knows."""
    api.users[token] = {"username": name, "uid": f"uid-{name}", "groups": list(groups)}
    return {"token": token}


def certificate_user(gateway: HostingGateway, name: str, groups: tuple[str, ...]) -> tuple[dict[str, Any], CertKey]:
    """A client-certificate user (CN = name, O = groups) signed by the gateway's client CA."""
    pair = issue_client_cert(gateway.client_ca, name, groups)
    return {"client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)}, pair


class ExecPluginUser:
    """An exec-plugin user whose token changes on every run: run N prints `<prefix>-N` (user `<prefix>-user-N`)."""

    def __init__(self, directory: Path, api: FakeKubeAPIServer, prefix: str, groups: tuple[str, ...], tokens: int = 50) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.script = directory / "exec_plugin.py"
        self.script.write_text(EXEC_PLUGIN)
        self.counter = directory / "exec_plugin.runs"
        self.prefix = prefix
        for n in range(1, tokens + 1):
            api.users[f"{prefix}-{n}"] = {"username": self.user_name(n), "uid": f"uid-{prefix}-{n}", "groups": list(groups)}

    def user_name(self, run: int) -> str:
        """The user the token of plugin run `run` authenticates as."""
        return f"{self.prefix}-user-{run}"

    @property
    def runs(self) -> int:
        """How many times the plugin has run."""
        return int(self.counter.read_text()) if self.counter.exists() else 0

    def user(self) -> dict[str, Any]:
        """The kubeconfig `user:` mapping that runs the plugin."""
        return {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": sys.executable,
                "args": [str(self.script), str(self.counter), self.prefix],
                "interactiveMode": "Never",
            }
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
