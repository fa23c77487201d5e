"""The result tables: accuracy (PSNR/SSIM) over seeds with the framework test, and cost.

Rows are grouped by recipe. Each evaluation summary names its own run (recipe, framework,
sigma, seed); the training files and per-image scores do not, so they come in as explicit
run -> path mappings (`pair_runs`). Over the seeds of a recipe x framework x sigma the table
gives the mean and the (sample) standard deviation of the per-seed mean PSNR; the jittor rows
carry the framework difference and a Wilcoxon signed-rank test of the per-image PSNR
differences, paired by image and seed.

A row never scores weights on images that chose them: evaluation leaves the best weights of
a `bsd68_split` recipe out of the all-68 test set (`evaluation.predict.CHOSEN_ON_TEST_IMAGES`)
and the `valid_in_test` column counts the test images that were validation images. The
paper's numbers appear only on the `paper` recipe's rows (`references`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from n2v_repro.backends.base import speed_setting
from n2v_repro.backends.registry import FRAMEWORK_TITLES, FRAMEWORKS
from n2v_repro.evaluation.bm3d_baseline import BM3D, BM3D_WEIGHTS
from n2v_repro.evaluation.predict import TEST_SETS
from n2v_repro.io.atomic import atomic_open
from n2v_repro.io.formats import (
    read_benchmark,
    read_eval_summary,
    read_history,
    read_monitor,
    read_per_image,
)
from n2v_repro.references.registry import REFERENCE_NAMES, REFERENCE_TITLES
from n2v_repro.report.html_pages import Column, fixed, render_table, render_table_blocks
from n2v_repro.report.references import (
    METHOD_PAPER_CITATION,
    METHOD_PAPER_PSNR,
    PAPER_CITATION,
    PAPER_RECIPE,
    REFERENCE_CODE_CITATION,
    deviations,
    method_paper_psnr,
    paper_psnr,
    reference_code_psnr,
)
from n2v_repro.training.throughput import patch_rates

TEST_SET_ORDER = ("bsd68", "bsd68_test")
WEIGHTS_ORDER = ("last", "best")
SIGNIFICANCE = 0.05
# The test set a recipe's headline numbers come from: never one that chose its weights.
REPORTED_TEST_SET = {"heldout_train": "bsd68", "bsd68_split": "bsd68_test"}

Run = tuple[str, str, int, int]  # recipe, framework, sigma, seed

TEST_SET_NOTE = (
    "bsd68 = all BSD68 images in use (the paper's protocol); bsd68_test = the split's test "
    "subset (the original port's protocol). PSNR/SSIM use data range 255 on the unclipped "
    "prediction; each seed's score is the mean over images, and the table gives the mean and "
    "the sample standard deviation of those over seeds (— with one seed)."
)
SELECTION_NOTE = (
    "best = the weights of the lowest validation loss; last = the final epoch's. A bsd68_split "
    "recipe chose its best weights (and, with a plateau schedule, its learning-rate cuts) on "
    "the BSD68 validation half: its bsd68 rows show last weights only, and 'validation images "
    "in test set' counts the test images that were validation images. A heldout_train recipe "
    "validated on held-out training images and read no BSD68 image before the test."
)
FRAMEWORK_NOTE = (
    "jittor − torch: difference of the mean PSNR over seeds. The test: Wilcoxon signed-rank, "
    "two-sided, on the per-image PSNR differences jittor − torch paired by image and seed "
    f"(both frameworks start from the same weights and see the same batches per seed); "
    f"'significant' at {SIGNIFICANCE}. Pairs of one image under different seeds are not "
    "independent, so read p as a guide, not an exact error rate. A reference implementation's "
    "rows (juglab n2v, CAREamics: trained on the same data and scored by the same code) carry "
    "the same test, reference − torch, in the same columns."
)

PSNR_SSIM_COLUMNS = [
    Column("recipe", "recipe"),
    Column("validation", "validation"),
    Column("test_set", "test set"),
    Column("sigma", "σ"),
    Column("weights", "weights"),
    Column("framework", "framework"),
    Column("seeds", "seeds", numeric=True),
    Column("n", "images", numeric=True),
    Column("valid_in_test", "validation images in test set", numeric=True),
    Column("psnr_mean", "PSNR mean (dB)", fixed(2), True),
    Column("psnr_sd_seeds", "PSNR sd over seeds (dB)", fixed(3), True),
    Column("ssim_mean", "SSIM mean", fixed(4), True),
    Column("ssim_sd_seeds", "SSIM sd over seeds", fixed(4), True),
    Column("noisy_psnr", "noisy PSNR (dB)", fixed(2), True),
    Column("jittor_minus_torch_psnr", "row − torch PSNR (dB)", fixed(3, signed=True), True),
    Column("pairs", "test pairs", numeric=True),
    Column("p_value", "p (Wilcoxon)", fixed(3), True),
    Column("significant", "significant at 0.05"),
    Column("paper_psnr", "paper N2V PSNR (dB)", fixed(2), True),
    Column("reference_code_psnr", "reference code PSNR (dB)", fixed(2), True),
]

SUMMARY_NOTE = (
    "PSNR (dB) on the BSD68 images that did not choose the weights: all = every image (the "
    "recipe validated on held-out training images), test half = the split's test images (it "
    "validated on the other half). Mean ± sd over seeds. paper: Noise2Void's published 27.71 dB, "
    "on the paper recipe only. Recipes, the framework test and the sources: results menu, "
    "1. Summary."
)

BENCHMARK_COLUMNS = [
    Column("recipe", "recipe"),
    Column("framework", "framework"),
    Column("sigma", "σ"),
    Column("seed", "seed", numeric=True),
    Column("device", "device"),
    Column("precision", "precision"),
    Column("speed_levers", "speed levers"),
    Column("epochs", "epochs", numeric=True),
    Column("first_epoch_s", "first epoch (s)", fixed(1), True),
    Column("epoch_mean_s", "epoch mean (s)", fixed(2), True),
    Column("epoch_std_s", "epoch std (s)", fixed(2), True),
    Column("train_patches_per_s", "training, all epochs (patches/s)", fixed(1), True),
    Column("steady_patches_per_s", "training, epochs 2+ (patches/s)", fixed(1), True),
    Column("train_total_s", "training total (s)", fixed(0), True),
    Column("valid_total_s", "validation total (s)", fixed(1), True),
    Column("valid_percent_of_train", "validation / epoch training (%)", fixed(1), True),
    Column("checkpoint_total_s", "checkpoints total (s)", fixed(1), True),
    Column("job_wall_s", "train job wall (s)", fixed(0), True),
    Column("peak_rss_mib", "peak RSS (MiB)", fixed(0), True),
    Column("peak_gpu_mem_mib", "peak GPU memory (MiB)", fixed(0), True),
    Column("peak_framework_mem_mib", "framework peak (MiB)", fixed(0), True),
    Column("cpu_util_mean_percent", "mean CPU (%)", fixed(0), True),
    Column("gpu_util_mean_percent", "mean GPU (%)", fixed(0), True),
    Column("infer_images_per_s", "inference (images/s)", fixed(2), True),
    Column("infer_megapixels_per_s", "inference (MP/s)", fixed(3), True),
    Column("infer_s_per_image", "inference (s/image)", fixed(3), True),
]

BENCHMARK_NOTE = (
    "One row per training run, from its history.csv. Epoch mean/std leave out the first epoch "
    "when there are more (it holds one-off costs such as Jittor's kernel compilation); first "
    "epoch shows it. Training, all epochs = every patch trained on / the summed training time "
    "of all epochs (a ratio of sums, so an epoch slowed by other load weighs by its length); "
    "training, epochs 2+ = the same over the epochs after the first (— with one epoch). "
    "Training time is the synchronised optimiser steps only; training total is its sum. "
    "Validation total = the per-epoch validations (on train.valid_epoch_tiles tiles; the final "
    "validation of the whole set is not in it); validation / epoch training = each epoch's "
    "validation time as % of that epoch's training time, mean over epochs; checkpoints total "
    "= the per-epoch checkpoint writes. Train job wall = the whole job (Snakemake benchmark: "
    "start-up and compilation, every epoch, final validation, writing outputs). Peak RSS and "
    "CPU utilisation come from the training monitor (CPU % is per core, so 200% = two cores "
    "busy); GPU columns are empty on CPU. Inference: whole BSD68 images, batch 1, after a "
    "warm-up. Precision is the arithmetic in effect (train.precision on a CUDA GPU; the CPU "
    "always computes float32). Speed levers: stock = each framework's own ops and defaults, "
    "with no tuning switch and no project-written kernel; PyTorch and Jittor are compared so. "
    "Inference (s/image) = 1 / images per s. A bm3d row (framework none, no training) is the "
    "BM3D baseline at one σ: its time per image over every BSD68 image in use, one CPU core, "
    "float64, and its job's wall time."
)


def pair_runs(runs: Iterable[Sequence[Any]], paths: Sequence[str | Path]) -> dict[Run, Path]:
    """Pair the i-th (recipe, framework, sigma, seed) of `runs` with the i-th path."""
    keys = [_run_key(run) for run in runs]
    if len(keys) != len(paths):
        raise ValueError(f"{len(keys)} runs {keys} for {len(paths)} files {list(paths)}")
    known = (*FRAMEWORKS, *REFERENCE_NAMES)
    unknown = sorted({key[1] for key in keys} - set(known))
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; expected some of {known}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"a (recipe, framework, sigma, seed) is listed twice in {keys}")
    return {key: Path(path) for key, path in zip(keys, paths, strict=True)}


def _run_key(run: Sequence[Any]) -> Run:
    if len(run) != 4:
        raise ValueError(f"a run is (recipe, framework, sigma, seed), got {run!r}")
    recipe, framework, sigma, seed = run
    return (str(recipe), str(framework), int(sigma), int(seed))


def _order(value: str, order: Sequence[str]) -> int:
    return order.index(value) if value in order else len(order)


def _nanstat(values: np.ndarray | None, how: str) -> float | None:
    if values is None or values.size == 0 or np.all(np.isnan(values)):
        return None
    return float({"mean": np.nanmean, "max": np.nanmax, "std": np.nanstd}[how](values))


def _mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


# --- the framework test ---------------------------------------------------------------------


def paired_test(differences: Sequence[float]) -> tuple[int, float | None]:
    """(pairs, two-sided Wilcoxon signed-rank p) of paired differences; p None below 2 pairs.

    All-zero differences (identical predictions) give p = 1: there is nothing to detect.
    """
    diffs = np.asarray(differences, dtype=np.float64)
    if diffs.size < 2:
        return int(diffs.size), None
    if not np.any(diffs):
        return int(diffs.size), 1.0
    return int(diffs.size), float(scipy_stats.wilcoxon(diffs).pvalue)


def per_image_differences(
    per_image: Mapping[Run, Sequence[Mapping[str, Any]]],
    recipe: str,
    sigma: int,
    subsets: Sequence[str],
    weights: str,
    first: str = "torch",
    second: str = "jittor",
) -> list[float]:
    """PSNR(second) − PSNR(first) per (seed, image) of the given subsets, both present."""
    differences = []
    seeds = sorted({key[3] for key in per_image if key[0] == recipe and key[2] == sigma})
    for seed in seeds:
        rows = {
            framework: {
                r["id"]: r["psnr"]
                for r in per_image.get((recipe, framework, sigma, seed), [])
                if r["weights"] == weights and r["subset"] in subsets
            }
            for framework in (first, second)
        }
        for image_id in sorted(set(rows[first]) & set(rows[second])):
            differences.append(rows[second][image_id] - rows[first][image_id])
    return differences


# --- PSNR/SSIM ------------------------------------------------------------------------------


def psnr_ssim_rows(
    summaries: Mapping[Run, Mapping[str, Any]],
    per_image: Mapping[Run, Sequence[Mapping[str, Any]]] | None = None,
    recipe_order: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One row per recipe x test set x sigma x weights x framework, over its seeds."""
    cells: dict[tuple[str, str, int, str, str], list[Mapping[str, Any]]] = {}
    noisy: dict[tuple[str, str, int, str], list[float]] = {}
    info: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for (recipe, framework, sigma, _seed), summary in summaries.items():
        validation = summary["validation"]
        for test_set, by_weights in summary["test_sets"].items():
            info[(recipe, framework, sigma, test_set)] = {
                "validation": validation["scheme"],
                "valid_in_test": validation["images_in_test_set"].get(test_set),
            }
            if "noisy" in by_weights:
                noisy.setdefault((recipe, framework, sigma, test_set), []).append(
                    by_weights["noisy"]["psnr_mean"]
                )
            for weights, stats in by_weights.items():
                if weights != "noisy":
                    key = (recipe, test_set, sigma, weights, framework)
                    cells.setdefault(key, []).append(stats)
    rows = []
    for (recipe, test_set, sigma, weights, framework), per_seed in cells.items():
        psnr_mean, psnr_sd = _mean_sd([s["psnr_mean"] for s in per_seed])
        ssim_mean, ssim_sd = _mean_sd([s["ssim_mean"] for s in per_seed])
        noisy_values = noisy.get((recipe, framework, sigma, test_set))
        rows.append(
            {
                "recipe": recipe,
                "test_set": test_set,
                "sigma": sigma,
                "weights": weights,
                "framework": framework,
                **info[(recipe, framework, sigma, test_set)],
                "seeds": len(per_seed),
                "n": per_seed[0]["n"],
                "psnr_mean": psnr_mean,
                "psnr_sd_seeds": psnr_sd,
                "ssim_mean": ssim_mean,
                "ssim_sd_seeds": ssim_sd,
                "noisy_psnr": float(np.mean(noisy_values)) if noisy_values else None,
                "jittor_minus_torch_psnr": None,
                "pairs": None,
                "p_value": None,
                "significant": None,
                "paper_psnr": paper_psnr(recipe, test_set, sigma),
                "reference_code_psnr": reference_code_psnr(recipe, test_set, sigma, weights),
            }
        )
    by_cell = {
        (r["recipe"], r["test_set"], r["sigma"], r["weights"], r["framework"]): r for r in rows
    }
    for row in rows:
        torch_row = by_cell.get(
            (row["recipe"], row["test_set"], row["sigma"], row["weights"], "torch")
        )
        if row["framework"] == "torch" or torch_row is None:
            continue
        # Each Jittor (stock, exact BN) against PyTorch, on the same images and seeds.
        row["jittor_minus_torch_psnr"] = row["psnr_mean"] - torch_row["psnr_mean"]
        if per_image is not None:
            differences = per_image_differences(
                per_image, row["recipe"], row["sigma"], TEST_SETS[row["test_set"]],
                row["weights"], second=row["framework"],
            )  # fmt: skip
            row["pairs"], row["p_value"] = paired_test(differences)
            if row["p_value"] is not None:
                row["significant"] = "yes" if row["p_value"] < SIGNIFICANCE else "no"
    recipes = list(recipe_order) + sorted({r["recipe"] for r in rows} - set(recipe_order))
    rows.sort(
        key=lambda r: (
            recipes.index(r["recipe"]),
            _order(r["test_set"], TEST_SET_ORDER),
            r["sigma"],
            _order(r["weights"], WEIGHTS_ORDER),
            _order(r["framework"], FRAMEWORKS),
        )
    )
    return rows


def summary_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Build the landing page's compact table: per recipe x sigma x weights, each framework's PSNR.

    Only each recipe's reported test set (`REPORTED_TEST_SET`): all of BSD68 for a recipe that
    validated on held-out training images, the test half for one that validated on BSD68.
    """
    compact: dict[tuple[str, int, str], dict[str, Any]] = {}
    for row in rows:
        if row["test_set"] != REPORTED_TEST_SET.get(row["validation"]):
            continue
        key = (row["recipe"], row["sigma"], row["weights"])
        entry = compact.setdefault(
            key,
            {
                "recipe": row["recipe"],
                "test": ("all" if row["test_set"] == "bsd68" else "test half") + f" ({row['n']})",
                "sigma": row["sigma"],
                "weights": row["weights"],
                "paper": row["paper_psnr"],
            },
        )
        sd = row["psnr_sd_seeds"]
        entry[row["framework"]] = f"{row['psnr_mean']:.2f}" + ("" if sd is None else f" ± {sd:.2f}")
    return list(compact.values())


def summary_columns(frameworks: Sequence[str]) -> list[Column]:
    return [
        Column("recipe", "recipe"),
        Column("test", "test images"),
        Column("sigma", "σ"),
        Column("weights", "weights"),
        *[Column(f, FRAMEWORK_TITLES.get(f, f), numeric=True) for f in frameworks],
        Column("paper", "paper", fixed(2), True),
    ]


# --- benchmark ------------------------------------------------------------------------------


def _history_stats(history: Mapping[str, np.ndarray]) -> dict[str, Any]:
    epoch_times = history["epoch_time_s"]
    # An epoch's patches (steps x batch) are its rate times its training time.
    patches = history["patches_per_s"] * epoch_times
    # The first epoch carries one-off costs (Jittor compiles its kernels): keep it apart.
    steady = slice(1, None) if epoch_times.size > 1 else slice(None)
    valid_share = 100.0 * history["valid_time_s"] / epoch_times
    return {
        "epochs": int(epoch_times.size),
        "first_epoch_s": float(epoch_times[0]) if epoch_times.size else None,
        "epoch_mean_s": _nanstat(epoch_times[steady], "mean"),
        "epoch_std_s": _nanstat(epoch_times[steady], "std"),
        **patch_rates(patches, epoch_times),
        "train_total_s": float(np.nansum(epoch_times)),
        "valid_total_s": float(np.nansum(history["valid_time_s"])),
        "valid_percent_of_train": _nanstat(valid_share, "mean"),
        "checkpoint_total_s": float(np.nansum(history["checkpoint_time_s"])),
    }


def _monitor_stats(monitor: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {
        "peak_rss_mib": _nanstat(monitor.get("rss_mib"), "max"),
        "peak_gpu_mem_mib": _nanstat(monitor.get("gpu_mem_mib"), "max"),
        "peak_framework_mem_mib": _nanstat(monitor.get("framework_mem_mib"), "max"),
        "cpu_util_mean_percent": _nanstat(monitor.get("cpu_percent"), "mean"),
        "gpu_util_mean_percent": _nanstat(monitor.get("gpu_util_percent"), "mean"),
    }


def benchmark_rows(
    histories: Mapping[Run, str | Path],
    monitors: Mapping[Run, str | Path],
    train_benchmarks: Mapping[Run, str | Path],
    summaries: Mapping[Run, Mapping[str, Any]],
) -> list[dict]:
    """One row per run, from its training files and evaluation summary, in the given order."""
    rows = []
    for key in histories:
        recipe, framework, sigma, seed = key
        row: dict[str, Any] = {
            "recipe": recipe,
            "framework": framework,
            "sigma": sigma,
            "seed": seed,
        }
        row.update(_history_stats(read_history(histories[key])))
        if key in monitors:
            row.update(_monitor_stats(read_monitor(monitors[key])))
        if key in train_benchmarks:
            row["job_wall_s"] = _nanstat(read_benchmark(train_benchmarks[key])["s"], "mean")
        inference = summaries.get(key, {}).get("inference", {})
        row["device"] = inference.get("device")
        row["precision"] = inference.get("precision")
        row["speed_levers"] = speed_setting(inference.get("speed_levers") or [])
        row["infer_images_per_s"] = inference.get("images_per_s")
        row["infer_megapixels_per_s"] = inference.get("megapixels_per_s")
        rate = inference.get("images_per_s")
        row["infer_s_per_image"] = 1.0 / rate if rate else None
        rows.append(row)
    return rows


# --- where the time went --------------------------------------------------------------------

TIME_BREAKDOWN_COLUMNS = [
    Column("stage", "stage"),
    Column("source", "measured by"),
    Column("jobs", "jobs", numeric=True),
    Column("seconds", "time (s)", fixed(0), True),
    Column("minutes", "time (min)", fixed(1), True),
    Column("share_percent", "share (%)", fixed(1), True),
]

TIME_BREAKDOWN_NOTE = (
    "Where the pipeline's time went, summed over its jobs, from the files the jobs wrote. Data "
    "preparation: the wall time of the data jobs (download, gray conversion, BSD68 split, "
    "noise, patches; Snakemake benchmarks). Training steps, per-epoch validation and "
    "checkpoints: the sums of epoch_time_s, valid_time_s and checkpoint_time_s in each run's "
    "history.csv. Rest of the training jobs: each training job's wall time (Snakemake "
    "benchmark) minus those three sums, i.e. start-up (imports, data loading, building the "
    "network), Jittor's kernel compilation outside the timed steps, the final validation on "
    "every tile, writing the outputs and the bookkeeping between the timed parts; a run resumed "
    "from a checkpoint has epochs from an earlier job that its benchmark does not time, so its "
    "rest counts 0 rather than a negative time. Evaluation: the wall time of the evaluation "
    "jobs. Jobs count the benchmark files or runs behind a row. The share is of the total; jobs "
    "not listed (initial weights, the framework parity check, tables and figures) are not "
    "counted. Jobs run in parallel add up here: the total is machine time, not elapsed time."
)


def _job_seconds(path: str | Path) -> float:
    """One job's wall time; the mean when Snakemake repeated the job (benchmark repeats)."""
    seconds = _nanstat(read_benchmark(path)["s"], "mean")
    if seconds is None:
        raise ValueError(f"{path}: the benchmark file holds no wall time (column 's')")
    return seconds


def time_breakdown_rows(
    data_benchmarks: Sequence[str | Path],
    histories: Mapping[Run, str | Path],
    train_benchmarks: Mapping[Run, str | Path],
    eval_benchmarks: Sequence[str | Path],
) -> list[dict[str, Any]]:
    """Rows of the time breakdown (data, training parts, evaluation) and a total row.

    Every run of `histories` needs its training job's benchmark in `train_benchmarks`: the
    rest of a training job is its wall time minus what its history timed.
    """
    missing = [run for run in histories if run not in train_benchmarks]
    if missing:
        raise ValueError(f"no training benchmark for the runs {missing}")
    steps = valid = checkpoints = rest = 0.0
    for run, path in histories.items():
        history = read_history(path)
        timed = [
            float(np.nansum(history[column]))
            for column in ("epoch_time_s", "valid_time_s", "checkpoint_time_s")
        ]
        steps, valid, checkpoints = steps + timed[0], valid + timed[1], checkpoints + timed[2]
        rest += max(0.0, _job_seconds(train_benchmarks[run]) - sum(timed))
    runs = len(histories)
    rows = [
        {
            "stage": "data preparation",
            "source": "data jobs' Snakemake benchmarks",
            "jobs": len(data_benchmarks),
            "seconds": sum(_job_seconds(path) for path in data_benchmarks),
        },
        {
            "stage": "training steps",
            "source": "history.csv epoch_time_s",
            "jobs": runs,
            "seconds": steps,
        },
        {
            "stage": "per-epoch validation",
            "source": "history.csv valid_time_s",
            "jobs": runs,
            "seconds": valid,
        },
        {
            "stage": "checkpoints",
            "source": "history.csv checkpoint_time_s",
            "jobs": runs,
            "seconds": checkpoints,
        },
        {
            "stage": "rest of the training jobs",
            "source": "training jobs' Snakemake benchmarks minus the three above",
            "jobs": runs,
            "seconds": rest,
        },
        {
            "stage": "evaluation",
            "source": "evaluation jobs' Snakemake benchmarks",
            "jobs": len(eval_benchmarks),
            "seconds": sum(_job_seconds(path) for path in eval_benchmarks),
        },
    ]
    total = sum(row["seconds"] for row in rows)
    rows.append(
        {
            "stage": "total",
            "source": "sum of the rows above",
            "jobs": len(data_benchmarks) + runs + len(eval_benchmarks),
            "seconds": total,
        }
    )
    for row in rows:
        row["minutes"] = row["seconds"] / 60.0
        row["share_percent"] = 100.0 * row["seconds"] / total if total > 0 else None
    return rows


def make_time_breakdown(
    *,
    data_benchmarks: Sequence[str | Path],
    histories: Mapping[Run, str | Path],
    train_benchmarks: Mapping[Run, str | Path],
    eval_benchmarks: Sequence[str | Path],
    csv_path: str | Path,
    html_path: str | Path,
) -> list[dict[str, Any]]:
    """Write the time breakdown table (.csv, .html); returns its rows."""
    rows = time_breakdown_rows(data_benchmarks, histories, train_benchmarks, eval_benchmarks)
    write_csv(csv_path, TIME_BREAKDOWN_COLUMNS, rows)
    write_html(
        html_path,
        render_table("Where the time went", TIME_BREAKDOWN_COLUMNS, rows, [TIME_BREAKDOWN_NOTE]),
    )
    return rows


# --- reading and writing --------------------------------------------------------------------


def write_csv(path: str | Path, columns: Sequence[Column], rows: Sequence[Mapping]) -> None:
    """Machine-readable: full precision, empty cells where there is no value."""
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow(["" if _empty(row.get(c.key)) else row[c.key] for c in columns])


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def write_html(path: str | Path, html_text: str) -> None:
    with atomic_open(path, encoding="utf-8") as handle:
        handle.write(html_text)


def read_summaries(paths: Iterable[str | Path]) -> dict[Run, dict[str, Any]]:
    """Read evaluation summaries, keyed by the (recipe, framework, sigma, seed) each names."""
    summaries: dict[Run, dict[str, Any]] = {}
    origin: dict[Run, Path] = {}
    for path in paths:
        summary = read_eval_summary(path)
        key = _run_key((summary["recipe"], summary["framework"], summary["sigma"], summary["seed"]))
        if key in summaries:
            raise ValueError(
                f"{path} and {origin[key]} both evaluate recipe {key[0]}, {key[1]} at sigma "
                f"{key[2]}, seed {key[3]}"
            )
        summaries[key], origin[key] = summary, Path(path)
    return summaries


def read_per_images(paths: Mapping[Run, str | Path]) -> dict[Run, list[dict[str, Any]]]:
    """Read each run's per_image.csv."""
    return {run: read_per_image(path) for run, path in paths.items()}


def reference_notes(recipe_settings: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Caption lines on the paper's numbers: their sources, and where this run departs."""
    notes = [
        f"paper N2V PSNR: {PAPER_CITATION}. reference code PSNR: {REFERENCE_CODE_CITATION}. "
        f"Both appear only on the rows of the '{PAPER_RECIPE}' recipe (all of BSD68, σ 25); "
        "— elsewhere."
    ]
    if PAPER_RECIPE in recipe_settings:
        differs = deviations(recipe_settings[PAPER_RECIPE]["settings"])
        if differs:
            notes.append(
                f"In this run the '{PAPER_RECIPE}' recipe differs from the reference code's "
                f"recipe in: {'; '.join(differs)}. Compare its numbers with the references "
                "accordingly."
            )
    return notes


def describe_recipe(name: str, settings: Mapping[str, Any]) -> str:
    """One line naming a recipe's network, schedule, data, validation and initialisation."""
    validation = settings["validation"]
    held_out = (
        f" ({validation['heldout_images']} held-out training images)"
        if validation["scheme"] == "heldout_train"
        else ""
    )
    return (
        f"{name}: {settings['arch']}, {settings['epochs']} epochs × {settings['steps_per_epoch']} "
        f"steps × batch {settings['batch_size']}, Adam lr {settings['optimizer']['lr']:g} "
        f"({settings['schedule']['kind']} schedule), training set {settings['train_set']}, "
        f"validation {validation['scheme']}{held_out}, init {settings['init']}."
    )


def make_tables(
    *,
    summaries: Sequence[str | Path],
    per_image: Mapping[Run, str | Path],
    histories: Mapping[Run, str | Path],
    monitors: Mapping[Run, str | Path],
    train_benchmarks: Mapping[Run, str | Path],
    recipe_settings: Mapping[str, Mapping[str, Any]],
    psnr_ssim_csv: str | Path,
    psnr_ssim_html: str | Path,
    benchmark_csv: str | Path,
    benchmark_html: str | Path | None = None,
    summary_html: str | Path | None = None,
    title: str = "Denoising accuracy on BSD68 (PSNR/SSIM)",
    baseline_summaries: Sequence[str | Path] = (),
    baseline_benchmarks: Sequence[str | Path] = (),
) -> list[dict[str, Any]]:
    """Write the PSNR/SSIM and benchmark tables (.csv, .html) and optionally the summary page.

    `per_image`, `histories`, `monitors` and `train_benchmarks` map each run to its file;
    `recipe_settings` gives per recipe at least "settings" (its train mapping with the run's
    `data` under "data"), in report order. `baseline_summaries` (BM3D's summary.json per
    sigma) and `baseline_benchmarks` (its jobs' benchmarks, in the same order) add BM3D's rows
    to the benchmark table. Returns the PSNR/SSIM rows.
    """
    loaded = read_summaries(summaries)
    accuracy = psnr_ssim_rows(loaded, read_per_images(per_image), list(recipe_settings))
    write_csv(psnr_ssim_csv, PSNR_SSIM_COLUMNS, accuracy)
    notes = [
        *(describe_recipe(name, r["settings"]) for name, r in recipe_settings.items()),
        TEST_SET_NOTE,
        SELECTION_NOTE,
        FRAMEWORK_NOTE,
        *reference_notes(recipe_settings),
    ]
    write_html(psnr_ssim_html, render_table(title, PSNR_SSIM_COLUMNS, accuracy, notes))
    cost = benchmark_rows(histories, monitors, train_benchmarks, loaded)
    if baseline_summaries:
        # BM3D's time per image beside the networks' (one row per sigma); its benchmark
        # files come in the summaries' order.
        baselines = read_baseline_summaries(baseline_summaries)
        benchmarks = dict(zip(baselines, baseline_benchmarks, strict=False))
        cost += baseline_benchmark_rows(baselines, benchmarks)
    write_csv(benchmark_csv, BENCHMARK_COLUMNS, cost)
    if benchmark_html is not None:
        write_html(
            benchmark_html,
            render_table("Training and inference cost", BENCHMARK_COLUMNS, cost, [BENCHMARK_NOTE]),
        )
    if summary_html is not None:
        frameworks = [f for f in FRAMEWORKS if any(r["framework"] == f for r in accuracy)]
        write_html(
            summary_html,
            render_table(
                "Test PSNR by recipe",
                summary_columns(frameworks),
                summary_rows(accuracy),
                [SUMMARY_NOTE],
                compact=True,
            ),
        )
    return accuracy


# --- every method side by side (issue 22) ---------------------------------------------------

# The paper's Table 1 order: the training-free baseline, then the learned methods from the
# most to the least information in training (clean targets, noisy pairs, single noisy images).
METHOD_ORDER = ("bm3d", "n2c", "n2n", "n2v", "n2v2")
METHOD_LABELS = {"bm3d": "BM3D", "n2c": "N2C", "n2n": "N2N", "n2v": "N2V", "n2v2": "N2V2"}
# The paper's choice (lowest validation loss on held-out training images) first.
METHOD_WEIGHTS_ORDER = ("best", "last")

METHODS_CSV_COLUMNS = [
    Column("sigma", "σ"),
    Column("method", "method"),
    Column("label", "label"),
    Column("recipe", "recipe"),
    Column("test_set", "test set"),
    Column("n", "images", numeric=True),
    Column("weights", "weights"),
    Column("seeds", "seeds", numeric=True),
    Column("torch_psnr", "PyTorch PSNR (dB)", fixed(2), True),
    Column("torch_sd_seeds", "PyTorch sd over seeds (dB)", fixed(3), True),
    Column("jittor_psnr", "Jittor PSNR (dB)", fixed(2), True),
    Column("jittor_sd_seeds", "Jittor sd over seeds (dB)", fixed(3), True),
    Column("jittor_minus_torch_psnr", "jittor − torch PSNR (dB)", fixed(3, signed=True), True),
    Column("pairs", "test pairs", numeric=True),
    Column("p_value", "p (Wilcoxon)", fixed(3), True),
    Column("significant", "significant at 0.05"),
    Column("no_framework_psnr", "no framework PSNR (dB)", fixed(2), True),
    Column("paper_psnr", "paper PSNR (dB)", fixed(2), True),
    # A reference implementation's row (config `references`): its PSNR and ours against it.
    Column("reference", "reference"),
    Column("reference_psnr", "reference PSNR (dB)", fixed(2), True),
    Column("reference_sd_seeds", "reference sd over seeds (dB)", fixed(3), True),
    *[
        column
        for ours in ("torch", "jittor")
        for column in (
            Column(
                f"{ours}_minus_reference_psnr",
                f"{ours} − reference PSNR (dB)",
                fixed(3, signed=True),
                True,
            ),
            Column(
                f"{ours}_reference_ci_low",
                f"{ours} − reference 95% CI low (dB)",
                fixed(3, signed=True),
                True,
            ),
            Column(
                f"{ours}_reference_ci_high",
                f"{ours} − reference 95% CI high (dB)",
                fixed(3, signed=True),
                True,
            ),
            Column(f"{ours}_reference_pairs", f"{ours} vs reference pairs", numeric=True),
            Column(f"{ours}_reference_p", f"{ours} vs reference p (Wilcoxon)", fixed(3), True),
        )
    ],
]


def _with_sd(value: float | None, sd: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:.2f}" + ("" if sd is None else f" ± {sd:.2f}")


METHODS_HTML_COLUMNS = [
    Column("label", "method"),
    Column("recipe", "recipe"),
    Column("test", "test images"),
    Column("weights", "weights"),
    Column("torch_cell", "PyTorch", numeric=True),
    Column("jittor_cell", "Jittor", numeric=True),
    Column("jittor_minus_torch_psnr", "jittor − torch", fixed(3, signed=True), True),
    Column("p_value", "p (Wilcoxon)", fixed(3), True),
    Column("no_framework_psnr", "no framework", fixed(2), True),
    Column("paper_psnr", "paper", fixed(2), True),
]
# Shown only when the run has references: the table sits beside the rule graph on the landing page.
METHODS_REFERENCE_HTML_COLUMNS = [
    Column("reference_cell", "reference", numeric=True),
    Column("torch_minus_reference_psnr", "torch − ref.", fixed(3, signed=True), True),
    Column("torch_reference_ci", "95% CI", numeric=True),
    Column("torch_reference_p", "p", fixed(3), True),
    Column("jittor_minus_reference_psnr", "jittor − ref.", fixed(3, signed=True), True),
    Column("jittor_reference_ci", "95% CI", numeric=True),
    Column("jittor_reference_p", "p", fixed(3), True),
]

METHODS_NOTE = (
    "PSNR (dB, data range 255, unclipped prediction) by method, one table per noise level σ. "
    "Each recipe sits on its train.method's row (N2C: supervised, clean targets; N2N: a second "
    "noise realisation as target; N2V: Noise2Void; N2V2: its successor); a method that two "
    "recipes share is labelled by recipe. PyTorch and Jittor: mean ± sd over seeds of the mean "
    "over images, on each recipe's own test images (all of BSD68 after validation on held-out "
    "training images; the split's test half after validation on the BSD68 valid half), never "
    "on images that chose its weights. best = the weights of the lowest validation loss (the "
    "paper's choice), last = the final epoch's. jittor − torch and p: the difference of the "
    "means and the Wilcoxon signed-rank test of the per-image differences paired by image and "
    "seed, as in the PSNR/SSIM table. BM3D has no framework and no seed: its one number (the "
    "bm3d package, both stages, the known σ) is in 'no framework', on the same test images as "
    "the rows beside it (a row per test set in use)."
)


REFERENCES_NOTE = (
    "Reference implementations (rows 'N2V, juglab n2v ...', 'N2V, CAREamics ...'; config "
    "key references): each trained on the same recipe's training images and validation tiles "
    "with its budget (settings beside ours: the recipe's '4. References' tables), predicted the "
    "same noisy BSD68 images with its own predict, and was scored by the pipeline's metric "
    "code. reference: mean ± sd over seeds. torch − ref., jittor − ref.: our row above minus "
    "the reference (positive: ours is better); 95% CI: the t-interval of the mean per-image "
    "difference, each image's seeds averaged first (the images are the independent units); p: "
    "Wilcoxon signed-rank on the per-image differences paired by image and seed. CAREamics "
    "defines no best weights for N2V: it has last rows only."
)


def _method_paper_note() -> str:
    return (
        f"paper: {METHOD_PAPER_CITATION} (Krull, Buchholz & Jug, Noise2Void, CVPR 2019; BSD68, "
        "all 68 images, σ 25; N2C is its 'traditional' supervised training): "
        + ", ".join(
            f"{METHOD_LABELS[m]} {v:.2f}"
            for m in METHOD_ORDER
            for (method, _sigma), v in METHOD_PAPER_PSNR.items()
            if method == m
        )
        + ". Only σ 25 and all of BSD68 have a paper number; the paper has no N2V2 (—)."
    )


def _test_label(test_set: str, n: int | None) -> str:
    where = "all" if test_set == "bsd68" else "test half"
    return where if n is None else f"{where} ({n})"


def methods_rows(
    accuracy: Sequence[Mapping[str, Any]],
    recipe_methods: Mapping[str, str],
    baselines: Mapping[int, Mapping[str, Any]] | None = None,
    per_image: Mapping[Run, Sequence[Mapping[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the methods table: per sigma, BM3D then each recipe by its method.

    `accuracy` are `psnr_ssim_rows`; `recipe_methods` maps each recipe of the run to its
    method, in the run's order; `baselines` maps a sigma to BM3D's summary.json there.
    A recipe's rows are on its reported test set (`REPORTED_TEST_SET`), one per weights; the
    BM3D rows of a sigma are on every test set that its recipes' rows use, so each learned
    number has a BM3D number on the same images.
    """
    baselines = baselines or {}
    by_method: dict[str, list[str]] = {}
    for recipe, method in recipe_methods.items():
        by_method.setdefault(method, []).append(recipe)
    recipes = sorted(
        recipe_methods,
        key=lambda r: (_order(recipe_methods[r], METHOD_ORDER), list(recipe_methods).index(r)),
    )
    cells = {
        (r["recipe"], r["sigma"], r["test_set"], r["weights"], r["framework"]): r
        for r in accuracy
        if r["recipe"] in recipe_methods
    }
    sigmas = sorted({key[1] for key in cells} | {int(s) for s in baselines})
    rows: list[dict[str, Any]] = []
    for sigma in sigmas:
        learned: list[dict[str, Any]] = []
        for recipe in recipes:
            method = recipe_methods[recipe]
            label = METHOD_LABELS.get(method, method)
            if len(by_method[method]) > 1:
                label = f"{label} ({recipe})"
            mine = [key for key in cells if key[0] == recipe and key[1] == sigma]
            if not mine:
                continue
            validation = cells[mine[0]]["validation"]
            test_set = REPORTED_TEST_SET.get(validation, "bsd68")
            present = {key[3] for key in mine if key[2] == test_set}
            weights_list = [w for w in METHOD_WEIGHTS_ORDER if w in present]
            weights_list += sorted(present - set(weights_list))
            for weights in weights_list:
                torch_row = cells.get((recipe, sigma, test_set, weights, "torch"))
                jittor_row = cells.get((recipe, sigma, test_set, weights, "jittor"))
                references = [
                    cells[key]
                    for name in REFERENCE_NAMES
                    if (key := (recipe, sigma, test_set, weights, name)) in cells
                ]
                first = torch_row or jittor_row
                if first is None:  # only a reference has these weights
                    continue
                learned.append(
                    {
                        "sigma": sigma,
                        "method": method,
                        "label": label,
                        "recipe": recipe,
                        "test_set": test_set,
                        "n": first["n"],
                        "test": _test_label(test_set, first["n"]),
                        "weights": weights,
                        "seeds": first["seeds"],
                        "torch_psnr": torch_row and torch_row["psnr_mean"],
                        "torch_sd_seeds": torch_row and torch_row["psnr_sd_seeds"],
                        "jittor_psnr": jittor_row and jittor_row["psnr_mean"],
                        "jittor_sd_seeds": jittor_row and jittor_row["psnr_sd_seeds"],
                        "jittor_minus_torch_psnr": jittor_row
                        and jittor_row["jittor_minus_torch_psnr"],
                        "pairs": jittor_row and jittor_row["pairs"],
                        "p_value": jittor_row and jittor_row["p_value"],
                        "significant": jittor_row and jittor_row["significant"],
                        "no_framework_psnr": None,
                        "paper_psnr": method_paper_psnr(method, test_set, sigma),
                    }
                )
                learned += [_reference_row(learned[-1], row, per_image or {}) for row in references]
        rows += _bm3d_rows(sigma, baselines.get(sigma), learned)
        rows += learned
    for row in rows:
        row["torch_cell"] = _with_sd(row.get("torch_psnr"), row.get("torch_sd_seeds"))
        row["jittor_cell"] = _with_sd(row.get("jittor_psnr"), row.get("jittor_sd_seeds"))
        row["reference_cell"] = _with_sd(row.get("reference_psnr"), row.get("reference_sd_seeds"))
    return rows


def paired_interval(differences_by_image: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Mean of the per-image differences (each image's mean over seeds) and its 95% t-interval.

    Averaging an image's seeds first makes the images the independent units.
    """
    means = np.array([np.mean(d) for d in differences_by_image.values()], dtype=np.float64)
    if means.size < 2:
        return {"mean": float(means.mean()) if means.size else None, "low": None, "high": None}
    half = scipy_stats.t.ppf(0.975, means.size - 1) * means.std(ddof=1) / np.sqrt(means.size)
    return {
        "mean": float(means.mean()),
        "low": float(means.mean() - half),
        "high": float(means.mean() + half),
    }


def _differences_by_image(
    per_image: Mapping[Run, Sequence[Mapping[str, Any]]],
    row: Mapping[str, Any],
    ours: str,
) -> dict[str, list[float]]:
    """PSNR(ours) − PSNR(reference) per image, one value per seed both have."""
    by_image: dict[str, list[float]] = {}
    subsets = TEST_SETS[row["test_set"]]
    seeds = sorted({key[3] for key in per_image if key[0] == row["recipe"]})
    for seed in seeds:
        scores = {
            name: {
                r["id"]: r["psnr"]
                for r in per_image.get((row["recipe"], name, row["sigma"], seed), [])
                if r["weights"] == row["weights"] and r["subset"] in subsets
            }
            for name in (ours, row["framework"])
        }
        for image_id in sorted(set(scores[ours]) & set(scores[row["framework"]])):
            by_image.setdefault(image_id, []).append(
                scores[ours][image_id] - scores[row["framework"]][image_id]
            )
    return by_image


def _reference_row(
    ours: Mapping[str, Any],
    reference_row: Mapping[str, Any],
    per_image: Mapping[Run, Sequence[Mapping[str, Any]]],
) -> dict[str, Any]:
    """Build a reference implementation's row below ours: its PSNR, ours − its, CI and p."""
    row: dict[str, Any] = {
        **dict.fromkeys(c.key for c in METHODS_CSV_COLUMNS),
        **{k: ours[k] for k in ("sigma", "method", "recipe", "test_set", "test", "weights")},
        "label": f"{METHOD_LABELS.get(ours['method'], ours['method'])}, "
        + REFERENCE_TITLES[reference_row["framework"]],
        "reference": reference_row["framework"],
        "n": reference_row["n"],
        "seeds": reference_row["seeds"],
        "reference_psnr": reference_row["psnr_mean"],
        "reference_sd_seeds": reference_row["psnr_sd_seeds"],
    }
    for framework in ("torch", "jittor"):
        if ours.get(f"{framework}_psnr") is None:
            continue
        by_image = _differences_by_image(per_image, reference_row, framework)
        interval = paired_interval(by_image)
        pairs, p_value = paired_test([d for values in by_image.values() for d in values])
        row[f"{framework}_minus_reference_psnr"] = ours[f"{framework}_psnr"] - row["reference_psnr"]
        row[f"{framework}_reference_ci_low"] = interval["low"]
        row[f"{framework}_reference_ci_high"] = interval["high"]
        row[f"{framework}_reference_p"] = p_value
        row[f"{framework}_reference_pairs"] = pairs
        row[f"{framework}_reference_ci"] = _interval_text(interval)
    return row


def _interval_text(interval: Mapping[str, Any]) -> str | None:
    if interval["low"] is None:
        return None
    return f"{interval['low']:+.3f} to {interval['high']:+.3f}"


def _bm3d_rows(
    sigma: int, summary: Mapping[str, Any] | None, learned: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """BM3D's row on each test set the learned rows use (all of BSD68 when there are none)."""
    if summary is None:
        return []
    used = list(dict.fromkeys(r["test_set"] for r in learned)) or ["bsd68"]
    used.sort(key=lambda t: _order(t, TEST_SET_ORDER))
    rows = []
    for test_set in used:
        stats = summary["test_sets"].get(test_set, {}).get(BM3D_WEIGHTS)
        if stats is None:
            continue
        rows.append(
            {
                # Every column of the learned rows, empty: BM3D has no framework or seed.
                **dict.fromkeys(c.key for c in METHODS_CSV_COLUMNS),
                "sigma": sigma,
                "method": "bm3d",
                "label": METHOD_LABELS["bm3d"],
                "recipe": None,
                "test_set": test_set,
                "n": stats["n"],
                "test": _test_label(test_set, stats["n"]),
                "weights": None,
                "seeds": None,
                "no_framework_psnr": stats["psnr_mean"],
                "paper_psnr": method_paper_psnr("bm3d", test_set, sigma),
            }
        )
    return rows


def read_baseline_summaries(paths: Iterable[str | Path]) -> dict[int, dict[str, Any]]:
    """BM3D's summary.json files keyed by the sigma each names; one per sigma."""
    summaries: dict[int, dict[str, Any]] = {}
    for path in paths:
        summary = read_eval_summary(path)
        sigma = int(summary["sigma"])
        if sigma in summaries:
            raise ValueError(f"{path}: a second BM3D summary at sigma {sigma}")
        summaries[sigma] = summary
    return summaries


def make_methods_table(
    *,
    summaries: Sequence[str | Path],
    per_image: Mapping[Run, str | Path],
    recipe_methods: Mapping[str, str],
    baseline_summaries: Sequence[str | Path] = (),
    csv_path: str | Path,
    html_path: str | Path,
) -> list[dict[str, Any]]:
    """Write the methods table (.csv, .html: a block per sigma); returns its rows."""
    loaded_per_image = read_per_images(per_image)
    accuracy = psnr_ssim_rows(read_summaries(summaries), loaded_per_image)
    rows = methods_rows(
        accuracy, recipe_methods, read_baseline_summaries(baseline_summaries), loaded_per_image
    )
    write_csv(csv_path, METHODS_CSV_COLUMNS, rows)
    has_references = any(r.get("reference") for r in rows)
    blocks = [
        (f"σ = {sigma}", [r for r in rows if r["sigma"] == sigma])
        for sigma in dict.fromkeys(r["sigma"] for r in rows)
    ]
    write_html(
        html_path,
        render_table_blocks(
            "Denoising methods on BSD68 (PSNR, dB)",
            METHODS_HTML_COLUMNS + (METHODS_REFERENCE_HTML_COLUMNS if has_references else []),
            blocks,
            [METHODS_NOTE, _method_paper_note(), *([REFERENCES_NOTE] if has_references else [])],
            compact=True,  # it is on the landing page too (workflow.rst)
        ),
    )
    return rows


def baseline_benchmark_rows(
    baselines: Mapping[int, Mapping[str, Any]], benchmarks: Mapping[int, str | Path]
) -> list[dict[str, Any]]:
    """Build the benchmark table's BM3D row per sigma: time per image, job wall time."""
    rows = []
    for sigma, summary in sorted(baselines.items()):
        inference = summary.get("inference", {})
        rows.append(
            {
                "recipe": BM3D,
                "framework": "none",
                "sigma": sigma,
                "device": inference.get("device"),
                "precision": inference.get("precision"),
                "speed_levers": speed_setting(inference.get("speed_levers") or []),
                "infer_images_per_s": inference.get("images_per_s"),
                "infer_megapixels_per_s": inference.get("megapixels_per_s"),
                "infer_s_per_image": inference.get("seconds_per_image"),
                "job_wall_s": _job_seconds(benchmarks[sigma]) if sigma in benchmarks else None,
            }
        )
    return rows
