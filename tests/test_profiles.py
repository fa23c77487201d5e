"""The execution profiles: profiles/default (one machine) and profiles/slurm (a cluster).

Dry runs of the whole workflow with each profile, checking the resources every job would be
given. The SLURM executor plugin (requirements.txt) plans a dry run without sinfo/sbatch, so
this runs anywhere; the environment handed to Snakemake has no SLURM command on its PATH to
prove it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pipeline_runner import REPO_ROOT, merged, repo_data_config, run_snakemake, write_config

DEFAULT_PROFILE = REPO_ROOT / "profiles" / "default"
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"
GPU_RULES = {
    "train_torch",
    "train_jittor",
    "evaluate_torch",
    "evaluate_jittor",
    "parity_torch",
    "parity_jittor",
}


def load_profile(folder: Path) -> dict:
    with open(folder / "config.yaml") as handle:
        return yaml.safe_load(handle)


def job_resources(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) for every job block of a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        header = re.match(r"(?:local)?rule (\w+):", block)
        resources_line = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if header is None:
            continue
        resources = {}
        if resources_line is not None:
            for item in resources_line.group(1).split(", "):
                key, _, value = item.partition("=")
                resources[key.strip()] = value.strip()
        jobs.append((header.group(1), resources))
    return jobs


def two_framework_config(workdir: Path) -> Path:
    """The tiny test config with both frameworks, so every rule of the workflow is planned."""
    change = {"frameworks": ["torch", "jittor"]}
    return write_config(workdir / "config.yaml", merged(repo_data_config(), change))


@pytest.fixture
def no_slurm_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop PATH entries that hold SLURM commands (none on CI; a cluster's login node has them)."""
    kept = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    assert shutil.which("sbatch") is None and shutil.which("sinfo") is None


def workflow_rules(tmp_path: Path) -> set[str]:
    result = run_snakemake(tmp_path, two_framework_config(tmp_path), extra=["--list-rules"])
    assert result.returncode == 0, result.stdout
    return set(re.findall(r"^(\w+)$", result.stdout, re.MULTILINE))


def test_profiles_name_only_existing_rules(tmp_path: Path) -> None:
    """A renamed rule must not leave the cluster profile silently setting nothing."""
    rules = workflow_rules(tmp_path)
    slurm = load_profile(SLURM_PROFILE)
    for key in ("set-resources", "set-threads"):
        unknown = set(slurm.get(key, {})) - rules
        assert not unknown, f"profiles/slurm {key} names no rule of the workflow: {unknown}"
    assert rules >= GPU_RULES


def test_default_profile_dry_run(tmp_path: Path) -> None:
    # No --cores: the profile's `cores: all` must be what makes the run possible.
    result = run_snakemake(tmp_path, two_framework_config(tmp_path), extra=["-n"], cores=None)
    assert result.returncode == 0, result.stdout
    assert f"workflow specific profile {DEFAULT_PROFILE}" in result.stdout
    jobs = job_resources(result.stdout)
    rules = {rule for rule, _ in jobs}
    assert GPU_RULES | {"download_bsds500"} <= rules, rules


@pytest.mark.parametrize(
    "profile_args",
    [
        pytest.param(["--workflow-profile", str(SLURM_PROFILE)], id="workflow-profile"),
        pytest.param(["--profile", str(SLURM_PROFILE), "--workflow-profile", "none"], id="profile"),
    ],
)
def test_slurm_profile_dry_run(
    tmp_path: Path, no_slurm_path: None, profile_args: list[str]
) -> None:
    result = run_snakemake(
        tmp_path, two_framework_config(tmp_path), extra=["-n", *profile_args], cores=None
    )
    assert result.returncode == 0, result.stdout
    assert "profiles/default" not in result.stdout, "the one-machine profile leaked in"
    jobs = job_resources(result.stdout)
    trained = sorted(rule for rule, _ in jobs if rule.startswith("train_"))
    assert trained == ["train_jittor", "train_torch"], trained
    for rule, resources in jobs:
        if rule == "all":
            continue
        if rule in GPU_RULES:
            assert resources.get("gpu") == "1", (rule, resources)
            assert resources.get("slurm_partition") == "<gpu-partition>", (rule, resources)
        else:
            assert resources.get("gpu") in ("0", None), (rule, resources)
        assert "runtime" in resources, (rule, resources)


def test_slurm_profile_placeholders_are_documented() -> None:
    """The placeholders a user must replace are spelled the same in every place."""
    slurm = load_profile(SLURM_PROFILE)
    assert slurm["executor"] == "slurm"
    assert slurm["default-resources"]["slurm_partition"] == "<cpu-partition>"
    assert slurm["default-resources"]["slurm_account"] == "<account>"
    for rule in GPU_RULES:
        assert slurm["set-resources"][rule]["gpu"] == 1
    default = load_profile(DEFAULT_PROFILE)
    assert default["cores"] == "all"
    assert "gpu=1" in default["resources"]
