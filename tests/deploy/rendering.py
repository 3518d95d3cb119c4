"""Render deploy/ offline with `kubectl kustomize`, as `./dev install` would, from a copy with fresh certificates."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gateway_apiserver.certs import main as generate_certs

REPO = Path(__file__).resolve().parents[2]
Rendered = dict[tuple[str, str], dict[str, Any]]


def render_deploy(components: Sequence[str] = ()) -> Rendered:
    """deploy/ (plus `components`, paths relative to the repository) rendered, by (kind, name)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "deploy", root / "deploy")
        shutil.copytree(REPO / "certs", root / "certs", ignore=shutil.ignore_patterns("out"))
        assert generate_certs(["--out", str(root / "certs" / "out")]) == 0
        target = root / "deploy"
        if components:
            target = root / "overlay"
            target.mkdir()
            kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
            kustomization["resources"] = ["../deploy"]
            kustomization["components"] = [f"../{component}" for component in components]
            (target / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        out = subprocess.run(["kubectl", "kustomize", str(target)], check=True, capture_output=True, text=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}
