"""Every command and flag the README shows exists: its code blocks are checked against the real parsers."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from gateway_apiserver.certs import main as certs_main  # noqa: F401  (the module the README names must import)
from gateway_apiserver.config import build_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
# Fences pair up line by line, so a ```yaml block's closing fence never opens a shell block.
BLOCKS = [
    body
    for lang, body in re.findall(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```$", README, flags=re.S | re.M)
    if lang in ("", "sh", "bash", "console")
]


def commands() -> list[list[str]]:
    found = []
    for block in BLOCKS:
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                try:
                    found.append(shlex.split(line))
                except ValueError:
                    continue
    return found


def long_options(parser_options: list[str]) -> set[str]:
    return {o for o in parser_options if o.startswith("--")}


def test_gateway_commands_use_real_flags() -> None:
    from gateway_apiserver.client.kubeconfig_export import build_parser as kubeconfig_parser

    known = long_options([o for a in build_parser()._actions for o in a.option_strings])
    known_to_kubeconfig = long_options([o for a in kubeconfig_parser()._actions for o in a.option_strings])
    checked = 0
    for argv in commands():
        if argv[:2] == ["gateway-apiserver", "kubeconfig"]:  # the subcommand has its own flags
            assert {a.split("=", 1)[0] for a in argv if a.startswith("--")} <= known_to_kubeconfig, argv
            continue
        if argv[:1] == ["gateway-apiserver"] or argv[:3] == ["python", "-m", "gateway_apiserver"] or argv[:2] == ["./dev", "run"]:
            for arg in argv:
                if arg.startswith("--"):
                    assert arg.split("=", 1)[0] in known, f"README uses unknown flag {arg} in: {' '.join(argv)}"
                    checked += 1
    assert checked >= 4


def test_flag_table_lists_only_real_flags() -> None:
    known = long_options([o for a in build_parser()._actions for o in a.option_strings])
    table = README[README.index("## Configuration reference") :]
    table = table[: table.index("\n## ", 5)]
    mentioned = set(re.findall(r"`(--[a-z0-9_-]+)", table))  # klog's flags have underscores
    assert mentioned, "the configuration reference is empty"
    assert mentioned <= known, mentioned - known
    documented_everywhere = known - {"--help"} - mentioned
    assert not documented_everywhere, f"flags missing from the configuration reference: {documented_everywhere}"


def test_dev_subcommands_exist() -> None:
    dev = (REPO / "dev").read_text()
    for argv in commands():
        if argv[:1] == ["./dev"]:
            assert f"  {argv[1]})" in dev, f"./dev has no {argv[1]} command"


def test_install_commands_parse() -> None:
    from gateway_apiserver.install import build_parser as install_parser

    installs = [argv[2:] for argv in commands() if argv[:2] == ["./dev", "install"]]
    assert len(installs) >= 4
    for argv in installs:
        install_parser().parse_args(argv)  # exits 2 on an unknown flag or value


def test_certs_command_flags_exist() -> None:
    import argparse

    from gateway_apiserver import certs

    source = Path(certs.__file__).read_text()
    for argv in commands():
        if argv[:3] == ["python", "-m", "gateway_apiserver.certs"]:
            for arg in argv[3:]:
                if arg.startswith("--"):
                    assert f'"{arg.split("=", 1)[0]}"' in source, arg
    assert argparse  # the generator's parser is argparse-based
