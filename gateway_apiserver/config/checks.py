"""Checks of flag values whose messages name the flag, in the wording kube's own flags use."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from pathlib import Path


class ConfigError(Exception):
    """An invalid flag or configuration; the message is one line."""


# The wording of k8s.io/apimachinery's validation, which kube's own flags print.
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
    "and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def check_label(flag: str, value: str, pattern: re.Pattern[str], message: str) -> None:
    quoted = json.dumps(value, ensure_ascii=False)  # Go's %q: one line, whatever the value holds
    if len(value) > 63:
        raise ConfigError(f"{flag} {quoted}: must be no more than 63 characters")
    if not pattern.fullmatch(value):
        raise ConfigError(f"{flag} {quoted}: {message}")


def check_readable_file(flag: str, path: Path) -> None:
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None


def check_ca_bundle(flag: str, path: Path) -> None:
    # Checked now: the files are otherwise first read when the hosting cluster's ConfigMap arrives.
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        raise ConfigError(f'{flag} {path}: not a PEM certificate bundle (no valid "BEGIN CERTIFICATE" block)') from None


def check_directory(flag: str, path: Path, *, must_exist: bool) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a directory")
    if must_exist and not path.is_dir():
        raise ConfigError(f"{flag} {path}: no such directory")


def join_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--flag -5s` as `--flag=-5s`: Go's pflag takes the next word as the value whatever it starts with,
    where argparse would call `-5s` a flag and say the value is missing."""
    takes_value = {opt for action in parser._actions if action.nargs is None for opt in action.option_strings}
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word in takes_value:
            value = next(words, None)
            joined.append(word if value is None else f"{word}={value}")
        else:
            joined.append(word)
    return joined


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
