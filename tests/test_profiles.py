"""The execution profiles: profiles/default (one machine), profiles/slurm and slurm-cpu (clusters).

Dry runs of the whole workflow with each profile, checking the resources every job would be
given. The SLURM executor plugin (requirements.txt) plans a dry run without submitting or
querying jobs, so this runs anywhere: the SLURM commands Snakemake finds first on its PATH are
stand-ins that fail and record the call, to prove it. tests/test_slurm.py runs jobs for real.
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
SLURM_CPU_PROFILE = REPO_ROOT / "profiles" / "slurm-cpu"
SLURM_PROFILES = (SLURM_PROFILE, SLURM_CPU_PROFILE)
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


# SLURM commands that submit, run or watch jobs: a dry run must call none of them.
JOB_COMMANDS = ("sbatch", "srun", "squeue", "sacct", "scancel", "sinfo")
# The plugin reads the cluster's configuration when it loads (`scontrol show config`, for
# MinJobAge) and copes with its failure; the stand-in fails it too.
SLURM_COMMANDS = (*JOB_COMMANDS, "scontrol", "sacctmgr", "sshare")


@pytest.fixture
def slurm_stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH entry, first, whose SLURM commands fail and append their name to the returned file.

    A cluster's login node, or a machine with slurm-wlm (CI installs it for test_slurm.py), has
    the real ones.
    """
    folder = tmp_path / "slurm-stand-ins"
    folder.mkdir()
    calls = tmp_path / "slurm-calls.txt"
    for name in SLURM_COMMANDS:
        stand_in = folder / name
        stand_in.write_text(f'#!/bin/sh\necho {name} >> "{calls}"\nexit 1\n')
        stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("sbatch") == str(folder / "sbatch")
    return calls


def workflow_rules(tmp_path: Path) -> set[str]:
    result = run_snakemake(tmp_path, two_framework_config(tmp_path), extra=["--list-rules"])
    assert result.returncode == 0, result.stdout
    return set(re.findall(r"^(\w+)$", result.stdout, re.MULTILINE))


def test_profiles_name_only_existing_rules(tmp_path: Path) -> None:
    """A renamed rule must not leave the cluster profile silently setting nothing."""
    rules = workflow_rules(tmp_path)
    for profile in SLURM_PROFILES:
        slurm = load_profile(profile)
        for key in ("set-resources", "set-threads"):
            unknown = set(slurm.get(key, {})) - rules
            assert not unknown, f"{profile.name} {key} names no rule of the workflow: {unknown}"
        # Every framework job gets its threads from the profile (the rules' own count needs a
        # total of cores, which the SLURM executor does not have).
        assert set(slurm["set-threads"]) == GPU_RULES, profile
    assert rules >= GPU_RULES


def test_default_profile_dry_run(tmp_path: Path) -> None:
    # No --cores: the profile's `cores: all` must be what makes the run possible.
    result = run_snakemake(tmp_path, two_framework_config(tmp_path), extra=["-n"], cores=None)
    assert result.returncode == 0, result.stdout
    assert f"workflow specific profile {DEFAULT_PROFILE}" in result.stdout
    jobs = job_resources(result.stdout)
    rules = {rule for rule, _ in jobs}
    assert GPU_RULES | {"download_bsds500"} <= rules, rules
    # One GPU job at a time on the machine: the framework rules ask gpu=1 on a CUDA host.
    assert "gpu=1" in load_profile(DEFAULT_PROFILE)["resources"]


@pytest.mark.parametrize(
    ("profile", "profile_args"),
    [
        pytest.param(SLURM_PROFILE, ["--workflow-profile"], id="workflow-profile"),
        pytest.param(SLURM_PROFILE, ["--workflow-profile", "none", "--profile"], id="profile"),
        pytest.param(SLURM_CPU_PROFILE, ["--workflow-profile"], id="cpu"),
    ],
)
def test_slurm_profile_dry_run(
    tmp_path: Path, slurm_stand_ins: Path, profile: Path, profile_args: list[str]
) -> None:
    # No --cores, as documented: under the SLURM executor it would cap every job's threads.
    result = run_snakemake(
        tmp_path,
        two_framework_config(tmp_path),
        extra=["-n", *profile_args, str(profile)],
        cores=None,
    )
    assert result.returncode == 0, result.stdout
    called = slurm_stand_ins.read_text().split() if slurm_stand_ins.exists() else []
    assert not set(called) & set(JOB_COMMANDS), f"the dry run called {called}"
    assert "profiles/default" not in result.stdout, "the one-machine profile leaked in"
    jobs = job_resources(result.stdout)
    trained = sorted(rule for rule, _ in jobs if rule.startswith("train_"))
    # config/test.yaml: 2 recipes x 2 seeds x 1 sigma per framework.
    assert trained == ["train_jittor"] * 4 + ["train_torch"] * 4, trained
    gpu_profile = profile == SLURM_PROFILE
    for rule, resources in jobs:
        if rule == "all":
            continue
        if rule in GPU_RULES and gpu_profile:
            assert resources.get("gpu") == "1", (rule, resources)
            assert resources.get("slurm_partition") == "<gpu-partition>", (rule, resources)
        else:
            assert resources.get("gpu") in ("0", None), (rule, resources)
            assert resources.get("slurm_partition") == "<cpu-partition>", (rule, resources)
        assert "runtime" in resources, (rule, resources)
        assert "slurm_account" not in resources, (rule, resources)


@pytest.mark.parametrize("profile", SLURM_PROFILES, ids=lambda p: p.name)
def test_slurm_profile_edits_are_partition_and_account(profile: Path) -> None:
    """A user edits the partitions, and the account where needed: nothing else is left open.

    The account stays commented out (sbatch then charges the user's default account): a
    placeholder left in would stop the plugin ("The given account <account> appears to be
    invalid"). Job states come from squeue, which needs no accounting database (sacct without
    slurmdbd fails, and the plugin would wait for ever).
    """
    text = (profile / "config.yaml").read_text()
    slurm = load_profile(profile)
    assert slurm["executor"] == "slurm"
    assert slurm["slurm-status-command"] == "squeue"
    assert "cores" not in slurm, "--cores would cap every job's threads under SLURM"
    assert "slurm_account" not in slurm["default-resources"]
    assert '# slurm_account: "<account>"' in text
    placeholders = set(re.findall(r"<[a-z-]+>", text))
    expected = {"<cpu-partition>", "<account>"} | (
        {"<gpu-partition>"} if profile == SLURM_PROFILE else set()
    )
    assert placeholders == expected, placeholders
