"""`python -m gateway_apiserver.certs` writes certs/out/ for the Service, rotates without a gap, and names unusable material."""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from gateway_apiserver.certs import main as generate_certs
from gateway_apiserver.certs import problems
from gateway_apiserver.security.pki import issue_serving_cert, new_ca


async def handshake(served: Path, trusted: Path, server_name: str) -> None:
    """A TLS handshake on loopback: a server presenting served/tls.crt, a client trusting trusted/ca.crt."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(served / "tls.crt", served / "tls.key")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        client_ctx = ssl.create_default_context(cafile=str(trusted / "ca.crt"))
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=server_name), 10
        )
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def ca_count(out: Path) -> int:
    return len(x509.load_pem_x509_certificates((out / "ca.crt").read_bytes()))


def test_three_files_only_the_key_private_valid_for_the_days_asked(tmp_path: Path) -> None:
    assert generate_certs(["--out", str(tmp_path), "--days", "30"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600
    leaf = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    assert dt.timedelta(days=29) < leaf.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(days=30)


async def test_the_certificate_verifies_for_the_service_names_only(tmp_path: Path) -> None:
    assert generate_certs(["--out", str(tmp_path), "--namespace", "team-a", "--service", "gw"]) == 0
    for name in ("gw.team-a.svc", "gw.team-a.svc.cluster.local", "gw.team-a", "gw"):
        await handshake(tmp_path, tmp_path, name)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await handshake(tmp_path, tmp_path, "gw.other.svc")


async def test_rotation_keeps_trusting_the_previous_ca_for_pods_not_yet_refreshed(tmp_path: Path) -> None:
    first, second, third = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    out = tmp_path / "out"
    assert generate_certs(["--out", str(out)]) == 0
    shutil.copytree(out, first)
    assert generate_certs(["--out", str(out)]) == 0
    shutil.copytree(out, second)
    # The new caBundle trusts a pod still serving the first certificate, and the new one.
    await handshake(first, second, "gateway-apiserver.vela-system.svc")
    await handshake(second, second, "gateway-apiserver.vela-system.svc")
    assert ca_count(second) == 2
    assert generate_certs(["--out", str(out)]) == 0
    shutil.copytree(out, third)
    # Two rotations later the first CA is gone: the bundle does not grow.
    assert ca_count(third) == 2
    await handshake(second, third, "gateway-apiserver.vela-system.svc")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        await handshake(first, third, "gateway-apiserver.vela-system.svc")


def test_a_key_left_readable_by_others_is_made_private_when_rewritten(tmp_path: Path) -> None:
    (tmp_path / "tls.key").write_text("old")
    (tmp_path / "tls.key").chmod(0o644)
    assert generate_certs(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600


def test_days_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        generate_certs(["--days", "0"])
    assert exited.value.code == 2
    assert "--days must be at least 1" in capsys.readouterr().err


HOST = "gateway-apiserver.vela-system.svc"


def test_usable_material_has_no_problems(tmp_path: Path) -> None:
    assert generate_certs(["--out", str(tmp_path)]) == 0
    assert problems(tmp_path, HOST) == []


def test_each_reason_material_cannot_serve_the_service_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path, HOST) == [f"{tmp_path}/{name} is missing" for name in ("ca.crt", "tls.crt", "tls.key")]
    assert generate_certs(["--out", str(tmp_path), "--service", "other"]) == 0
    assert problems(tmp_path, HOST) == [f"{tmp_path}/tls.crt does not name {HOST}"]
    stranger = new_ca("stranger")
    (tmp_path / "ca.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "tls.key").write_bytes(stranger.key_pem)
    assert problems(tmp_path, "other.vela-system.svc") == [
        f"{tmp_path}/tls.key is not the key of {tmp_path}/tls.crt",
        f"{tmp_path}/tls.crt was not signed by a certificate in {tmp_path}/ca.crt",
    ]
    (tmp_path / "tls.crt").write_text("not a certificate")
    [not_pem] = problems(tmp_path, HOST)
    assert not_pem.startswith(f"{tmp_path} holds a file that is not PEM")


def test_a_certificate_about_to_expire_is_refused(tmp_path: Path) -> None:
    ca = new_ca("byo-ca")
    leaf = issue_serving_cert(ca, [HOST], days=1)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    [expiring] = problems(tmp_path, HOST, min_days_left=2)
    assert expiring.startswith(f"{tmp_path}/tls.crt expires ") and expiring.endswith(" UTC")


def test_your_own_ca_bundle_is_accepted_but_a_signer_only_in_tls_crt_is_not(tmp_path: Path) -> None:
    yours, other = new_ca("corporate-ca"), new_ca("another-ca")
    leaf = issue_serving_cert(yours, [HOST])
    (tmp_path / "ca.crt").write_bytes(other.cert_pem + yours.cert_pem)
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    assert problems(tmp_path, HOST) == []
    # The aggregator trusts only caBundle: a signer appended to tls.crt does not make the leaf trusted.
    (tmp_path / "ca.crt").write_bytes(other.cert_pem)
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem + yours.cert_pem)
    assert problems(tmp_path, HOST) == [f"{tmp_path}/tls.crt was not signed by a certificate in {tmp_path}/ca.crt"]


CERTS_README = (Path(__file__).resolve().parent.parent / "certs" / "README.md").read_text()


def test_the_certs_readme_command_writes_the_files_it_describes(tmp_path: Path) -> None:
    [command] = [line for line in CERTS_README.splitlines() if line.startswith("python -m gateway_apiserver.certs")]
    argv = shlex.split(command)[3:]
    assert generate_certs([*argv, "--out", str(tmp_path)]) == 0
    for name in ("ca.crt", "tls.crt", "tls.key"):
        assert (tmp_path / name).is_file()
        assert f"`out/{name}`" in CERTS_README


def test_the_certs_readme_describes_every_committed_file() -> None:
    repo = Path(__file__).resolve().parent.parent
    tracked = subprocess.run(["git", "ls-files", "certs"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        relative = path.removeprefix("certs/")
        if relative != "README.md":
            assert f"`{relative}`" in CERTS_README or f"`{relative.split('/')[0]}/`" in CERTS_README, path
