"""`./dev install` installs from a fresh clone in one step, and can take cluster-gateway's names.

A fresh clone is every file git would commit from this tree and none it ignores. Nothing here
contacts a cluster: `--dry-run` prints what would be applied, and the apply itself goes to a kubectl
stand-in that records its input.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from gateway_apiserver.config import build_parser
from gateway_apiserver.install import Target, retarget, selector_conflict

REPO = Path(__file__).resolve().parent.parent
APISERVICE = ("APIService", "v1alpha1.cluster.core.oam.dev")

Objects = dict[tuple[str, str, str | None], dict[str, Any]]


def clone(dest: Path) -> Path:
    """The files a fresh clone has, with this checkout's virtualenv (so ./dev does not rebuild one)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    return clone(tmp_path / "clone")


def run(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=env)


def objects(text: str) -> Objects:
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d for d in yaml.safe_load_all(text) if d}


def test_the_clone_runs_its_own_code(fresh: Path) -> None:
    where = run(fresh, ".venv/bin/python", "-c", "import gateway_apiserver.install as m; print(m.__file__)")
    assert where.stdout.strip() == str(fresh / "gateway_apiserver" / "install.py")


def test_kubectl_apply_k_on_a_fresh_clone_names_the_missing_certificate(fresh: Path) -> None:
    done = run(fresh, "kubectl", "kustomize", "deploy")
    assert done.returncode != 0
    assert f"lstat {fresh}/certs/out: no such file or directory" in done.stderr


def test_one_step_mints_certificates_and_renders_everything(fresh: Path) -> None:
    done = run(fresh, "./dev", "install", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "install: wrote a new CA and serving certificate for gateway-apiserver.vela-system.svc into certs/out/" in done.stderr
    got = objects(done.stdout)
    assert set(got) == {
        ("Namespace", "vela-system", None),
        ("ServiceAccount", "gateway-apiserver", "vela-system"),
        ("Role", "gateway-apiserver:cluster-secrets-reader", "vela-system"),
        ("RoleBinding", "gateway-apiserver:cluster-secrets-reader", "vela-system"),
        ("RoleBinding", "gateway-apiserver:extension-apiserver-authentication-reader", "kube-system"),
        ("ClusterRoleBinding", "gateway-apiserver:system:auth-delegator", None),
        ("Secret", "gateway-apiserver-tls", "vela-system"),
        ("Service", "gateway-apiserver", "vela-system"),
        ("Deployment", "gateway-apiserver", "vela-system"),
        ("PodDisruptionBudget", "gateway-apiserver", "vela-system"),
        ("APIService", "v1alpha1.cluster.core.oam.dev", None),
    }
    out = fresh / "certs" / "out"
    api = got[(*APISERVICE, None)]["spec"]
    assert base64.b64decode(api["caBundle"]) == (out / "ca.crt").read_bytes()
    assert api["service"] == {"name": "gateway-apiserver", "namespace": "vela-system", "port": 443}
    assert api["insecureSkipTLSVerify"] is False
    secret = got[("Secret", "gateway-apiserver-tls", "vela-system")]
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        name: (out / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")
    }
    [container] = got[("Deployment", "gateway-apiserver", "vela-system")]["spec"]["template"]["spec"]["containers"]
    assert build_parser().parse_args(container["args"]).secret_namespace == "vela-system"
    rbac = [d for d in yaml.safe_load_all((fresh / "deploy" / "rbac.yaml").read_text()) if d]
    assert [got[(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))] for d in rbac] == rbac
    # The key is private and git would not commit it.
    assert (out / "tls.key").stat().st_mode & 0o077 == 0
    staged = run(fresh, "git", "add", "--all", "--dry-run").stdout
    assert "certs/" in staged and "certs/out" not in staged


def test_a_second_install_reuses_the_certificates(fresh: Path) -> None:
    first = run(fresh, "./dev", "install", "--dry-run")
    second = run(fresh, "./dev", "install", "--dry-run")
    assert (first.returncode, second.returncode) == (0, 0)
    assert second.stderr == ""
    assert second.stdout == first.stdout
    # And kubectl apply -k deploy/ now renders the same objects.
    assert objects(run(fresh, "kubectl", "kustomize", "deploy").stdout) == objects(first.stdout)


def test_certificates_for_another_service_are_refused_with_the_way_out(fresh: Path) -> None:
    assert run(fresh, "./dev", "install", "--dry-run").returncode == 0
    done = run(fresh, "./dev", "install", "--dry-run", "--service", "gateway-service", "--port", "9443")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "install: error: the certificate material in certs/out/ cannot serve gateway-service.vela-system.svc: "
        "certs/out/tls.crt does not name gateway-service.vela-system.svc. Move certs/out/ away to have new "
        "material minted, or see certs/README.md to bring your own.\n"
    )


def test_the_reference_names_replace_cluster_gateway_in_place(fresh: Path) -> None:
    """The cluster-gateway chart: Service gateway-service:9443 in the release namespace, Secrets elsewhere."""
    done = run(
        fresh,
        "./dev",
        "install",
        "--dry-run",
        "--namespace=cluster-gateway",
        "--secret-namespace=open-cluster-management-credentials",
        "--service=gateway-service",
        "--port=9443",
    )
    assert done.returncode == 0, done.stderr
    got = objects(done.stdout)
    reference = {"name": "gateway-service", "namespace": "cluster-gateway", "port": 9443}
    assert got[(*APISERVICE, None)]["spec"]["service"] == reference
    service = got[("Service", "gateway-service", "cluster-gateway")]["spec"]
    assert service["ports"] == [{"name": "https", "port": 9443, "targetPort": 9443, "protocol": "TCP"}]
    leaf = x509.load_pem_x509_certificate((fresh / "certs" / "out" / "tls.crt").read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gateway-service.cluster-gateway.svc" in san.get_values_for_type(x509.DNSName)
    assert ("Role", "gateway-apiserver:cluster-secrets-reader", "open-cluster-management-credentials") in got
    assert ("Namespace", "open-cluster-management-credentials", None) in got
    assert ("Namespace", "cluster-gateway", None) in got


BASE: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vela-system"}},
    {"kind": "ServiceAccount", "metadata": {"name": "gateway-apiserver", "namespace": "vela-system"}},
    {"kind": "Role", "metadata": {"name": "reader", "namespace": "vela-system"}},
    {
        "kind": "RoleBinding",
        "metadata": {"name": "reader", "namespace": "vela-system"},
        "subjects": [{"kind": "ServiceAccount", "name": "gateway-apiserver", "namespace": "vela-system"}],
    },
    {
        "kind": "RoleBinding",
        "metadata": {"name": "auth-reader", "namespace": "kube-system"},
        "subjects": [{"kind": "ServiceAccount", "name": "gateway-apiserver", "namespace": "vela-system"}],
    },
    {
        "kind": "Deployment",
        "metadata": {"name": "gateway-apiserver", "namespace": "vela-system"},
        "spec": {"template": {"spec": {"containers": [{"args": ["--secret-namespace=vela-system", "--secure-port=9443"]}]}}},
    },
    {
        "kind": "Service",
        "metadata": {"name": "gateway-apiserver", "namespace": "vela-system"},
        "spec": {"ports": [{"port": 443, "targetPort": 9443}]},
    },
    {
        "kind": "APIService",
        "metadata": {"name": "v1alpha1.cluster.core.oam.dev"},
        "spec": {"service": {"name": "gateway-apiserver", "namespace": "vela-system", "port": 443}},
    },
]


def test_retarget_moves_every_reference_and_leaves_kube_system_alone() -> None:
    target = Target(namespace="gw", secret_namespace="creds", service="gateway-service", port=9443)
    got = retarget(BASE, target)
    sa_ref = {"kind": "ServiceAccount", "name": "gateway-apiserver", "namespace": "gw"}
    assert got == [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gw"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "creds"}},
        {"kind": "ServiceAccount", "metadata": {"name": "gateway-apiserver", "namespace": "gw"}},
        {"kind": "Role", "metadata": {"name": "reader", "namespace": "creds"}},
        {"kind": "RoleBinding", "metadata": {"name": "reader", "namespace": "creds"}, "subjects": [sa_ref]},
        {"kind": "RoleBinding", "metadata": {"name": "auth-reader", "namespace": "kube-system"}, "subjects": [sa_ref]},
        {
            "kind": "Deployment",
            "metadata": {"name": "gateway-apiserver", "namespace": "gw"},
            "spec": {"template": {"spec": {"containers": [{"args": ["--secret-namespace=creds", "--secure-port=9443"]}]}}},
        },
        {
            "kind": "Service",
            "metadata": {"name": "gateway-service", "namespace": "gw"},
            "spec": {"ports": [{"port": 9443, "targetPort": 9443}]},
        },
        {
            "kind": "APIService",
            "metadata": {"name": "v1alpha1.cluster.core.oam.dev"},
            "spec": {"service": {"name": "gateway-service", "namespace": "gw", "port": 9443}},
        },
    ]
    assert BASE[1]["metadata"]["namespace"] == "vela-system"  # pure: the input is not changed


def test_retarget_to_the_base_names_changes_nothing() -> None:
    assert retarget(BASE, Target()) == BASE


def test_without_leaves_out_service_and_apiservice_for_running_beside_cluster_gateway(fresh: Path) -> None:
    done = run(fresh, "./dev", "install", "--dry-run", "--without", "Service", "--without", "APIService")
    assert done.returncode == 0, done.stderr
    kinds = {kind for kind, _, _ in objects(done.stdout)}
    assert "Deployment" in kinds and "Service" not in kinds and "APIService" not in kinds
    bad = run(fresh, "./dev", "install", "--dry-run", "--without", "Deployment")
    assert bad.returncode == 2
    assert "./dev install: error: argument --without: invalid choice: 'Deployment'" in bad.stderr


def stand_in(tmp: Path, apply_status: int = 0, live_service: dict[str, Any] | None = None) -> Path:
    """A kubectl that renders with the real one (offline), records `apply`, and answers `get service` itself.

    `get service` prints `live_service`, or the kube-apiserver's NotFound when there is none.
    """
    (tmp / "live-service.json").write_text(json.dumps(live_service) if live_service else "")
    script = tmp / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> {tmp}/calls\n"
        'case "$*" in\n'
        f"  apply*) cat > {tmp}/applied.yaml; [ {apply_status} = 0 ] || echo 'no cluster' >&2; exit {apply_status} ;;\n"
        f"  *' get service '*) [ -s {tmp}/live-service.json ] && exec cat {tmp}/live-service.json\n"
        '    echo "Error from server (NotFound): services \\"$5\\" not found" >&2; exit 1 ;;\n'
        "esac\n"
        f'exec {shutil.which("kubectl")} "$@"\n'
    )
    script.chmod(0o755)
    return script


def test_install_pipes_the_rendered_manifests_to_kubectl_apply(fresh: Path, tmp_path: Path) -> None:
    done = run(fresh, "./dev", "install", "--kubectl", str(stand_in(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "now watch `kubectl get apiservice v1alpha1.cluster.core.oam.dev` until AVAILABLE is True" in done.stderr
    assert (tmp_path / "calls").read_text().splitlines()[-2:] == [
        "-n vela-system get service gateway-apiserver -o json",
        "apply -f -",
    ]
    assert (tmp_path / "applied.yaml").read_text() == run(fresh, "./dev", "install", "--dry-run").stdout


def test_a_failing_apply_is_the_exit_status(fresh: Path, tmp_path: Path) -> None:
    done = run(fresh, "./dev", "install", "--kubectl", str(stand_in(tmp_path, apply_status=1)))
    assert (done.returncode, done.stderr.splitlines()[-1]) == (1, "no cluster")


KUBEVELA_SELECTOR = {
    "app.kubernetes.io/name": "vela-core-cluster-gateway",
    "app.kubernetes.io/instance": "kubevela-cluster-gateway",
}


def test_a_live_service_with_another_selector_is_refused_before_anything_is_applied(fresh: Path, tmp_path: Path) -> None:
    """kubectl apply would merge the selectors: cluster-gateway's instance key would stay and match none of our pods."""
    live = {"kind": "Service", "spec": {"selector": KUBEVELA_SELECTOR}}
    kubectl = stand_in(tmp_path, live_service=live)
    done = run(
        fresh, "./dev", "install", "--kubectl", str(kubectl), "--service", "kubevela-cluster-gateway-service", "--port", "9443"
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "install: error: Service vela-system/kubevela-cluster-gateway-service exists with the selector "
        '{"app.kubernetes.io/instance": "kubevela-cluster-gateway", "app.kubernetes.io/name": "vela-core-cluster-gateway"}: '
        "kubectl apply would merge ours into it and match none of our pods. Once our Deployment is ready, replace it: "
        "kubectl -n vela-system patch service kubevela-cluster-gateway-service --type json -p "
        """'[{"op":"replace","path":"/spec/selector","value":{"app.kubernetes.io/name":"gateway-apiserver"}}]' """
        "(README: Replacing cluster-gateway)"
    )
    assert not (tmp_path / "applied.yaml").exists()
    # The README's own switch command is the one the message gives.
    assert (
        done.stderr.splitlines()[-1].split("replace it: ")[1].removesuffix(" (README: Replacing cluster-gateway)")
        in (REPO / "README.md").read_text()
    )


def test_a_live_service_already_switched_to_our_pods_is_applied(fresh: Path, tmp_path: Path) -> None:
    live = {"kind": "Service", "spec": {"selector": {"app.kubernetes.io/name": "gateway-apiserver"}}}
    done = run(fresh, "./dev", "install", "--kubectl", str(stand_in(tmp_path, live_service=live)))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "applied.yaml").read_text().startswith("apiVersion: v1\nkind: Namespace\n")


def test_selector_conflict_only_for_a_live_selector_that_differs() -> None:
    service = {"metadata": {"name": "s", "namespace": "n"}, "spec": {"selector": {"app": "ours"}}}
    assert selector_conflict(service, None) is None
    assert selector_conflict(service, {"app": "ours"}) is None
    assert selector_conflict(service, {}) is not None  # a Service without a selector would merge to ours alone, but say it
    assert selector_conflict(service, {"app": "ours", "extra": "x"}) is not None


def test_outside_the_repository_the_install_says_where_to_run_it(tmp_path: Path) -> None:
    python = str(REPO / ".venv" / "bin" / "python")
    done = run(tmp_path, python, "-m", "gateway_apiserver.install", "--dry-run", env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2
    assert f"{tmp_path} has no deploy/ and certs/: run this from the repository root" in done.stderr
