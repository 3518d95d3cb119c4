"""Mutation spot-check of a few modules with mutmut, against the fast unit tests that cover them.

mutmut reads its settings from pyproject.toml or setup.cfg and writes a `mutants/` tree next
to them, so it runs in a scratch copy of the repository (the tracked and untracked, not
ignored, files) with a generated setup.cfg: the working tree is never touched and several
spot-checks can run side by side.

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python benchmarks/mutmut_spot_check.py \\
        --mutate gateway_apiserver/proxy/paths.py gateway_apiserver/proxy/headers.py \\
        --tests tests/proxy/test_paths.py tests/proxy/test_headers.py

Prints each surviving mutant's diff, then the counts (killed, survived, other).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup_cfg(mutate: list[str], tests: list[str]) -> str:
    def lines(values: list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    return (
        "[mutmut]\nsource_paths = gateway_apiserver\n"
        f"only_mutate ={lines(mutate)}\n"
        f"pytest_add_cli_args_test_selection ={lines(tests)}\n"
        f"pytest_add_cli_args ={lines(['-p', 'no:cacheprovider', '-q'])}\n"
    )


def _copy_repository(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def main() -> int:
    """Run mutmut on the given modules with the given tests; exit 1 if any mutant survived."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutate", nargs="+", required=True, help="modules to mutate (paths from the repository root)")
    parser.add_argument("--tests", nargs="+", required=True, help="test files that should kill the mutants")
    parser.add_argument("--max-children", type=int, default=2, help="parallel test runs (default: 2)")
    args = parser.parse_args()
    mutmut = Path(sys.executable).with_name("mutmut")
    with tempfile.TemporaryDirectory(prefix="mutmut-spot-check-") as scratch:
        work = Path(scratch)
        _copy_repository(work)
        if (work / "setup.cfg").exists():
            parser.error("the repository has a setup.cfg: merge the [mutmut] section by hand")
        (work / "setup.cfg").write_text(_setup_cfg(args.mutate, args.tests))
        subprocess.run([str(mutmut), "run", "--max-children", str(args.max_children)], cwd=work, check=True, capture_output=True)
        results = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=work, check=True, capture_output=True, text=True)
        outcomes: Counter[str] = Counter()
        for line in results.stdout.splitlines():
            name, _, outcome = line.strip().rpartition(": ")
            if not name:
                continue
            outcomes[outcome] += 1
            if outcome == "survived":
                diff = subprocess.run([str(mutmut), "show", name], cwd=work, check=True, capture_output=True, text=True)
                changed = [d for d in diff.stdout.splitlines() if d[:1] in "+-" and d[:3] not in ("+++", "---")]
                print(f"survived: {name}\n    " + "\n    ".join(changed))
    other = sum(outcomes.values()) - outcomes["killed"] - outcomes["survived"]
    print(f"mutants: {sum(outcomes.values())}  killed: {outcomes['killed']}  survived: {outcomes['survived']}  other: {other}")
    return 1 if outcomes["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
