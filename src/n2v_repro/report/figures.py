"""Shared figure helpers and the training figures (loss, validation metrics, time, memory).

The training figures are drawn per recipe. Each has one column of panels per sigma with both
frameworks in each panel (one line per seed, in the framework's colour), so the frameworks
compare at a glance and the sigmas side by side. Matplotlib runs headless (Agg). Figures go
to disk through an atomic rename.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from n2v_repro.backends.registry import FRAMEWORK_TITLES, FRAMEWORKS  # noqa: E402
from n2v_repro.io.atomic import atomic_path  # noqa: E402
from n2v_repro.io.formats import read_history, read_monitor  # noqa: E402
from n2v_repro.report.tables import Run  # noqa: E402

FRAMEWORK_COLOURS = {
    "torch": "#d1495b",
    "jittor": "#00798c",
    "jittor-exactbn": "#edae49",
    # The reference implementations (config `references`), beside the frameworks.
    "juglab_n2v": "#2ca02c",
    "careamics": "#7b4fa0",
}
PANEL_SIZE = (4.2, 3.2)  # inches per panel

RunTable = Mapping[Run, Mapping[str, np.ndarray]]


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def panel_grid(n_rows: int, n_cols: int, sharex: bool = False) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(PANEL_SIZE[0] * n_cols, PANEL_SIZE[1] * n_rows),
        squeeze=False,
        sharex=sharex,
        layout="constrained",
    )
    return fig, axes


def framework_colour(framework: str) -> str:
    return FRAMEWORK_COLOURS.get(framework, "#444444")


def read_runs(
    paths: Mapping[Run, str | Path], reader: Callable[[str | Path], dict[str, np.ndarray]]
) -> dict[Run, dict[str, np.ndarray]]:
    """Columns of each run's file, read with `reader` (e.g. `read_history`)."""
    return {run: reader(path) for run, path in paths.items()}


def sigmas_of(runs: Iterable[Run]) -> list[int]:
    return sorted({run[2] for run in runs})


def frameworks_of(runs: Iterable[Run]) -> list[str]:
    present = {run[1] for run in runs}
    return [f for f in FRAMEWORKS if f in present]


def seeds_of(runs: Iterable[Run]) -> list[int]:
    return sorted({run[3] for run in runs})


def _has_data(values: np.ndarray | None) -> bool:
    return values is not None and values.size > 0 and not np.all(np.isnan(values))


def _plot_by_sigma(
    runs: RunTable,
    axes_row: Sequence[Axes],
    x_key: str,
    series: Sequence[tuple[str, str, str]],
    ylabel: str,
    xlabel: str,
) -> None:
    """Plot `series` (column, label suffix, line style) of each framework, a panel per sigma."""
    for ax, sigma in zip(axes_row, sigmas_of(runs), strict=True):
        for framework in frameworks_of(runs):
            for position, seed in enumerate(seeds_of(runs)):
                table = next(
                    (t for run, t in runs.items() if run[1:] == (framework, sigma, seed)), None
                )
                if table is None:
                    continue
                for column, suffix, style in series:
                    values = table.get(column)
                    if not _has_data(values):
                        continue
                    ax.plot(
                        table[x_key],
                        values,
                        style,
                        color=framework_colour(framework),
                        # One legend entry per framework and series, not per seed.
                        label=f"{FRAMEWORK_TITLES[framework]} {suffix}".strip()
                        if position == 0
                        else None,
                        alpha=1.0 if position == 0 else 0.6,
                        marker="." if table[x_key].size < 30 else None,
                    )
        ax.set_title(f"σ = {sigma}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def plot_loss_curves(histories: RunTable, path: str | Path) -> None:
    fig, axes = panel_grid(1, len(sigmas_of(histories)))
    _plot_by_sigma(
        histories,
        axes[0],
        "epoch",
        [("train_loss", "train", "-"), ("valid_loss", "validation", "--")],
        "masked MSE loss (normalised units²)",
        "epoch",
    )
    for ax in axes[0]:
        if ax.has_data():
            ax.set_yscale("log")
    fig.suptitle("Training and validation loss")
    save_figure(fig, path)


# What the validation tiles are, by validation scheme: the curve's label says which images.
VALIDATION_TILES = {
    "heldout_train": "held-out training images (denoised noisy tiles vs their clean versions)",
    "bsd68_split": "the BSD68 validation half (denoised noisy tiles vs clean)",
}


def plot_valid_metrics(histories: RunTable, path: str | Path, validation: str = "") -> None:
    fig, axes = panel_grid(2, len(sigmas_of(histories)), sharex=True)
    _plot_by_sigma(histories, axes[0], "epoch", [("valid_psnr", "", "-")], "PSNR (dB)", "epoch")
    _plot_by_sigma(histories, axes[1], "epoch", [("valid_ssim", "", "-")], "SSIM", "epoch")
    tiles = VALIDATION_TILES.get(validation, "the validation tiles")
    # Wrapped: one panel column must not be widened by its title.
    title = textwrap.fill(f"Validation PSNR and SSIM (data range 255) by epoch, on {tiles}", 60)
    fig.suptitle(title, fontsize="medium")
    save_figure(fig, path)


def plot_valid_psnr_time(histories: RunTable, path: str | Path, validation: str = "") -> None:
    """Plot validation PSNR against cumulative wall_time_s in minutes, a panel per sigma."""
    # wall_time_s: every epoch's training, validation and checkpoint so far, not the start-up.
    minutes = {
        run: {**table, "wall_time_min": table["wall_time_s"] / 60.0}
        for run, table in histories.items()
    }
    fig, axes = panel_grid(1, len(sigmas_of(histories)))
    _plot_by_sigma(
        minutes,
        axes[0],
        "wall_time_min",
        [("valid_psnr", "", "-")],
        "validation PSNR (dB)",
        "training time (min)",
    )
    for ax in axes[0]:
        ax.set_xlim(left=0)
    tiles = VALIDATION_TILES.get(validation, "the validation tiles")
    title = textwrap.fill(
        "Validation PSNR against training time (epochs: steps + validation + checkpoints), "
        f"per-epoch tiles of {tiles}",
        60,
    )
    fig.suptitle(title, fontsize="medium")
    save_figure(fig, path)


def plot_epoch_time(histories: RunTable, path: str | Path) -> None:
    fig, axes = panel_grid(1, len(sigmas_of(histories)))
    _plot_by_sigma(
        histories, axes[0], "epoch", [("epoch_time_s", "", "-")], "epoch time (s)", "epoch"
    )
    for ax in axes[0]:
        ax.set_ylim(bottom=0)
    fig.suptitle("Training time per epoch (optimiser steps, without validation)")
    save_figure(fig, path)


def plot_memory_utilisation(monitors: RunTable, path: str | Path) -> None:
    fig, axes = panel_grid(2, len(sigmas_of(monitors)))
    _plot_by_sigma(
        monitors,
        axes[0],
        "time_s",
        [("rss_mib", "RSS", "-"), ("gpu_mem_mib", "GPU memory", "--")],
        "memory (MiB)",
        "training time (s)",
    )
    _plot_by_sigma(
        monitors,
        axes[1],
        "time_s",
        [("cpu_percent", "CPU", "-"), ("gpu_util_percent", "GPU", "--")],
        "utilisation (%; CPU: 100 per core)",
        "training time (s)",
    )
    fig.suptitle("Memory and utilisation during training")
    save_figure(fig, path)


def make_training_figures(
    *,
    histories: Mapping[Run, str | Path],
    monitors: Mapping[Run, str | Path],
    loss_curves: str | Path,
    valid_metrics: str | Path,
    valid_psnr_time: str | Path,
    epoch_time: str | Path,
    memory_utilisation: str | Path,
    validation: str = "",
) -> None:
    """Write loss_curves, valid_psnr_ssim, valid_psnr_time, epoch_time, memory_utilisation.

    `histories` and `monitors` map each run (recipe, framework, sigma, seed) of one recipe to
    its history.csv / monitor.csv; `validation` is the recipe's validation scheme (labels).
    """
    history_runs = read_runs(histories, read_history)
    plot_loss_curves(history_runs, loss_curves)
    plot_valid_metrics(history_runs, valid_metrics, validation)
    plot_valid_psnr_time(history_runs, valid_psnr_time, validation)
    plot_epoch_time(history_runs, epoch_time)
    plot_memory_utilisation(read_runs(monitors, read_monitor), memory_utilisation)
