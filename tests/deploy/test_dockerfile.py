"""The Dockerfile, checked statically (these machines have no Docker engine)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCKERFILE = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
INSTRUCTIONS = [line.strip() for line in DOCKERFILE.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_multi_stage_on_python_311_slim() -> None:
    froms = [line for line in INSTRUCTIONS if line.startswith("FROM ")]
    assert len(froms) == 2
    assert all(re.match(r"FROM python:3\.11-slim\b", line) for line in froms)


def test_installs_the_package_from_pyproject_without_test_extras() -> None:
    assert "COPY pyproject.toml" in DOCKERFILE and "COPY gateway_apiserver" in DOCKERFILE
    assert "pip wheel" in DOCKERFILE and "[test]" not in DOCKERFILE


def test_runs_as_a_non_root_uid_with_an_exec_form_entrypoint() -> None:
    users = [line.split()[1] for line in INSTRUCTIONS if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    [entrypoint] = [line for line in INSTRUCTIONS if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["gateway-apiserver"]


def test_provides_the_reference_images_command_as_apiserver() -> None:
    """Manifests written for cluster-gateway's image run `/apiserver`: it is the same console script, linked after install."""
    final_stage = DOCKERFILE[DOCKERFILE.rindex("FROM ") :]
    install = final_stage.index("pip install")
    link = final_stage.index('ln -s "$(command -v gateway-apiserver)" /apiserver')
    assert install < link < final_stage.index("USER ")  # linked as root, before dropping privileges


def test_the_working_directory_belongs_to_the_runtime_user() -> None:
    """cluster-gateway's own chart passes no TLS flags: the self-signed certificate is written under the
    working directory (--cert-dir is relative), so it must be writable by uid 10001, not `/`."""
    final_stage = DOCKERFILE[DOCKERFILE.rindex("FROM ") :]
    [workdir] = [line.split()[1] for line in final_stage.splitlines() if line.startswith("WORKDIR ")]
    assert f"install -d -o 10001 -g 10001 {workdir}" in final_stage
    assert final_stage.index(f"install -d -o 10001 -g 10001 {workdir}") < final_stage.index("WORKDIR ")
