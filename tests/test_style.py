"""The checks a contributor runs before a pull request: lint, formatting, Snakemake lint, DAG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_clean() -> None:
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_clean() -> None:
    result = run(str(BIN / "snakemake"), "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def _defined_rules() -> set[str]:
    result = run(str(BIN / "snakemake"), "--list-rules")
    assert result.returncode == 0, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if line.isidentifier()}


# Rules that only the methods with their own targets (N2N, N2C) need.
PAPER_TABLE_RULES = {"add_noise2", "patchify_with_targets"}
# Rules that only a run with reference implementations (config key `references`) plans.
REFERENCE_RULES = {
    "reference_env",
    "train_reference",
    "predict_reference",
    "score_reference",
    "reference_settings",
    "plot_reference_curves",
}


def _planned_jobs(*args: str) -> dict[str, int]:
    """Jobs per rule of `snakemake -n` (with `args`), from its job-stats table."""
    result = run(str(BIN / "snakemake"), "-n", "--quiet", "rules", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_default_config_dag_has_every_framework_and_sigma() -> None:
    """`snakemake -n` on the full reproduction plans every rule, and one training and one
    evaluation job per recipe x framework x sigma x seed of config/config.yaml."""
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    # `to_gray` is a target that only gathers both gray sets; nothing depends on it. The
    # methods with their own targets (N2N, N2C) are not in the default config: the
    # paper-table config plans them.
    rules = _defined_rules() - {"to_gray"}
    counts = _planned_jobs()
    assert set(counts) - {"total"} == rules - PAPER_TABLE_RULES - REFERENCE_RULES, counts
    table = _planned_jobs("--configfile", "config/paper-table-cpu.yaml")
    assert set(table) >= PAPER_TABLE_RULES, table
    references = _planned_jobs("--configfile", "config/references-cpu.yaml")
    assert set(references) >= REFERENCE_RULES, references
    assert references["train_reference"] == references["score_reference"] == 2, references
    assert table["train_torch"] == table["train_jittor"] == 4, table
    sigmas, recipes = len(config["sigmas"]), len(config["recipes"])
    seeds = len(config["seeds"] or [config["seed"]])
    for framework in config["frameworks"]:
        for stage in ("train", "evaluate"):
            assert counts[f"{stage}_{framework}"] == recipes * sigmas * seeds, counts
    assert counts["plot_qualitative"] == recipes * sigmas, counts


def test_the_exact_bn_variant_plans_runs_only_for_archs_with_batch_norm() -> None:
    """With `jittor-exactbn` among the frameworks, the port's U-Net (no batch norm: the
    variant is the stock model) trains once per Jittor, the cpu recipe's twice; parity runs
    both Jittors; the claims page is planned."""
    counts = _planned_jobs(
        "--config", "frameworks=[torch,jittor,jittor-exactbn]", "recipes=[port,cpu]", "sigmas=[25]"
    )
    assert counts["train_torch"] == 2 and counts["train_jittor"] == 3, counts
    assert counts["evaluate_jittor"] == 3 and counts["parity_jittor"] == 2 * 2, counts
    assert counts["port_claims"] == 1, counts
