"""A bad configuration stops `snakemake -n` before any job, with the offending key named.

Each case writes a config that differs from a valid one in one key; the valid one is checked
to pass first, so a failure can only come from that key. The Snakefile validates the merged
config in one place (common.smk: `PipelineConfig.from_mapping`, its ConfigError raised as a
WorkflowError), so every case's message is checked on the files Snakemake merges, in-process,
and one case runs through `snakemake -n` to show that message stopping the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pipeline_runner import (
    REPO_ROOT,
    TEST_CONFIG,
    merged,
    repo_data_config,
    run_snakemake,
    write_config,
)

from n2v_repro.config import ConfigError, load_config

# A target that needs only the repository's manifest files: the dry run builds the DAG of
# the data stage without touching the network.
DRY_RUN_TARGET = "resources/bsd68_split.csv"

# (case name, config change, words the error message must contain)
BAD_CONFIGS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown framework", {"frameworks": ["torch", "tensorflow"]}, ["frameworks[1]", "tensorflow"]),
    ("negative sigma", {"sigmas": [25, -5]}, ["sigmas[1]", "-5"]),
    ("empty sigma list", {"sigmas": []}, ["'sigmas'"]),
    ("empty eval weights", {"eval": {"weights": []}}, ["eval.weights"]),
    ("wrong type", {"train": {"epochs": "ten"}}, ["train.epochs", "ten"]),
    ("float where int", {"train": {"batch_size": 4.5}}, ["train.batch_size"]),
    (
        "unknown nested key",
        {"train": {"learning_rate": 0.001}},
        ["'train'", "'learning_rate' was unexpected"],
    ),
    ("unknown top-level key", {"sigma": 25}, ["'sigma' was unexpected"]),
    ("unknown method", {"train": {"method": "n2s"}}, ["train.method", "n2s"]),
    (
        "n2v2 without an N2V2 U-Net",
        {"recipe_book": {"port": {"method": "n2v2", "arch": "rednet10"}}},
        ["recipe_book.port.arch", "n2v2", "n2v_unet32"],
    ),
    (
        "n2c validated on BSD68",
        {"recipe_book": {"port": {"method": "n2c"}}},
        ["validation.scheme", "heldout_train"],
    ),
    ("patch size not multiple of 32", {"data": {"patch_size": 48}}, ["data.patch_size"]),
    ("no test image left", {"data": {"n_valid": 8, "bsd68_images": 8}}, ["data.n_valid"]),
    (
        "no test image left of all 68",
        {"data": {"n_valid": 68, "bsd68_images": None}},
        ["data.n_valid", "allowed 1-67"],
    ),
    ("patch larger than an image", {"data": {"patch_size": 512}}, ["data.patch_size", "320"]),
    ("more BSD68 images than exist", {"data": {"bsd68_images": 100}}, ["data.bsd68_images", "68"]),
    (
        "more training images than exist",
        {"data": {"train_images": 100000}},
        ["data.train_images", "400"],
    ),
    (
        "more validation tiles than exist",
        {"train": {"valid_tiles": 100000}},
        ["train.valid_tiles", "allowed 1-70", "recipe 'port'"],
    ),
    ("unknown recipe", {"recipes": ["paper", "portt"]}, ["recipes[1]", "portt", "recipe_book"]),
    (
        "bad recipe value",
        {"recipe_book": {"paper": {"validation": {"scheme": "bsd68"}}}},
        ["recipe_book.paper.validation.scheme", "heldout_train"],
    ),
    (
        "nothing left to train on",
        {"recipe_book": {"paper": {"validation": {"heldout_images": 8}}}},
        ["recipe_book.paper.validation.heldout_images", "allowed 1-7"],
    ),
    (
        "local mirror folder missing",
        {"data": {"mirrors": ["/no/such/BSDS500/images"]}},
        ["data.mirrors[0]", "/no/such/BSDS500/images", "is not a folder"],
    ),
    (
        "local mirror without <split>/ folders",
        {"data": {"mirrors": [str(REPO_ROOT / "docs")]}},
        ["data.mirrors[0]", "docs", "has no train/, val/ or test/ folder"],
    ),
    (
        "file:// mirror folder missing",
        {"data": {"mirrors": ["https://example.org/x", "file:///no/such/folder"]}},
        ["data.mirrors[1]", "file:///no/such/folder"],
    ),
    (
        "device per recipe",
        {"recipe_book": {"port": {"device": "cuda"}}},
        ["recipe_book.port.device", "train.device"],
    ),
]


def dry_run(workdir: Path, change: dict[str, Any]) -> tuple[int, str]:
    configfile = write_config(workdir / "config.yaml", merged(repo_data_config(), change))
    result = run_snakemake(workdir, configfile, [DRY_RUN_TARGET], ["-n"], timeout_s=120)
    return result.returncode, result.stdout


def test_valid_config_passes_dry_run(tmp_path: Path) -> None:
    returncode, output = dry_run(tmp_path, {})
    assert returncode == 0, output
    assert "split_bsd68" in output


@pytest.mark.parametrize(
    ("change", "expected_words"),
    [pytest.param(change, words, id=name) for name, change, words in BAD_CONFIGS],
)
def test_bad_config_names_the_key(
    tmp_path: Path, change: dict[str, Any], expected_words: list[str]
) -> None:
    """The config files as Snakemake merges them: config.yaml, test.yaml, then the user's."""
    users = write_config(tmp_path / "config.yaml", merged(repo_data_config(), change))
    with pytest.raises(ConfigError) as raised:
        load_config(REPO_ROOT / "config" / "config.yaml", TEST_CONFIG, users)
    for word in expected_words:
        assert word in str(raised.value), f"{word!r} not in the error message:\n{raised.value}"


def test_bad_config_fails_before_any_job(tmp_path: Path) -> None:
    # A cross-key check (the validation tiles the data set holds), not only the schema.
    [(change, expected_words)] = [(c, w) for n, c, w in BAD_CONFIGS if n.startswith("more valid")]
    returncode, output = dry_run(tmp_path, change)
    assert returncode != 0, output
    assert "invalid configuration" in output or "config key" in output, output
    for word in expected_words:
        assert word in output, f"{word!r} not in the error message:\n{output}"
    # Failing at parse time: no job was scheduled, and nothing but Snakemake's own
    # bookkeeping and our config exists in the working directory.
    assert "Job stats" not in output
    leftovers = {p.name for p in tmp_path.iterdir()} - {".snakemake", "config.yaml"}
    assert not leftovers, leftovers
