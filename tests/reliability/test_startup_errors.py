"""A start-up error is one line on stderr, `gateway-apiserver: error: <flag> <value>: <problem>`, and exit code 2.

Each case runs the real `gateway-apiserver` command. No traceback, no log line before the error, and
the message names the flag to fix, including the errors found only once the event loop runs (a port
in use, a certificate that does not load).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway_apiserver.config import parse_config
from tests.fakes.gateway import write_kubeconfig
from tests.fakes.pki import issue_server_cert, make_ca, write_pair

REPO = Path(__file__).resolve().parents[2]
DNS1123 = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with "
    "an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
    "and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def gateway_command() -> list[str]:
    """The installed console script, as users run it (python -m when it is not installed)."""
    script = Path(sys.executable).parent / "gateway-apiserver"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway_apiserver"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Files:
    """What the cases point flags at."""

    tmp: Path
    cert: Path  # a serving certificate...
    key: Path  # ...and its key
    other_key: Path  # the key of another certificate
    encrypted_key: Path
    garbage: Path  # not PEM
    directory: Path
    missing: Path
    bad_yaml: Path
    kubeconfig: Path  # a valid kubeconfig of an unreachable hosting cluster (never contacted)
    port: int  # free
    busy_port: int  # held by another listener for the whole test

    def standalone(self, *args: str) -> list[str]:
        return [
            "--standalone",
            "--secrets-dir",
            str(REPO / "examples/clusters"),
            "--cert-dir",
            str(self.tmp / "certs"),
            "--secure-port",
            str(self.port),
            *args,
        ]


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, busy_port: int) -> Files:
    tmp = tmp_path_factory.mktemp("startup")
    ca = make_ca()
    cert, key = write_pair(tmp, "serving", issue_server_cert(ca))
    _, other_key = write_pair(tmp, "other", issue_server_cert(ca))
    encrypted_key = tmp / "encrypted.key"
    encrypted_key.write_bytes(
        issue_server_cert(ca).key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
    )
    garbage = tmp / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    (tmp / "a-directory").mkdir()
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("spec: [unclosed\n")
    kubeconfig = write_kubeconfig(tmp / "hosting.kubeconfig", "https://127.0.0.1:1", cert)
    return Files(
        tmp, cert, key, other_key, encrypted_key, garbage, tmp / "a-directory", tmp / "missing.pem", bad_yaml, kubeconfig,
        free_port(), busy_port,
    )  # fmt: skip


Case = Callable[[Files], tuple[list[str], str | re.Pattern[str]]]

# Every flag whose value can be wrong, with the exact line the user reads.
CASES: dict[str, Case] = {
    # The serving certificate.
    "garbage certificate": lambda f: (
        f.standalone("--tls-cert-file", str(f.garbage), "--tls-private-key-file", str(f.key)),
        f'--tls-cert-file {f.garbage}: not a PEM certificate (no valid "BEGIN CERTIFICATE" block)',
    ),
    "garbage key": lambda f: (
        f.standalone("--tls-cert-file", str(f.cert), "--tls-private-key-file", str(f.garbage)),
        f'--tls-private-key-file {f.garbage}: not a PEM private key (no valid "BEGIN ... PRIVATE KEY" block)',
    ),
    "encrypted key": lambda f: (
        f.standalone("--tls-cert-file", str(f.cert), "--tls-private-key-file", str(f.encrypted_key)),
        f"--tls-private-key-file {f.encrypted_key}: the private key is encrypted; give an unencrypted PEM key",
    ),
    "key of another certificate": lambda f: (
        f.standalone("--tls-cert-file", str(f.cert), "--tls-private-key-file", str(f.other_key)),
        f"--tls-private-key-file {f.other_key} and --tls-cert-file {f.cert}: "
        "the private key does not match the certificate (the first one in the file)",
    ),
    "certificate is a directory": lambda f: (
        f.standalone("--tls-cert-file", str(f.directory), "--tls-private-key-file", str(f.key)),
        f"--tls-cert-file {f.directory}: is a directory, not a file",
    ),
    "certificate missing": lambda f: (
        f.standalone("--tls-cert-file", str(f.missing), "--tls-private-key-file", str(f.key)),
        f"--tls-cert-file {f.missing}: no such file",
    ),
    "key without certificate": lambda f: (
        f.standalone("--tls-private-key-file", str(f.key)),
        "--tls-cert-file and --tls-private-key-file must be given together",
    ),
    "cert-dir is a file": lambda f: (
        [*f.standalone(), "--cert-dir", str(f.garbage)],
        f"--cert-dir {f.garbage}: is a file, not a directory",
    ),
    "cert-dir under a file": lambda f: (
        [*f.standalone(), "--cert-dir", str(f.garbage / "certs")],
        f"--cert-dir {f.garbage / 'certs'}: cannot write the self-signed certificate: Not a directory",
    ),
    # Listening.
    "port in use": lambda f: (
        [*f.standalone(), "--secure-port", str(f.busy_port)],
        f"--secure-port {f.busy_port}: address 127.0.0.1:{f.busy_port} is already in use",
    ),
    "port in use, with workers": lambda f: (
        [*f.standalone(), "--secure-port", str(f.busy_port), "--workers", "2"],
        f"--secure-port {f.busy_port}: address 127.0.0.1:{f.busy_port} is already in use",
    ),
    "bind address not on this machine": lambda f: (
        ["--kubeconfig", str(f.kubeconfig), "--secure-port", str(f.port), "--bind-address", "192.0.2.1"],
        f"--bind-address 192.0.2.1: cannot listen on 192.0.2.1:{f.port}: no such address on this machine",
    ),
    "port zero": lambda f: ([*f.standalone(), "--secure-port", "0"], "--secure-port 0: must be between 1 and 65535"),
    "port out of range": lambda f: (
        [*f.standalone(), "--secure-port", "70000"],
        "--secure-port 70000: must be between 1 and 65535",
    ),
    "port not a number": lambda f: (
        [*f.standalone(), "--secure-port", "https"],
        "argument --secure-port: invalid int value: 'https'",
    ),
    "bind address not an IP": lambda f: (
        f.standalone("--bind-address", "localhost"),
        "--bind-address localhost: not an IP address",
    ),
    "standalone on a public address": lambda f: (
        f.standalone("--bind-address", "0.0.0.0"),
        "--bind-address 0.0.0.0: standalone mode has no authentication, so it binds loopback only",
    ),
    "workers zero": lambda f: (f.standalone("--workers", "0"), "--workers 0: must be between 1 and 64"),
    "workers too many": lambda f: (f.standalone("--workers", "65"), "--workers 65: must be between 1 and 64"),
    # Durations and numbers.
    "negative request timeout": lambda f: (
        f.standalone("--proxy-request-timeout", "-5s"),
        "--proxy-request-timeout -5s: must be a positive duration",
    ),
    "zero request timeout": lambda f: (
        f.standalone("--proxy-request-timeout=0s"),
        "--proxy-request-timeout 0s: must be a positive duration",
    ),
    "zero connect timeout": lambda f: (
        f.standalone("--proxy-connect-timeout", "0"),
        "--proxy-connect-timeout 0s: must be a positive duration",
    ),
    "negative cache ttl": lambda f: (
        f.standalone("--authorization-webhook-cache-authorized-ttl", "-1m"),
        "--authorization-webhook-cache-authorized-ttl -60s: must not be negative (0 turns the cache off)",
    ),
    "duration without unit": lambda f: (
        f.standalone("--proxy-request-timeout", "30"),
        "argument --proxy-request-timeout: invalid duration '30' (want e.g. 10s, 1m)",
    ),
    "bookmark interval not a number": lambda f: (
        f.standalone("--bookmark-interval", "nan"),
        "--bookmark-interval nan: must be a positive number of seconds",
    ),
    "bookmark interval negative": lambda f: (
        f.standalone("--bookmark-interval", "-1"),
        "--bookmark-interval -1: must be a positive number of seconds",
    ),
    "min request timeout zero": lambda f: (
        f.standalone("--min-request-timeout", "0"),
        "--min-request-timeout 0: must be greater than 0",
    ),
    # Names.
    "secret namespace with a space": lambda f: (
        f.standalone("--secret-namespace", "BAD NS"),
        f'--secret-namespace "BAD NS": {DNS1123}',
    ),
    "secret namespace too long": lambda f: (
        f.standalone("--secret-namespace", "n" * 64),
        f'--secret-namespace "{"n" * 64}": must be no more than 63 characters',
    ),
    "secret namespace with a newline": lambda f: (
        f.standalone("--secret-namespace", "vela\nsystem"),
        f'--secret-namespace "vela\\nsystem": {DNS1123}',
    ),
    "service name with an underscore": lambda f: (
        f.standalone("--service-name", "gateway_apiserver"),
        f'--service-name "gateway_apiserver": {DNS1035}',
    ),
    # Feature gates.
    "unknown feature gate": lambda f: (
        f.standalone("--feature-gates", "Teleport=true"),
        "--feature-gates: unrecognized feature gate: Teleport",
    ),
    "feature gate not a bool": lambda f: (
        f.standalone("--feature-gates", "HealthinessCheck=maybe"),
        "--feature-gates: invalid value of HealthinessCheck=maybe, err: invalid syntax",
    ),
    "feature gate without value": lambda f: (
        f.standalone("--feature-gates", "HealthinessCheck"),
        "--feature-gates: missing bool value for HealthinessCheck",
    ),
    # Files.
    "proxy config missing": lambda f: (
        f.standalone("--cluster-gateway-proxy-config", str(f.missing)),
        f"--cluster-gateway-proxy-config {f.missing}: no such file",
    ),
    "proxy config is a directory": lambda f: (
        f.standalone("--cluster-gateway-proxy-config", str(f.directory)),
        f"--cluster-gateway-proxy-config {f.directory}: is a directory, not a file",
    ),
    "proxy config not YAML": lambda f: (
        f.standalone("--cluster-gateway-proxy-config", str(f.bad_yaml)),
        re.compile(re.escape(f"--cluster-gateway-proxy-config {f.bad_yaml}: invalid YAML: ") + r"[^\n]+"),
    ),
    "kubeconfig missing": lambda f: (
        ["--kubeconfig", str(f.missing), "--cert-dir", str(f.tmp / "certs")],
        f"--kubeconfig {f.missing}: no such file",
    ),
    "kubeconfig not YAML": lambda f: (
        ["--kubeconfig", str(f.bad_yaml), "--cert-dir", str(f.tmp / "certs")],
        re.compile(re.escape(f"--kubeconfig {f.bad_yaml}: cannot load kubeconfig {f.bad_yaml}: ") + r"[^\n]+"),
    ),
    "client CA is a directory": lambda f: (
        ["--kubeconfig", str(f.kubeconfig), "--client-ca-file", str(f.directory)],
        f"--client-ca-file {f.directory}: is a directory, not a file",
    ),
    "client CA not PEM": lambda f: (
        ["--kubeconfig", str(f.kubeconfig), "--client-ca-file", str(f.garbage)],
        f'--client-ca-file {f.garbage}: not a PEM certificate bundle (no valid "BEGIN CERTIFICATE" block)',
    ),
    "front-proxy CA not PEM": lambda f: (
        ["--kubeconfig", str(f.kubeconfig), "--requestheader-client-ca-file", str(f.garbage)],
        f'--requestheader-client-ca-file {f.garbage}: not a PEM certificate bundle (no valid "BEGIN CERTIFICATE" block)',
    ),
    "secrets dir missing": lambda f: (
        ["--standalone", "--secrets-dir", str(f.missing)],
        f"--secrets-dir {f.missing}: no such directory",
    ),
    "secrets dir is a file": lambda f: (
        ["--standalone", "--secrets-dir", str(f.garbage)],
        f"--secrets-dir {f.garbage}: is a file, not a directory",
    ),
    "log level unknown": lambda f: (
        f.standalone("--log-level", "loud"),
        re.compile(r"argument --log-level: invalid choice: 'loud' \(choose from '?debug'?, '?info'?, '?warning'?, '?error'?\)"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(files: Files, case: Case) -> None:
    args, expected = case(files)
    proc = subprocess.run([*gateway_command(), *args], capture_output=True, text=True, timeout=30, cwd=files.tmp, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    if isinstance(expected, str):
        assert proc.stderr == f"gateway-apiserver: error: {expected}\n"
    else:
        assert re.fullmatch(r"gateway-apiserver: error: " + expected.pattern + r"\n", proc.stderr), proc.stderr


def test_the_flags_the_kubevela_chart_passes_are_accepted() -> None:
    # vela-core's cluster-gateway Deployment passes the generic apiserver's APIPriorityAndFairness gate.
    config = parse_config(["--secure-port=9443", "--feature-gates=APIPriorityAndFairness=false,ClientIdentityPenetration=true"])
    assert config.feature_gates["ClientIdentityPenetration"] is True
    assert "APIPriorityAndFairness" not in config.feature_gates


def test_a_negative_duration_after_a_space_is_the_flags_value_as_in_go() -> None:
    # pflag takes the next word as the value even when it starts with '-'.
    with pytest.raises(Exception, match=r"^--proxy-request-timeout -0.5s: must be a positive duration$"):
        parse_config(["--proxy-request-timeout", "-500ms"])
    assert parse_config(["--proxy-request-timeout", "1m30s"]).proxy_request_timeout == 90
