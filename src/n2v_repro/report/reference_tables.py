"""The reference implementations in the report: settings and validation curves.

Their settings beside ours, and their validation curves beside ours (the accuracy and cost
rows are in `tables`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.backends.registry import FRAMEWORK_TITLES
from n2v_repro.io.formats import read_history, read_train_summary
from n2v_repro.references.registry import REFERENCE_TITLES
from n2v_repro.references.settings import comparison_rows
from n2v_repro.report.figures import framework_colour, panel_grid, save_figure
from n2v_repro.report.html_pages import Column, render_table
from n2v_repro.report.tables import write_csv, write_html

SETTINGS_COLUMNS = [
    Column("setting", "setting"),
    Column("ours", "ours (n2v_repro)"),
    Column("theirs", "reference"),
    Column("differs", "differs"),
]
SETTINGS_NOTE = (
    "Every setting of the reference's training beside the pipeline's for the same recipe. "
    "Where the library lets one set it (network depth, width, kernel, batch norm, residual; "
    "steps, batch size, patch size; masked percentage and window; learning rate), the reference "
    "got the recipe's value; the rest is the library's own, as its users run it. 'differs' "
    "marks each difference. The reference's values are what its adapter read back from the "
    "library's own configuration after training (its train_summary.json)."
)


def title_of(name: str) -> str:
    """Return a framework's or a reference's name for tables and legends."""
    return FRAMEWORK_TITLES.get(name) or REFERENCE_TITLES.get(name) or name


def make_settings_table(
    *, summary_json: str | Path, csv_path: str | Path, html_path: str | Path
) -> list[dict[str, Any]]:
    """Write one reference's settings beside ours (.csv, .html) from its train_summary.json."""
    summary = read_train_summary(summary_json)
    settings = summary["settings"]
    rows = comparison_rows(settings["ours"], settings["theirs"])
    versions = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("versions", {}).items()))
    write_csv(csv_path, SETTINGS_COLUMNS, rows)
    write_html(
        html_path,
        render_table(
            f"Settings: recipe {summary['recipe']}, ours and {summary['title']}",
            SETTINGS_COLUMNS,
            rows,
            [SETTINGS_NOTE, f"Reference environment: {versions}."],
            row_class=lambda row: "n2v-failed" if row["differs"] else None,
        ),
    )
    return rows


def plot_valid_loss(
    *, histories: Sequence[str | Path], runs: Sequence[Sequence[Any]], path: str | Path
) -> None:
    """Plot validation loss against patches trained, a panel per sigma, ours and references.

    `runs` are the (recipe, framework or reference, sigma, seed) of `histories`, in order.
    """
    if len(runs) != len(histories):
        raise ValueError(f"{len(runs)} runs for {len(histories)} histories")
    sigmas = sorted({int(run[2]) for run in runs})
    fig, axes = panel_grid(1, len(sigmas))
    for run, history_path in zip(runs, histories, strict=True):
        history = read_history(history_path)
        patches = np.cumsum(np.nan_to_num(history["patches_per_s"] * history["epoch_time_s"]))
        axis = axes[0, sigmas.index(int(run[2]))]
        name = str(run[1])
        axis.plot(
            patches / 1e3,
            history["valid_loss"],
            marker=".",
            color=framework_colour(name),
            label=f"{title_of(name)}, seed {run[3]}",
        )
    for axis, sigma in zip(axes[0], sigmas, strict=True):
        axis.set_title(f"σ = {sigma}")
        axis.set_xlabel("patches trained (thousands)")
        axis.set_ylabel("validation loss (masked-pixel MSE, normalised)")
        axis.legend(fontsize=8)
    save_figure(fig, path)
