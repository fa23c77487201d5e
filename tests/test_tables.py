"""The PSNR/SSIM, summary and benchmark tables from a fake results tree of two recipes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from fake_results import (
    eval_benchmark,
    run_dir,
    train_benchmark,
    write_benchmark,
    write_bm3d,
    write_results_tree,
)
from scipy import stats

from n2v_repro import paths
from n2v_repro.io.formats import read_history, read_per_image, write_history
from n2v_repro.report.references import PAPER_PSNR, REFERENCE_CODE_PSNR
from n2v_repro.report.tables import (
    baseline_benchmark_rows,
    benchmark_rows,
    make_methods_table,
    make_tables,
    make_time_breakdown,
    pair_runs,
    paired_test,
    read_baseline_summaries,
    time_breakdown_rows,
)

IDS = [f"im{i}" for i in range(6)]
N_VALID = 2
FRAMEWORKS = ("torch", "jittor")
SIGMAS = (15, 25)
SEEDS = (1, 2, 3)
RECIPES = {"paper": "heldout_train", "port": "bsd68_split"}


def _settings(validation: str, **changes) -> dict:
    """A recipe_settings entry as common.smk makes it: the reference recipe, plus changes."""
    settings = {
        "arch": "n2v_unet",
        "epochs": 200,
        "steps_per_epoch": 400,
        "batch_size": 128,
        "augment": True,
        "masking": {"kind": "uniform_withCP", "percentage": 0.198, "radius": 2},
        "optimizer": {"lr": 4e-4, "betas": [0.9, 0.999], "eps": 1e-7, "semantics": "keras"},
        "schedule": {"kind": "plateau", "step_epochs": 50, "factor": 0.5, "patience": 10},
        "valid_tiles": None,
        "device": "auto",
        "train_set": "train400",
        "validation": {"scheme": validation, "heldout_images": 4},
        "init": "glorot_uniform",
        "data": {"train_images": None, "bsd68_images": None, "patch_size": 64},
    }
    settings.update(changes)
    return {"validation": validation, "settings": settings}


def _make(root: Path, runs: list, recipe_settings: dict, folder: Path) -> dict[str, Path]:
    out = {
        "psnr_ssim_csv": folder / "psnr_ssim.csv",
        "psnr_ssim_html": folder / "psnr_ssim.html",
        "benchmark_csv": folder / "benchmark.csv",
        "benchmark_html": folder / "benchmark.html",
        "summary_html": folder / "summary.html",
    }
    make_tables(
        # Shuffled: the summaries name their own run, so their order must not matter.
        summaries=[run_dir(root, *run) / "eval" / "summary.json" for run in runs[::-1]],
        per_image={run: run_dir(root, *run) / "eval" / "per_image.csv" for run in runs},
        histories={run: run_dir(root, *run) / "model" / "history.csv" for run in runs},
        monitors={run: run_dir(root, *run) / "model" / "monitor.csv" for run in runs},
        train_benchmarks={run: train_benchmark(root, *run) for run in runs},
        recipe_settings=recipe_settings,
        **out,
    )
    return out


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("results")
    runs = write_results_tree(root, IDS, N_VALID, FRAMEWORKS, SIGMAS, recipes=RECIPES, seeds=SEEDS)
    recipe_settings = {
        "paper": _settings("heldout_train", epochs=2),
        "port": _settings("bsd68_split", arch="n2n_unet"),
    }
    return {"root": root, "runs": runs, **_make(root, runs, recipe_settings, root / "tables")}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _summary(root: Path, run: tuple) -> dict:
    return json.loads((run_dir(root, *run) / "eval" / "summary.json").read_text())


def test_pair_runs_keys_files_by_position_and_checks_the_runs() -> None:
    # The paths say nothing about the run: the pairing comes from the list alone.
    assert pair_runs([["port", "jittor", "50", "2"], ("paper", "torch", 10, 1)], ["a", "b"]) == {
        ("port", "jittor", 50, 2): Path("a"),
        ("paper", "torch", 10, 1): Path("b"),
    }
    with pytest.raises(ValueError, match="2 runs"):
        pair_runs([("p", "torch", 10, 1), ("p", "jittor", 10, 1)], ["a.csv"])
    with pytest.raises(ValueError, match="unknown frameworks \\['tensorflow'\\]"):
        pair_runs([("p", "tensorflow", 10, 1)], ["a.csv"])
    with pytest.raises(ValueError, match="twice"):
        pair_runs([("p", "torch", 10, 1), ("p", "torch", 10, 1)], ["a.csv", "b.csv"])
    with pytest.raises(ValueError, match="recipe, framework, sigma, seed"):
        pair_runs([("torch", 10)], ["a.csv"])


def test_two_summaries_of_one_run_are_refused(tables, tmp_path: Path) -> None:
    summary = run_dir(tables["root"], "port", "torch", 15, 1) / "eval" / "summary.json"
    copy = tmp_path / "elsewhere.json"
    copy.write_text(summary.read_text())
    with pytest.raises(ValueError, match="both evaluate recipe port, torch at sigma 15, seed 1"):
        make_tables(
            summaries=[summary, copy],
            per_image={},
            histories={},
            monitors={},
            train_benchmarks={},
            recipe_settings={},
            psnr_ssim_csv=tmp_path / "a.csv",
            psnr_ssim_html=tmp_path / "a.html",
            benchmark_csv=tmp_path / "b.csv",
        )


def test_rows_average_over_seeds_and_never_score_weights_on_images_that_chose_them(tables):
    rows = _rows(tables["psnr_ssim_csv"])
    keys = [(r["recipe"], r["test_set"], r["sigma"], r["weights"], r["framework"]) for r in rows]
    assert len(keys) == len(set(keys))
    # paper (held-out validation): both weights on both test sets; port (BSD68 split): its
    # best weights were chosen on the valid half, so all-68 rows show last weights only.
    expected = {
        (recipe, test_set, str(sigma), weights, framework)
        for recipe in RECIPES
        for test_set in ("bsd68", "bsd68_test")
        for sigma in SIGMAS
        for weights in ("last", "best")
        for framework in FRAMEWORKS
        if not (recipe == "port" and test_set == "bsd68" and weights == "best")
    }
    assert set(keys) == expected
    assert [r["recipe"] for r in rows] == sorted(
        (r["recipe"] for r in rows), key=list(RECIPES).index
    )
    for row in rows:
        per_seed = [
            _summary(tables["root"], (row["recipe"], row["framework"], int(row["sigma"]), seed))
            for seed in SEEDS
        ]
        values = [s["test_sets"][row["test_set"]][row["weights"]]["psnr_mean"] for s in per_seed]
        assert float(row["psnr_mean"]) == pytest.approx(np.mean(values))
        assert float(row["psnr_sd_seeds"]) == pytest.approx(np.std(values, ddof=1))
        assert float(row["psnr_sd_seeds"]) > 0  # the fake seeds differ
        assert int(row["seeds"]) == len(SEEDS)
        assert int(row["n"]) == (len(IDS) if row["test_set"] == "bsd68" else len(IDS) - N_VALID)
        in_test = N_VALID if (row["recipe"], row["test_set"]) == ("port", "bsd68") else 0
        assert int(row["valid_in_test"]) == in_test
        assert row["validation"] == RECIPES[row["recipe"]]


def test_framework_difference_and_paired_test_on_jittor_rows(tables) -> None:
    rows = _rows(tables["psnr_ssim_csv"])
    cell = {(r["recipe"], r["test_set"], r["sigma"], r["weights"], r["framework"]): r for r in rows}
    for (recipe, test_set, sigma, weights, framework), row in cell.items():
        if framework == "torch":
            assert row["jittor_minus_torch_psnr"] == row["p_value"] == row["significant"] == ""
            continue
        torch_row = cell[(recipe, test_set, sigma, weights, "torch")]
        difference = float(row["psnr_mean"]) - float(torch_row["psnr_mean"])
        assert float(row["jittor_minus_torch_psnr"]) == pytest.approx(difference)
        # The test, recomputed from the per-image files: pairs are (seed, image).
        subsets = {"bsd68": ("valid", "test"), "bsd68_test": ("test",)}[test_set]
        diffs = []
        for seed in SEEDS:
            scores = {}
            for fw in FRAMEWORKS:
                path = run_dir(tables["root"], recipe, fw, int(sigma), seed) / "eval"
                scores[fw] = {
                    r["id"]: r["psnr"]
                    for r in read_per_image(path / "per_image.csv")
                    if r["weights"] == weights and r["subset"] in subsets
                }
            diffs += [scores["jittor"][i] - scores["torch"][i] for i in sorted(scores["torch"])]
        assert int(row["pairs"]) == len(diffs) == len(SEEDS) * int(row["n"])
        assert float(row["p_value"]) == pytest.approx(stats.wilcoxon(diffs).pvalue)
        assert row["significant"] == ("yes" if float(row["p_value"]) < 0.05 else "no")
    # The fake jittor is consistently better on every image: the test must say so.
    assert cell[("paper", "bsd68", "25", "last", "jittor")]["significant"] == "yes"


def test_paired_test_edge_cases() -> None:
    assert paired_test([]) == (0, None)
    assert paired_test([0.3]) == (1, None)
    assert paired_test([0.0] * 8) == (8, 1.0)  # identical frameworks: nothing to detect
    rng = np.random.default_rng(0)
    pairs, p = paired_test(list(0.5 + 0.1 * rng.standard_normal(12)))
    assert pairs == 12 and p < 0.01
    pairs, p = paired_test(list(rng.standard_normal(12)))
    assert p > 0.05


def test_paper_numbers_only_on_the_paper_recipe(tables) -> None:
    rows = _rows(tables["psnr_ssim_csv"])
    with_paper = {(r["recipe"], r["test_set"], r["sigma"]) for r in rows if r["paper_psnr"]}
    assert with_paper == {("paper", "bsd68", "25")}  # never on port's bsd68 sigma-25 rows
    for row in rows:
        if row["paper_psnr"]:
            assert float(row["paper_psnr"]) == PAPER_PSNR[("bsd68", 25)]
            expected = REFERENCE_CODE_PSNR[("bsd68", 25, row["weights"])]
            assert float(row["reference_code_psnr"]) == expected
        else:
            assert row["reference_code_psnr"] == ""
    page = tables["psnr_ssim_html"].read_text()
    assert "27.71" in page and "27.81" in page and "27.77" in page
    assert "BSD68_reproducibility" in page and "Krull" in page  # sources in the caption
    assert page.count("<tr>") == 1 + len(rows)
    # The run's paper recipe has 2 epochs: the caption says so, beside the reference's 200.
    assert "epochs 2 (reference 200)" in page
    assert "arch" not in page.split("differs from the reference code")[1].split(".")[0]


def test_no_deviation_note_when_the_paper_recipe_is_the_reference(tables, tmp_path: Path):
    runs = [run for run in tables["runs"] if run[0] == "paper"]
    out = _make(tables["root"], runs, {"paper": _settings("heldout_train")}, tmp_path)
    assert "differs from the reference" not in out["psnr_ssim_html"].read_text()


def test_summary_page_is_compact_and_shows_each_recipes_clean_test_set(tables) -> None:
    page = tables["summary_html"].read_text()
    assert "n2v-compact" in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")
    assert rows == len(RECIPES) * len(SIGMAS) * 2  # recipe x sigma x weights
    # paper validated on held-out training images: all images; port: the test half only.
    assert f"all ({len(IDS)})" in page and f"test half ({len(IDS) - N_VALID})" in page
    assert "PyTorch" in page and "Jittor" in page and " ± " in page
    header = page.split("<thead>")[1].split("</thead>")[0]
    assert header.count("<th>") == 7


def test_benchmark_row_per_run(tables) -> None:
    rows = _rows(tables["benchmark_csv"])
    assert [(r["recipe"], r["framework"], r["sigma"], r["seed"]) for r in rows] == [
        (recipe, fw, str(sigma), str(seed)) for recipe, fw, sigma, seed in tables["runs"]
    ]
    torch_row = rows[0]
    # fake history: epochs of 30, 12, 13, 14 s; the first is kept apart from the mean/std
    assert float(torch_row["first_epoch_s"]) == pytest.approx(30.0)
    assert float(torch_row["epoch_mean_s"]) == pytest.approx(13.0)
    assert float(torch_row["epoch_std_s"]) == pytest.approx((2 / 3) ** 0.5)
    assert float(torch_row["train_total_s"]) == pytest.approx(69.0)
    # 256 patches an epoch: all patches over all training time, and apart from the first epoch
    assert float(torch_row["train_patches_per_s"]) == pytest.approx(4 * 256 / 69.0)
    assert float(torch_row["steady_patches_per_s"]) == pytest.approx(3 * 256 / 39.0)
    # fake history: 0.4 s validation and 0.1 s checkpoint every epoch
    assert float(torch_row["valid_total_s"]) == pytest.approx(1.6)
    assert float(torch_row["checkpoint_total_s"]) == pytest.approx(0.4)
    assert float(torch_row["valid_percent_of_train"]) == pytest.approx(
        100 * np.mean([0.4 / 30, 0.4 / 12, 0.4 / 13, 0.4 / 14])
    )
    assert float(torch_row["peak_rss_mib"]) == pytest.approx(990.0)
    assert float(torch_row["cpu_util_mean_percent"]) == pytest.approx(159.5)
    assert float(torch_row["job_wall_s"]) == pytest.approx(123.4)
    assert torch_row["peak_gpu_mem_mib"] == "" and torch_row["gpu_util_mean_percent"] == ""
    assert torch_row["device"] == "cpu" and float(torch_row["infer_images_per_s"]) > 0
    # Both frameworks ran stock: the table says so rather than leaving it to be assumed.
    assert torch_row["speed_levers"] == "stock"
    page = tables["benchmark_html"].read_text()
    assert "peak RSS (MiB)" in page and "—" in page
    assert "training, all epochs (patches/s)" in page and "ratio of sums" in page


def _history(path: Path, epochs: list[tuple[float, float]]) -> Path:
    """history.csv of epochs given as (patches, training seconds)."""
    rows, wall = [], 0.0
    for epoch, (patches, seconds) in enumerate(epochs, start=1):
        wall += seconds + 0.5 + 0.25
        rows.append({"epoch": epoch, "lr": 1e-3, "train_loss": 1.0, "valid_loss": 1.0,
                     "valid_psnr": 25.0, "valid_ssim": 0.7, "epoch_time_s": seconds,
                     "patches_per_s": patches / seconds, "valid_time_s": 0.5,
                     "checkpoint_time_s": 0.25, "wall_time_s": wall})  # fmt: skip
    write_history(path, rows)
    return path


def test_throughput_is_total_patches_over_total_time_not_a_mean_of_rates(tmp_path: Path):
    # One fast and one long slow epoch after the first (another job took the machine):
    # the mean of the rates (550/s) would hide that the run trained 2000 patches in 11 s.
    run = ("port", "torch", 25, 1)
    history = _history(tmp_path / "history.csv", [(1000, 10.0), (1000, 1.0), (1000, 10.0)])
    [row] = benchmark_rows({run: history}, {}, {}, {})
    assert row["train_patches_per_s"] == pytest.approx(3000 / 21.0)
    assert row["steady_patches_per_s"] == pytest.approx(2000 / 11.0)
    assert row["steady_patches_per_s"] != pytest.approx((1000 + 100) / 2)
    assert row["valid_total_s"] == pytest.approx(1.5)
    assert row["checkpoint_total_s"] == pytest.approx(0.75)
    assert row["valid_percent_of_train"] == pytest.approx(100 * (0.05 + 0.5 + 0.05) / 3)
    # One epoch has no steady state to report.
    single = _history(tmp_path / "one.csv", [(1000, 10.0)])
    [row] = benchmark_rows({run: single}, {}, {}, {})
    assert row["train_patches_per_s"] == pytest.approx(100.0)
    assert row["steady_patches_per_s"] is None


def _data_benchmarks(root: Path, seconds: list[float]) -> list[Path]:
    return [
        write_benchmark(root / "benchmarks" / "data" / f"job{i}.tsv", s)
        for i, s in enumerate(seconds)
    ]


def test_time_breakdown_rows_match_the_files_and_shares_sum_to_100(tables) -> None:
    root, runs = tables["root"], tables["runs"]
    histories = {run: run_dir(root, *run) / "model" / "history.csv" for run in runs}
    data = _data_benchmarks(root, [3.0, 40.5, 12.25])
    evals = [eval_benchmark(root, *run) for run in runs]
    out = root / "time"
    rows = make_time_breakdown(
        data_benchmarks=data,
        histories=histories,
        train_benchmarks={run: train_benchmark(root, *run) for run in runs},
        eval_benchmarks=evals,
        csv_path=out / "time_breakdown.csv",
        html_path=out / "time_breakdown.html",
    )
    by_stage = {row["stage"]: row for row in _rows(out / "time_breakdown.csv")}
    assert list(by_stage) == [
        "data preparation",
        "training steps",
        "per-epoch validation",
        "checkpoints",
        "rest of the training jobs",
        "evaluation",
        "total",
    ]
    assert [r["stage"] for r in rows] == list(by_stage)

    def seconds(stage: str) -> float:
        return float(by_stage[stage]["seconds"])

    def summed(column: str) -> float:
        return sum(float(np.sum(read_history(path)[column])) for path in histories.values())

    assert seconds("data preparation") == pytest.approx(3.0 + 40.5 + 12.25)
    assert by_stage["data preparation"]["jobs"] == "3"
    assert seconds("training steps") == pytest.approx(summed("epoch_time_s"))
    assert seconds("per-epoch validation") == pytest.approx(summed("valid_time_s"))
    assert seconds("checkpoints") == pytest.approx(summed("checkpoint_time_s"))
    # fake train jobs: 123.4 s (torch) and 1.2 x that (jittor), one per run
    walls = sum(123.4 * (1.0 if run[1] == "torch" else 1.2) for run in runs)
    timed = summed("epoch_time_s") + summed("valid_time_s") + summed("checkpoint_time_s")
    assert seconds("rest of the training jobs") == pytest.approx(walls - timed)
    assert seconds("evaluation") == pytest.approx(sum(20.0 + run[2] / 5 for run in runs))
    assert by_stage["evaluation"]["jobs"] == str(len(runs))
    parts = [row for stage, row in by_stage.items() if stage != "total"]
    assert seconds("total") == pytest.approx(sum(float(r["seconds"]) for r in parts))
    assert sum(float(r["share_percent"]) for r in parts) == pytest.approx(100.0)
    assert float(by_stage["total"]["share_percent"]) == pytest.approx(100.0)
    assert float(by_stage["evaluation"]["share_percent"]) == pytest.approx(
        100 * seconds("evaluation") / seconds("total")
    )
    page = (out / "time_breakdown.html").read_text()
    assert "Where the time went" in page and "rest of the training jobs" in page


def test_time_breakdown_never_counts_a_negative_rest(tmp_path: Path) -> None:
    # A resumed run: its history holds epochs of an earlier job the benchmark did not time.
    run = ("port", "torch", 25, 1)
    history = _history(tmp_path / "history.csv", [(1000, 10.0), (1000, 10.0)])
    bench = write_benchmark(tmp_path / "train.tsv", 12.0)
    rows = time_breakdown_rows([], {run: history}, {run: bench}, [])
    by_stage = {row["stage"]: row for row in rows}
    assert by_stage["rest of the training jobs"]["seconds"] == 0.0
    assert by_stage["total"]["seconds"] == pytest.approx(20.0 + 1.0 + 0.5)
    with pytest.raises(ValueError, match="no training benchmark"):
        time_breakdown_rows([], {run: history}, {}, [])


# --- the methods table (BM3D and every recipe by its method) ----------------------------------

# Recipe -> (validation scheme, method), in a run order that is not the table's: the table
# places each recipe by its method; two N2V recipes get their names in the label.
METHOD_RECIPES = {
    "void": ("heldout_train", "n2v"),
    "pairs": ("heldout_train", "n2n"),
    "void2": ("heldout_train", "n2v2"),
    "sup": ("heldout_train", "n2c"),
    "void_b": ("bsd68_split", "n2v"),
}
METHOD_SIGMAS = (15, 25)


@pytest.fixture(scope="module")
def methods(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("methods")
    recipes = {name: scheme for name, (scheme, _) in METHOD_RECIPES.items()}
    runs = write_results_tree(
        root, IDS, N_VALID, FRAMEWORKS, METHOD_SIGMAS, recipes=recipes, seeds=(1, 2)
    )
    bm3d = {sigma: write_bm3d(root, sigma) for sigma in METHOD_SIGMAS}
    out = {"csv_path": root / "methods.csv", "html_path": root / "methods.html"}
    rows = make_methods_table(
        summaries=[run_dir(root, *run) / "eval" / "summary.json" for run in runs],
        per_image={run: run_dir(root, *run) / "eval" / "per_image.csv" for run in runs},
        recipe_methods={name: method for name, (_, method) in METHOD_RECIPES.items()},
        baseline_summaries=[
            root / paths.BM3D_EVAL_DIR.format(sigma=s) / "summary.json" for s in METHOD_SIGMAS
        ],
        **out,
    )
    return {"root": root, "runs": runs, "rows": rows, "bm3d": bm3d, **out}


def _seed_mean(root: Path, recipe: str, framework: str, sigma: int, test_set: str, weights: str):
    values = [
        _summary(root, (recipe, framework, sigma, seed))["test_sets"][test_set][weights][
            "psnr_mean"
        ]
        for seed in (1, 2)
    ]
    return float(np.mean(values))


def test_methods_table_rows_in_method_order_per_sigma(methods) -> None:
    rows = _rows(methods["csv_path"])
    for sigma in METHOD_SIGMAS:
        mine = [r for r in rows if r["sigma"] == str(sigma)]
        assert [(r["label"], r["test_set"], r["weights"]) for r in mine] == [
            ("BM3D", "bsd68", ""),
            ("BM3D", "bsd68_test", ""),
            ("N2C", "bsd68", "best"),
            ("N2C", "bsd68", "last"),
            ("N2N", "bsd68", "best"),
            ("N2N", "bsd68", "last"),
            ("N2V (void)", "bsd68", "best"),
            ("N2V (void)", "bsd68", "last"),
            # Validated on the BSD68 split: its own test half, both weights allowed there.
            ("N2V (void_b)", "bsd68_test", "best"),
            ("N2V (void_b)", "bsd68_test", "last"),
            ("N2V2", "bsd68", "best"),
            ("N2V2", "bsd68", "last"),
        ]
    assert [r["sigma"] for r in rows] == sorted(r["sigma"] for r in rows)


def test_methods_table_paper_numbers_only_at_sigma_25_on_all_of_bsd68(methods) -> None:
    rows = _rows(methods["csv_path"])
    papers = {(r["sigma"], r["label"], r["test_set"]): r["paper_psnr"] for r in rows}
    assert papers[("25", "BM3D", "bsd68")] == "28.59"
    assert papers[("25", "N2C", "bsd68")] == "29.06"
    assert papers[("25", "N2N", "bsd68")] == "28.86"
    assert papers[("25", "N2V (void)", "bsd68")] == "27.71"
    # No N2V2 in the paper; the paper scored all 68 images, not the split's test half.
    for key in [("25", "N2V2", "bsd68"), ("25", "N2V (void_b)", "bsd68_test"),
                ("25", "BM3D", "bsd68_test")]:  # fmt: skip
        assert papers[key] == ""
    assert all(value == "" for (sigma, _, _), value in papers.items() if sigma == "15")


def test_methods_table_numbers_are_the_runs_and_bm3ds(methods) -> None:
    root, rows = methods["root"], methods["rows"]
    cell = {(r["sigma"], r["label"], r["test_set"], r["weights"]): r for r in rows}
    sup = cell[(25, "N2C", "bsd68", "best")]
    torch_mean = _seed_mean(root, "sup", "torch", 25, "bsd68", "best")
    jittor_mean = _seed_mean(root, "sup", "jittor", 25, "bsd68", "best")
    assert sup["torch_psnr"] == pytest.approx(torch_mean)
    assert sup["jittor_psnr"] == pytest.approx(jittor_mean)
    assert sup["jittor_minus_torch_psnr"] == pytest.approx(jittor_mean - torch_mean)
    # The paired test over 6 images x 2 seeds, as the PSNR/SSIM table does it.
    assert sup["pairs"] == len(IDS) * 2 and 0 < sup["p_value"] <= 1
    void_b = cell[(15, "N2V (void_b)", "bsd68_test", "last")]
    assert void_b["n"] == len(IDS) - N_VALID
    assert void_b["torch_psnr"] == pytest.approx(
        _seed_mean(root, "void_b", "torch", 15, "bsd68_test", "last")
    )
    for test_set in ("bsd68", "bsd68_test"):
        bm3d = cell[(25, "BM3D", test_set, None)]
        expected = methods["bm3d"][25]["test_sets"][test_set]["bm3d"]
        assert bm3d["no_framework_psnr"] == pytest.approx(expected["psnr_mean"])
        assert bm3d["n"] == expected["n"] and bm3d["torch_psnr"] is None
    assert all(r["no_framework_psnr"] is None for r in rows if r["method"] != "bm3d")


def test_methods_html_has_a_block_per_sigma_and_cites_the_paper(methods) -> None:
    page = methods["html_path"].read_text()
    assert page.count("<table") == len(METHOD_SIGMAS)
    assert "<caption>σ = 15</caption>" in page and "<caption>σ = 25</caption>" in page
    assert page.index("σ = 15") < page.index("σ = 25")
    assert "Krull et al. 2019, Table 1" in page
    for header in ("PyTorch", "Jittor", "jittor − torch", "no framework", "paper"):
        assert f"<th>{header}</th>" in page
    # mean ± sd over the two seeds in the framework cells
    assert re.search(r"<td class=\"num\">\d+\.\d\d ± \d\.\d\d</td>", page)


def test_methods_table_without_bm3d_has_only_the_recipes(methods, tmp_path: Path) -> None:
    root, runs = methods["root"], methods["runs"]
    rows = make_methods_table(
        summaries=[run_dir(root, *run) / "eval" / "summary.json" for run in runs],
        per_image={run: run_dir(root, *run) / "eval" / "per_image.csv" for run in runs},
        recipe_methods={"void": "n2v"},
        csv_path=tmp_path / "m.csv",
        html_path=tmp_path / "m.html",
    )
    assert {r["label"] for r in rows} == {"N2V"}
    assert {r["recipe"] for r in rows} == {"void"}


def test_benchmark_table_gets_bm3d_time_per_image(methods) -> None:
    root = methods["root"]
    baselines = read_baseline_summaries(
        [root / paths.BM3D_EVAL_DIR.format(sigma=s) / "summary.json" for s in METHOD_SIGMAS]
    )
    benchmarks = {s: root / paths.BM3D_BENCHMARK.format(sigma=s) for s in METHOD_SIGMAS}
    rows = baseline_benchmark_rows(baselines, benchmarks)
    assert [(r["recipe"], r["framework"], r["sigma"]) for r in rows] == [
        ("bm3d", "none", 15),
        ("bm3d", "none", 25),
    ]
    inference = methods["bm3d"][25]["inference"]
    assert rows[1]["infer_s_per_image"] == pytest.approx(inference["seconds"] / len(IDS))
    assert rows[1]["job_wall_s"] == pytest.approx(42.0)
