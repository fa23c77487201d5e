"""The PSNR/SSIM and benchmark tables from a fake results tree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fake_results import write_results_tree

from n2v_repro.report.references import PAPER_PSNR
from n2v_repro.report.tables import make_tables, pair_runs

IDS = [f"im{i}" for i in range(6)]
FRAMEWORKS = ("torch", "jittor")
SIGMAS = (15, 25)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("results")
    write_results_tree(root, IDS, n_valid=2, frameworks=FRAMEWORKS, sigmas=SIGMAS)
    runs = [(f, s) for f in FRAMEWORKS for s in SIGMAS]
    out = {
        "psnr_ssim_csv": root / "tables" / "psnr_ssim.csv",
        "psnr_ssim_html": root / "tables" / "psnr_ssim.html",
        "benchmark_csv": root / "tables" / "benchmark.csv",
        "benchmark_html": root / "tables" / "benchmark.html",
    }
    make_tables(
        # Shuffled: the summaries name their own run, so their order must not matter.
        summaries=[root / f"results/eval/{f}/sigma{s}/summary.json" for f, s in runs[::-1]],
        histories={(f, s): root / f"results/models/{f}/sigma{s}/history.csv" for f, s in runs},
        monitors={(f, s): root / f"results/models/{f}/sigma{s}/monitor.csv" for f, s in runs},
        train_benchmarks={(f, s): root / f"benchmarks/train/{f}/sigma{s}.tsv" for f, s in runs},
        **out,
    )
    return {"root": root, **out}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _summary(root: Path, framework: str, sigma: int) -> dict:
    return json.loads((root / f"results/eval/{framework}/sigma{sigma}/summary.json").read_text())


def test_pair_runs_keys_files_by_position_and_checks_the_runs() -> None:
    # The paths say nothing about the run: the pairing comes from the list alone.
    assert pair_runs([["jittor", "50"], ("torch", 10)], ["a.csv", "b.csv"]) == {
        ("jittor", 50): Path("a.csv"),
        ("torch", 10): Path("b.csv"),
    }
    with pytest.raises(ValueError, match="2 runs"):
        pair_runs([("torch", 10), ("jittor", 10)], ["a.csv"])
    with pytest.raises(ValueError, match="unknown frameworks \\['tensorflow'\\]"):
        pair_runs([("tensorflow", 10)], ["a.csv"])
    with pytest.raises(ValueError, match="twice"):
        pair_runs([("torch", 10), ("torch", 10)], ["a.csv", "b.csv"])


def test_two_summaries_of_one_run_are_refused(tables, tmp_path: Path) -> None:
    summary = tables["root"] / "results/eval/torch/sigma15/summary.json"
    copy = tmp_path / "elsewhere.json"
    copy.write_text(summary.read_text())
    with pytest.raises(ValueError, match="both evaluate torch at sigma 15"):
        make_tables(
            summaries=[summary, copy],
            histories={},
            monitors={},
            train_benchmarks={},
            **{k: tmp_path / Path(v).name for k, v in tables.items() if k != "root"},
        )


def test_psnr_ssim_has_a_row_per_framework_sigma_test_set_and_weights(tables) -> None:
    rows = _rows(tables["psnr_ssim_csv"])
    keys = {(r["framework"], r["sigma"], r["test_set"], r["weights"]) for r in rows}
    assert len(rows) == len(keys) == 2 * 2 * 2 * 2
    assert rows[0]["test_set"] == "bsd68"  # the paper's protocol first
    for row in rows:
        stats = _summary(tables["root"], row["framework"], int(row["sigma"]))["test_sets"]
        expected = stats[row["test_set"]][row["weights"]]
        assert float(row["psnr_mean"]) == pytest.approx(expected["psnr_mean"])
        assert float(row["ssim_std"]) == pytest.approx(expected["ssim_std"])
        assert int(row["n"]) == (6 if row["test_set"] == "bsd68" else 4)
        assert float(row["noisy_psnr"]) == pytest.approx(
            stats[row["test_set"]]["noisy"]["psnr_mean"]
        )


def test_jittor_minus_torch_difference_is_on_jittor_rows(tables) -> None:
    rows = _rows(tables["psnr_ssim_csv"])
    cell = {(r["framework"], r["sigma"], r["test_set"], r["weights"]): r for r in rows}
    for (framework, sigma, test_set, weights), row in cell.items():
        if framework == "torch":
            assert row["jittor_minus_torch_psnr"] == ""
            continue
        torch_row = cell[("torch", sigma, test_set, weights)]
        difference = float(row["psnr_mean"]) - float(torch_row["psnr_mean"])
        assert float(row["jittor_minus_torch_psnr"]) == pytest.approx(difference)
        assert difference != 0.0  # the fake frameworks differ: the column is not constant


def test_paper_reference_only_where_the_paper_reports_one(tables) -> None:
    rows = _rows(tables["psnr_ssim_csv"])
    with_reference = [r for r in rows if r["paper_psnr"]]
    assert {(r["test_set"], r["sigma"]) for r in with_reference} == {("bsd68", "25")}
    assert all(float(r["paper_psnr"]) == PAPER_PSNR[("bsd68", 25)] for r in with_reference)
    page = tables["psnr_ssim_html"].read_text()
    assert "27.71" in page and "—" in page and "<table" in page and "<style>" in page
    assert page.count("<tr>") == 1 + len(rows)


def test_benchmark_row_per_framework_and_sigma(tables) -> None:
    rows = _rows(tables["benchmark_csv"])
    assert [(r["framework"], r["sigma"]) for r in rows] == [
        ("torch", "15"),
        ("torch", "25"),
        ("jittor", "15"),
        ("jittor", "25"),
    ]
    torch_row = rows[0]
    # fake history: epochs of 30, 12, 13, 14 s; the first is kept apart from the mean/std
    assert float(torch_row["first_epoch_s"]) == pytest.approx(30.0)
    assert float(torch_row["epoch_mean_s"]) == pytest.approx(13.0)
    assert float(torch_row["epoch_std_s"]) == pytest.approx((2 / 3) ** 0.5)
    assert float(torch_row["train_total_s"]) == pytest.approx(69.0)
    assert float(torch_row["train_patches_per_s"]) == pytest.approx(
        (256 / 12 + 256 / 13 + 256 / 14) / 3
    )
    assert float(torch_row["peak_rss_mib"]) == pytest.approx(990.0)
    assert float(torch_row["cpu_util_mean_percent"]) == pytest.approx(159.5)
    assert float(torch_row["job_wall_s"]) == pytest.approx(123.4)
    assert torch_row["peak_gpu_mem_mib"] == "" and torch_row["gpu_util_mean_percent"] == ""
    assert torch_row["device"] == "cpu" and float(torch_row["infer_images_per_s"]) > 0
    page = tables["benchmark_html"].read_text()
    assert "peak RSS (MiB)" in page and "—" in page
