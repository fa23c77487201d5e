"""The two result tables: accuracy (PSNR/SSIM) and cost (time, memory, throughput).

An evaluation summary names its own framework and sigma; the training files do not, so they
come in as explicit (framework, sigma) -> path mappings (`pair_runs`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.backends.registry import FRAMEWORKS
from n2v_repro.io.atomic import atomic_open
from n2v_repro.io.formats import read_benchmark, read_eval_summary, read_history, read_monitor
from n2v_repro.report.html_pages import Column, fixed, render_table
from n2v_repro.report.references import PAPER_CITATION, paper_psnr

TEST_SET_ORDER = ("bsd68", "test34")
WEIGHTS_ORDER = ("last", "best")

Run = tuple[str, int]

TEST_SET_NOTE = (
    "bsd68 = all BSD68 images in use (the paper's protocol); test34 = the split's test "
    "subset (the original port's protocol). PSNR/SSIM use data range 255 on the unclipped "
    "prediction; mean and (population) std over images."
)

PSNR_SSIM_COLUMNS = [
    Column("test_set", "test set"),
    Column("sigma", "σ"),
    Column("weights", "weights"),
    Column("framework", "framework"),
    Column("n", "images", numeric=True),
    Column("psnr_mean", "PSNR mean (dB)", fixed(2), True),
    Column("psnr_std", "PSNR std (dB)", fixed(2), True),
    Column("ssim_mean", "SSIM mean", fixed(4), True),
    Column("ssim_std", "SSIM std", fixed(4), True),
    Column("noisy_psnr", "noisy PSNR (dB)", fixed(2), True),
    Column("noisy_ssim", "noisy SSIM", fixed(4), True),
    Column("jittor_minus_torch_psnr", "jittor − torch PSNR (dB)", fixed(3, signed=True), True),
    Column("paper_psnr", "paper N2V PSNR (dB)", fixed(2), True),
]

BENCHMARK_COLUMNS = [
    Column("framework", "framework"),
    Column("sigma", "σ"),
    Column("device", "device"),
    Column("precision", "precision"),
    Column("epochs", "epochs", numeric=True),
    Column("first_epoch_s", "first epoch (s)", fixed(1), True),
    Column("epoch_mean_s", "epoch mean (s)", fixed(2), True),
    Column("epoch_std_s", "epoch std (s)", fixed(2), True),
    Column("train_patches_per_s", "training (patches/s)", fixed(1), True),
    Column("train_total_s", "training total (s)", fixed(0), True),
    Column("job_wall_s", "train job wall (s)", fixed(0), True),
    Column("peak_rss_mib", "peak RSS (MiB)", fixed(0), True),
    Column("peak_gpu_mem_mib", "peak GPU memory (MiB)", fixed(0), True),
    Column("peak_framework_mem_mib", "framework peak (MiB)", fixed(0), True),
    Column("cpu_util_mean_percent", "mean CPU (%)", fixed(0), True),
    Column("gpu_util_mean_percent", "mean GPU (%)", fixed(0), True),
    Column("infer_images_per_s", "inference (images/s)", fixed(2), True),
    Column("infer_megapixels_per_s", "inference (MP/s)", fixed(3), True),
]

BENCHMARK_NOTE = (
    "Epoch mean/std and training throughput exclude the first epoch when there are more "
    "(it holds one-off costs such as Jittor's kernel compilation); training total is the "
    "sum of all epoch times. Peak RSS and CPU utilisation come from the training monitor "
    "(CPU % is per core, so 200% = two cores busy); GPU columns are empty on CPU. "
    "Inference: whole BSD68 images, batch 1, after a warm-up. Precision is the arithmetic in "
    "effect (train.precision on a CUDA GPU; the CPU always computes float32)."
)


def pair_runs(runs: Iterable[Sequence[Any]], paths: Sequence[str | Path]) -> dict[Run, Path]:
    """Pair the i-th (framework, sigma) of `runs` with the i-th path."""
    keys = [(str(framework), int(sigma)) for framework, sigma in runs]
    if len(keys) != len(paths):
        raise ValueError(f"{len(keys)} runs {keys} for {len(paths)} files {list(paths)}")
    unknown = sorted({framework for framework, _ in keys} - set(FRAMEWORKS))
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; expected some of {FRAMEWORKS}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"a (framework, sigma) is listed twice in {keys}")
    return {key: Path(path) for key, path in zip(keys, paths, strict=True)}


def _order(value: str, order: Sequence[str]) -> int:
    return order.index(value) if value in order else len(order)


def _nanstat(values: np.ndarray | None, how: str) -> float | None:
    if values is None or values.size == 0 or np.all(np.isnan(values)):
        return None
    return float({"mean": np.nanmean, "max": np.nanmax, "std": np.nanstd}[how](values))


# --- PSNR/SSIM ------------------------------------------------------------------------------


def psnr_ssim_rows(summaries: Mapping[tuple[str, int], Mapping[str, Any]]) -> list[dict]:
    """One row per framework x sigma x test set x trained weights, ordered for reading."""
    rows = []
    for (framework, sigma), summary in summaries.items():
        for test_set, by_weights in summary["test_sets"].items():
            noisy = by_weights.get("noisy", {})
            for weights, stats in by_weights.items():
                if weights == "noisy":
                    continue
                rows.append(
                    {
                        "framework": framework,
                        "sigma": sigma,
                        "test_set": test_set,
                        "weights": weights,
                        **{k: stats[k] for k in ("n", "psnr_mean", "psnr_std")},
                        **{k: stats[k] for k in ("ssim_mean", "ssim_std")},
                        "noisy_psnr": noisy.get("psnr_mean"),
                        "noisy_ssim": noisy.get("ssim_mean"),
                        "jittor_minus_torch_psnr": None,
                        "paper_psnr": paper_psnr(test_set, sigma),
                    }
                )
    by_cell = {(r["framework"], r["sigma"], r["test_set"], r["weights"]): r for r in rows}
    for row in rows:
        torch_row = by_cell.get(("torch", row["sigma"], row["test_set"], row["weights"]))
        if row["framework"] == "jittor" and torch_row is not None:
            row["jittor_minus_torch_psnr"] = row["psnr_mean"] - torch_row["psnr_mean"]
    rows.sort(
        key=lambda r: (
            _order(r["test_set"], TEST_SET_ORDER),
            r["sigma"],
            _order(r["weights"], WEIGHTS_ORDER),
            _order(r["framework"], FRAMEWORKS),
        )
    )
    return rows


# --- benchmark ------------------------------------------------------------------------------


def _history_stats(history: Mapping[str, np.ndarray]) -> dict[str, Any]:
    epoch_times = history["epoch_time_s"]
    throughput = history["patches_per_s"]
    # The first epoch carries one-off costs (Jittor compiles its kernels): keep it apart.
    steady = slice(1, None) if epoch_times.size > 1 else slice(None)
    return {
        "epochs": int(epoch_times.size),
        "first_epoch_s": float(epoch_times[0]) if epoch_times.size else None,
        "epoch_mean_s": _nanstat(epoch_times[steady], "mean"),
        "epoch_std_s": _nanstat(epoch_times[steady], "std"),
        "train_patches_per_s": _nanstat(throughput[steady], "mean"),
        "train_total_s": float(np.nansum(epoch_times)),
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
    """One row per framework x sigma, from its training files and evaluation summary."""
    rows = []
    for key in sorted(histories, key=lambda k: (_order(k[0], FRAMEWORKS), k[1])):
        framework, sigma = key
        row: dict[str, Any] = {"framework": framework, "sigma": sigma}
        row.update(_history_stats(read_history(histories[key])))
        if key in monitors:
            row.update(_monitor_stats(read_monitor(monitors[key])))
        if key in train_benchmarks:
            row["job_wall_s"] = _nanstat(read_benchmark(train_benchmarks[key])["s"], "mean")
        inference = summaries.get(key, {}).get("inference", {})
        row["device"] = inference.get("device")
        row["precision"] = inference.get("precision")
        row["infer_images_per_s"] = inference.get("images_per_s")
        row["infer_megapixels_per_s"] = inference.get("megapixels_per_s")
        rows.append(row)
    return rows


# --- writing --------------------------------------------------------------------------------


def write_csv(path: str | Path, columns: Sequence[Column], rows: Sequence[Mapping]) -> None:
    """Machine-readable: full precision, empty cells where there is no value."""
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow(["" if row.get(c.key) is None else row[c.key] for c in columns])


def write_html(path: str | Path, html_text: str) -> None:
    with atomic_open(path, encoding="utf-8") as handle:
        handle.write(html_text)


def read_summaries(paths: Iterable[str | Path]) -> dict[Run, dict[str, Any]]:
    """Read evaluation summaries, keyed by the (framework, sigma) each names."""
    summaries: dict[Run, dict[str, Any]] = {}
    origin: dict[Run, Path] = {}
    for path in paths:
        summary = read_eval_summary(path)
        key = (summary["framework"], int(summary["sigma"]))
        if key in summaries:
            raise ValueError(f"{path} and {origin[key]} both evaluate {key[0]} at sigma {key[1]}")
        summaries[key], origin[key] = summary, Path(path)
    return summaries


def make_tables(
    *,
    summaries: Sequence[str | Path],
    histories: Mapping[Run, str | Path],
    monitors: Mapping[Run, str | Path],
    train_benchmarks: Mapping[Run, str | Path],
    psnr_ssim_csv: str | Path,
    psnr_ssim_html: str | Path,
    benchmark_csv: str | Path,
    benchmark_html: str | Path,
) -> None:
    """Write results/tables/{psnr_ssim,benchmark}.{csv,html}.

    `histories`, `monitors` and `train_benchmarks` map (framework, sigma) to the file.
    """
    loaded = read_summaries(summaries)
    accuracy = psnr_ssim_rows(loaded)
    write_csv(psnr_ssim_csv, PSNR_SSIM_COLUMNS, accuracy)
    write_html(
        psnr_ssim_html,
        render_table(
            "Denoising accuracy on BSD68 (PSNR/SSIM)",
            PSNR_SSIM_COLUMNS,
            accuracy,
            [TEST_SET_NOTE, f"Paper reference: {PAPER_CITATION}; — where it reports none."],
        ),
    )
    cost = benchmark_rows(histories, monitors, train_benchmarks, loaded)
    write_csv(benchmark_csv, BENCHMARK_COLUMNS, cost)
    write_html(
        benchmark_html,
        render_table("Training and inference cost", BENCHMARK_COLUMNS, cost, [BENCHMARK_NOTE]),
    )
