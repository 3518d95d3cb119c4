"""`--workers auto`: one worker per core the container's CPU quota allows, read from the cgroup files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway_apiserver.config import ConfigError, parse_config
from gateway_apiserver.config import options as options_module
from gateway_apiserver.config.cpu_quota import available_cores, cores_from_quota, parse_cpu_max

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("quota", "period", "affinity", "cores"),
    [
        (200_000, 100_000, 64, 2),  # limits.cpu: 2 on a 64-core node
        (150_000, 100_000, 64, 1),  # 1.5 CPUs: one worker, a second would be throttled
        (50_000, 100_000, 64, 1),  # less than a core still runs one worker
        (800_000, 100_000, 4, 4),  # a quota above the CPUs it may run on: the CPUs
        (None, None, 8, 8),  # no limit: the affinity mask
        (-1, 100_000, 8, 8),  # cgroup v1 writes -1 for no limit
    ],
)
def test_cores_follow_the_quota_rounded_down_within_the_affinity_mask(
    quota: int | None, period: int | None, affinity: int, cores: int
) -> None:
    assert cores_from_quota(quota, period, affinity) == cores


def test_cgroup_v2_cpu_max_is_read_as_quota_and_period() -> None:
    assert parse_cpu_max("200000 100000\n") == (200_000, 100_000)
    assert parse_cpu_max("max 100000\n") == (None, None)
    assert parse_cpu_max("garbage") == (None, None)


def test_a_cgroup_v2_container_limited_to_one_cpu_gets_one_worker(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cores(tmp_path) == 1


def test_a_cgroup_v1_container_reads_the_cfs_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(tmp_path) == 1


def test_without_cgroup_files_every_cpu_of_the_affinity_mask_counts(tmp_path: Path) -> None:
    assert available_cores(tmp_path) == AFFINITY


def test_workers_auto_resolves_to_the_available_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options_module, "available_cores", lambda: 3)
    assert parse_config(["--workers", "auto"]).workers == 3
    monkeypatch.setattr(options_module, "available_cores", lambda: 200)
    assert parse_config(["--workers", "auto"]).workers == 64


def test_workers_must_be_a_count_or_auto() -> None:
    with pytest.raises(ConfigError, match=r"^--workers two: must be a number from 1 to 64, or auto$"):
        parse_config(["--workers", "two"])
