"""The reference implementations (juglab n2v, CAREamics) on the pipeline's data.

The slow test builds both environments the way the pipeline does (kept in
.cache/reference-envs, so a second run reuses them), trains each for a few steps on the tiny
test data, and checks that the pipeline's metric code scored their predictions and that the
tables carry their rows, settings and paired tests.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_bsds import make_fake_bsds
from http_mirror import serve_directory, unreachable_url
from pipeline_runner import REPO_ROOT, run_snakemake, write_config

from n2v_repro.config import ConfigError, PipelineConfig, plain
from n2v_repro.evaluation.metrics import psnr
from n2v_repro.io.formats import arrays_under, load_npz, read_gray_png
from n2v_repro.references import env as reference_env
from n2v_repro.references.registry import REFERENCE_TITLES, REFERENCES
from n2v_repro.references.settings import comparison_rows, our_settings
from n2v_repro.report.tables import paired_interval

REFERENCE_CONFIG = REPO_ROOT / "config" / "test-references.yaml"
SHARED_ENVS = REPO_ROOT / ".cache" / "reference-envs"
RUN = "results/paper/references/{reference}/sigma25/seed1"


def test_references_need_an_n2v_recipe_on_train400() -> None:
    with pytest.raises(ConfigError, match=r"'train.train_set'.*allowed with references: train400"):
        PipelineConfig.from_mapping({"recipes": ["port"], "references": ["careamics"]})
    with pytest.raises(ConfigError, match=r"config key 'references'.*no recipe"):
        PipelineConfig.from_mapping(
            {"recipes": ["cpu"], "references": ["juglab_n2v"],
             "recipe_book": {"cpu": {"method": "n2c"}}}
        )  # fmt: skip
    config = PipelineConfig.from_mapping({"recipes": ["cpu"], "references": ["juglab_n2v"]})
    assert config.references == ("juglab_n2v",)


def test_settings_rows_mark_each_difference() -> None:
    config = PipelineConfig.from_mapping({"recipes": ["cpu"]})
    ours = our_settings(plain(config.run_recipes[0].train), 64)
    assert (
        ours["steps"] == 24 * 256 and ours["features"] == 32 and ours["masking_window"] == "5 x 5"
    )
    theirs = {**ours, "schedule": "ReduceLROnPlateau", "adam_eps": 1e-8}
    rows = {row["setting"]: row for row in comparison_rows(ours, theirs)}
    assert rows["learning-rate schedule"]["differs"] == "differs"
    assert rows["Adam epsilon"]["theirs"] == "1e-08" and rows["Adam epsilon"]["differs"]
    assert rows["optimiser steps in all"]["differs"] == ""


def test_paired_interval_averages_seeds_per_image_first() -> None:
    by_image = {"a": [0.1, 0.3], "b": [0.2], "c": [0.4, 0.2]}
    interval = paired_interval(by_image)
    means = np.array([0.2, 0.2, 0.3])
    assert interval["mean"] == pytest.approx(means.mean())
    assert interval["low"] < means.mean() < interval["high"]
    assert paired_interval({"a": [0.5]})["low"] is None


def test_a_broken_environment_is_one_line_naming_it_and_the_rebuild(tmp_path: Path) -> None:
    with pytest.raises(reference_env.ReferenceEnvError) as raised:
        reference_env.check_env("juglab_n2v", tmp_path / "juglab_n2v")
    message = str(raised.value)
    assert "\n" not in message and "juglab_n2v" in message and "does not exist" in message
    assert f"rm -rf {tmp_path / 'juglab_n2v'}" in message
    # A venv without the library: the import that failed is named.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "c" / "venv")],
                   check=True)  # fmt: skip
    with pytest.raises(reference_env.ReferenceEnvError, match="No module named"):
        reference_env.check_env("careamics", tmp_path / "c")


def test_an_unreachable_package_index_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "envs").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "envs" / "ref-juglab-n2v.yaml").write_text(
        "dependencies:\n  - python=3.11\n  - pip:\n      - six==1.16.0\n"
    )
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", unreachable_url() + "/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv(reference_env.PYTHON_VARIABLE, sys.executable)
    if REFERENCES["juglab_n2v"].python != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"needs Python {REFERENCES['juglab_n2v'].python} to make the venv")
    with pytest.raises(reference_env.ReferenceEnvError) as raised:
        reference_env.build_env("juglab_n2v", tmp_path / "env", repo, tmp_path / "build.log")
    message = str(raised.value)
    assert "\n" not in message and "could not reach the package index" in message, message
    assert "envs/ref-juglab-n2v.yaml" in message and "rm -rf" in message
    assert not (tmp_path / "env" / reference_env.BUILT).exists()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny references run: both environments built, trained, predicted, scored."""
    if sys.version_info[:2] != (3, 11) and not os.environ.get(reference_env.PYTHON_VARIABLE):
        pytest.skip("the references' environments need Python 3.11")
    fake = make_fake_bsds(tmp_path_factory.mktemp("fake"), n_train=6, n_test=2, n_val=10, n_bsd68=8)
    workdir = tmp_path_factory.mktemp("references")
    with serve_directory(fake.images) as mirror:
        config = {
            **yaml.safe_load(REFERENCE_CONFIG.read_text()),
            "data": fake.data_config([mirror]),
            "reference_envs": str(SHARED_ENVS),
        }
        configfile = write_config(workdir / "config.yaml", config)
        result = run_snakemake(workdir, configfile, timeout_s=2400)
    assert result.returncode == 0, result.stdout[-6000:]
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCES))
def test_each_reference_trains_the_budget_and_is_scored_by_our_metric(
    reference_run: Path, name: str
) -> None:
    run = reference_run / RUN.format(reference=name)
    summary = json.loads((run / "model" / "train_summary.json").read_text())
    ours, theirs = summary["settings"]["ours"], summary["settings"]["theirs"]
    # config/test.yaml's paper recipe: 2 epochs of 4 steps, batch 4.
    assert summary["steps"] == ours["steps"] == theirs["steps"] == 8
    assert theirs["features"] == ours["features"] and theirs["lr"] == ours["lr"]
    assert summary["versions"][REFERENCES[name].library] == REFERENCES[name].version
    history = list(csv.DictReader((run / "model" / "history.csv").open()))
    # An epoch of CAREamics' own patching may hold fewer batches than the recipe's steps per
    # epoch (here 2 of 4): it validates more often, within the same budget of steps.
    assert len(history) == theirs["epochs"] >= ours["epochs"]
    assert all(float(r["patches_per_s"]) > 0 for r in history)

    arrays = load_npz(run / "eval" / "predictions.npz")
    rows = list(csv.DictReader((run / "eval" / "per_image.csv").open()))
    clean = {
        p.stem: read_gray_png(p) for p in (reference_run / "resources/gray/bsd68").glob("*.png")
    }
    for weights in REFERENCES[name].weights:
        predictions = arrays_under(arrays, weights)
        scored = [r for r in rows if r["weights"] == weights]
        assert len(scored) == len(clean) == len(predictions)
        for row in scored:
            pred = predictions[row["id"]]
            assert np.isfinite(pred).all()
            assert float(row["psnr"]) == pytest.approx(psnr(clean[row["id"]], pred), abs=1e-5)
        noisy = {r["id"]: float(r["psnr"]) for r in rows if r["weights"] == "noisy"}
        assert any(abs(float(r["psnr"]) - noisy[r["id"]]) > 1e-3 for r in scored), (
            "the reference's predictions score like the noisy input: it returned its input"
        )


@pytest.mark.slow
def test_the_tables_carry_the_references_beside_ours(reference_run: Path) -> None:
    methods = list(csv.DictReader((reference_run / "results/tables/methods.csv").open()))
    by_label = {(r["label"], r["weights"]): r for r in methods}
    for name, title in REFERENCE_TITLES.items():
        row = by_label[(f"N2V, {title}", "last")]
        assert row["reference"] == name and row["reference_psnr"]
        assert row["torch_minus_reference_psnr"] and row["torch_reference_pairs"] == "4"
    assert ("N2V, CAREamics 0.3.5", "best") not in by_label
    assert ("N2V, juglab n2v 0.3.3 (TensorFlow)", "best") in by_label
    benchmark = list(csv.DictReader((reference_run / "results/tables/benchmark.csv").open()))
    names = {r["framework"] for r in benchmark if r["train_patches_per_s"]}
    assert {"torch", *REFERENCES} <= names
    settings = (reference_run / "results/tables/paper/reference_careamics_settings.csv").read_text()
    assert "differs" in settings and "CAREamics" in settings
    assert (reference_run / "results/figures/paper/reference_valid_loss.png").stat().st_size > 0


@pytest.mark.slow
def test_a_broken_environment_fails_the_job_in_one_line(
    reference_run: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "envs"
    (broken / "juglab_n2v").mkdir(parents=True)
    (broken / "juglab_n2v" / reference_env.BUILT).write_text("{}\n")
    configfile = reference_run / "config.yaml"
    config = yaml.safe_load(configfile.read_text())
    config["reference_envs"] = str(broken)
    broken_config = write_config(tmp_path / "broken.yaml", config)
    target = RUN.format(reference="juglab_n2v") + "/model/train_summary.json"
    result = run_snakemake(
        reference_run, broken_config, [target], extra=["--forcerun=train_reference"]
    )
    assert result.returncode != 0
    assert "reference environment juglab_n2v at" in result.stdout
    assert "rm -rf" in result.stdout and "Traceback" not in result.stdout, result.stdout[-3000:]
