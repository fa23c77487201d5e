"""Evaluation figures: test PSNR against the paper, denoised examples, framework parity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.backends.registry import FRAMEWORK_TITLES
from n2v_repro.evaluation.predict import to_uint8
from n2v_repro.io.atomic import atomic_open
from n2v_repro.io.formats import (
    load_noisy_set,
    read_gray_png,
    read_parity_csv,
    read_parity_json,
    read_per_image,
    read_split,
)
from n2v_repro.parity import FACTOR, FLOOR, run_name
from n2v_repro.report.figures import framework_colour, frameworks_of, panel_grid, save_figure
from n2v_repro.report.html_pages import render_figure
from n2v_repro.report.references import (
    PAPER_CITATION,
    PAPER_SHORT,
    REFERENCE_CODE_CITATION,
    paper_psnr,
    reference_code_psnr,
)
from n2v_repro.report.tables import (
    METHOD_LABELS,
    METHOD_ORDER,
    REPORTED_TEST_SET,
    psnr_ssim_rows,
    read_summaries,
)

# Horizontal offset of each framework's marker at a sigma, so error bars do not overlap.
FRAMEWORK_OFFSET = {"torch": -0.6, "jittor": 0.6, "jittor-exactbn": 1.8}
# The parity figure's bars: each check's named layer, Jittor's measure over its threshold.
PARITY_CHECKS = {"forward": "forward (layer)", "grad": "gradient (layer)", "adam": "Adam"}


# --- final PSNR -----------------------------------------------------------------------------


def plot_final_psnr(
    rows: Sequence[Mapping[str, Any]], path: str | Path, recipe_order: Sequence[str] = ()
) -> None:
    """Test PSNR by sigma, one panel per recipe on its reported test set (`REPORTED_TEST_SET`).

    `rows` are `tables.psnr_ssim_rows`; error bars are the standard deviation over seeds.
    """
    present = {r["recipe"] for r in rows}
    recipes = [r for r in recipe_order if r in present] + sorted(present - set(recipe_order))
    fig, axes = panel_grid(1, max(1, len(recipes)))
    for ax, recipe in zip(axes[0], recipes, strict=False):
        mine = [r for r in rows if r["recipe"] == recipe]
        test_set = REPORTED_TEST_SET.get(mine[0]["validation"], "bsd68")
        mine = [r for r in mine if r["test_set"] == test_set]
        sigmas = sorted({r["sigma"] for r in mine})
        noisy = {}
        for framework in frameworks_of((r["recipe"], r["framework"], r["sigma"], 0) for r in mine):
            for weights, filled in (("last", True), ("best", False)):
                series = sorted(
                    (r for r in mine if r["framework"] == framework and r["weights"] == weights),
                    key=lambda r: r["sigma"],
                )
                if not series:
                    continue
                for r in series:
                    noisy[r["sigma"]] = r["noisy_psnr"]
                colour = framework_colour(framework)
                ax.errorbar(
                    [r["sigma"] + FRAMEWORK_OFFSET.get(framework, 0.0) for r in series],
                    [r["psnr_mean"] for r in series],
                    yerr=[r["psnr_sd_seeds"] or 0.0 for r in series],
                    fmt="o-" if filled else "s:",
                    color=colour,
                    markerfacecolor=colour if filled else "white",
                    capsize=3,
                    label=f"{FRAMEWORK_TITLES[framework]} ({weights} weights)",
                )
        noisy = {s: v for s, v in noisy.items() if v is not None}
        if noisy:
            ax.plot(list(noisy), list(noisy.values()), "x--", color="grey", label="noisy input")
        references = [(s, paper_psnr(recipe, test_set, s)) for s in sigmas]
        references = [(s, v) for s, v in references if v is not None]
        if references:
            ax.plot(
                *zip(*references, strict=True),
                "*",
                color="black",
                markersize=14,
                label=f"paper N2V ({PAPER_SHORT})",
            )
        for weights, marker in (("best", "4"), ("last", "3")):
            code = [(s, reference_code_psnr(recipe, test_set, s, weights)) for s in sigmas]
            code = [(s, v) for s, v in code if v is not None]
            if code:
                ax.plot(
                    *zip(*code, strict=True),
                    marker,
                    color="black",
                    markersize=12,
                    label=f"reference code, {weights}",
                )
        where = {"bsd68": "all BSD68", "bsd68_test": "BSD68 test half"}[test_set]
        ax.set_title(f"recipe {recipe}: {where}")
        ax.set_xlabel("noise σ (grey levels)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_xticks(sigmas)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
    fig.suptitle("Test PSNR by recipe and noise level (mean ± sd over seeds)")
    save_figure(fig, path)


FINAL_PSNR_CAPTION = (
    "Test PSNR by recipe and noise level, each recipe on the test images that did not choose "
    "its weights (all of BSD68 after validation on held-out training images; the test half "
    "after validation on the BSD68 valid half). Mean over seeds of the mean over images, error "
    "bars the standard deviation over seeds. Filled markers: last-epoch weights; hollow: "
    "best-validation weights; grey crosses: the noisy input. Only the paper recipe's panel "
    f"shows the published result (star, {PAPER_CITATION}) and the reference code's "
    f"(tri-markers, {REFERENCE_CODE_CITATION})."
)


def make_final_psnr_figure(
    *,
    summaries: Sequence[str | Path],
    output: str | Path,
    html_output: str | Path | None = None,
    recipe_order: Sequence[str] = (),
) -> None:
    """final_psnr.png, and optionally the same figure inlined in a standalone HTML page."""
    plot_final_psnr(psnr_ssim_rows(read_summaries(summaries)), output, recipe_order)
    if html_output is None:
        return
    page = render_figure("Test PSNR by noise level", output, FINAL_PSNR_CAPTION)
    with atomic_open(html_output, encoding="utf-8") as handle:
        handle.write(page)


# --- qualitative ----------------------------------------------------------------------------


def read_last_psnr(per_image_csv: str | Path) -> dict[tuple[str, str], float]:
    """(weights, id) -> PSNR from a per_image.csv."""
    return {(r["weights"], r["id"]): r["psnr"] for r in read_per_image(per_image_csv)}


def make_qualitative_figure(
    *,
    sigma: int,
    clean_pngs: Sequence[str | Path],
    noisy_npz: str | Path,
    split_csv: str | Path,
    denoised_dirs: Mapping[str, str | Path],
    per_image_csvs: Mapping[str, str | Path],
    n_images: int,
    output: str | Path,
    recipe: str = "",
    seed: int | None = None,
) -> None:
    """Grid: a row per test image, columns clean / noisy / each framework's last weights.

    Titles give the PSNR of the unclipped prediction (the reported metric), read from
    per_image.csv; the pictures are the clipped 8-bit PNGs. `denoised_dirs` and
    `per_image_csvs` map each framework to its evaluation's files at this sigma.
    """
    split = read_split(split_csv)
    ids = [i for i, subset in split.items() if subset == "test"][:n_images]
    clean_by_id = {Path(p).stem: Path(p) for p in clean_pngs}
    dirs = {framework: Path(d) for framework, d in denoised_dirs.items()}
    scores = {framework: read_last_psnr(p) for framework, p in per_image_csvs.items()}
    frameworks = frameworks_of((recipe, f, sigma, seed) for f in dirs)
    columns = ["clean", "noisy", *frameworks]
    fig, axes = panel_grid(len(ids), len(columns))
    noisy_set = load_noisy_set(noisy_npz)
    for row, image_id in enumerate(ids):
        first_scores = next(iter(scores.values()), {})
        noisy_psnr = first_scores.get(("noisy", image_id))
        panels = [
            (read_gray_png(clean_by_id[image_id]), f"{image_id} clean"),
            (to_uint8(noisy_set[image_id]), _titled("noisy", noisy_psnr)),
        ]
        for framework in frameworks:
            picture = read_gray_png(dirs[framework] / f"{image_id}.png")
            value = scores.get(framework, {}).get(("last", image_id))
            panels.append((picture, _titled(framework, value)))
        for ax, (picture, title) in zip(axes[row], panels, strict=True):
            ax.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(title, fontsize="medium")
            ax.set_axis_off()
    run = f"recipe {recipe}, " if recipe else ""
    run += f"seed {seed}, " if seed is not None else ""
    fig.suptitle(f"BSD68 test images, {run}σ = {sigma}: last weights, PSNR of each image")
    save_figure(fig, output, dpi=100)


def _titled(name: str, value: float | None) -> str:
    return name if value is None else f"{name}: {value:.2f} dB"


# --- every method on one crop --------------------------------------------------------------

# The crop's side in pixels (the whole image when it is smaller): large enough to show texture
# and edges, small enough that seven panels side by side stay legible.
METHOD_CROP = 128


def crop_window(shape: tuple[int, int], size: int = METHOD_CROP) -> tuple[slice, slice]:
    """Return a size x size window at the image's centre (clamped to the image)."""
    height, width = shape
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    return slice(top, top + h), slice(left, left + w)


def method_figure_image(split_csv: str | Path) -> str:
    """Pick the methods figure's image: the split's first test image, else its first.

    Every recipe scores the test images, whichever its validation scheme.
    """
    split = read_split(split_csv)
    tests = [i for i, subset in split.items() if subset == "test"]
    return (tests or list(split))[0]


def make_methods_figure(
    *,
    sigma: int,
    clean_pngs: Sequence[str | Path],
    noisy_npz: str | Path,
    split_csv: str | Path,
    runs: Sequence[Sequence[Any]],
    denoised_dirs: Sequence[str | Path],
    per_image_csvs: Sequence[str | Path],
    recipe_methods: Mapping[str, str],
    weights: str,
    output: str | Path,
    bm3d_denoised: str | Path | None = None,
    bm3d_per_image: str | Path | None = None,
    image_id: str | None = None,
) -> list[list[str]]:
    """One image crop, a row per framework: noisy, BM3D, each recipe by method, clean.

    `runs` are the (recipe, framework, sigma, seed) of `denoised_dirs` and `per_image_csvs`
    (one seed); `weights` are those of the denoised PNGs (eval.weights' first). Titles give
    each method's PSNR on the whole image (unclipped prediction, per_image.csv); pictures are
    the 8-bit PNGs. Returns each row's panel titles, the figure's layout.
    """
    image_id = image_id or method_figure_image(split_csv)
    clean_by_id = {Path(p).stem: Path(p) for p in clean_pngs}
    clean = read_gray_png(clean_by_id[image_id])
    window = crop_window(clean.shape)
    noisy = load_noisy_set(noisy_npz)[image_id]
    by_run = {
        (str(run[0]), str(run[1])): (Path(d), Path(c))
        for run, d, c in zip(runs, denoised_dirs, per_image_csvs, strict=True)
    }
    frameworks = frameworks_of((r, f, sigma, 0) for r, f in by_run)
    recipes = sorted(
        {r for r, _ in by_run if r in recipe_methods},
        key=lambda r: (
            METHOD_ORDER.index(recipe_methods[r]) if recipe_methods[r] in METHOD_ORDER else 99,
            list(recipe_methods).index(r),
        ),
    )
    shared = {m: sum(recipe_methods[r] == m for r in recipes) for m in recipe_methods.values()}

    def label(recipe: str) -> str:
        method = recipe_methods[recipe]
        name = METHOD_LABELS.get(method, method)
        return f"{name} ({recipe})" if shared[method] > 1 else name

    bm3d_panel = None
    if bm3d_denoised is not None:
        bm3d_psnr = read_last_psnr(bm3d_per_image) if bm3d_per_image is not None else {}
        bm3d_panel = (
            read_gray_png(Path(bm3d_denoised) / f"{image_id}.png"),
            _titled("BM3D", bm3d_psnr.get(("bm3d", image_id))),
        )
    n_cols = 2 + len(recipes) + (bm3d_panel is not None)
    fig, axes = panel_grid(max(1, len(frameworks)), n_cols)
    layout = []
    for row, framework in enumerate(frameworks or [None]):
        scores = (
            read_last_psnr(by_run[(recipes[0], framework)][1])
            if recipes and (recipes[0], framework) in by_run
            else {}
        )
        panels = [(to_uint8(noisy), _titled("noisy", scores.get(("noisy", image_id))))]
        if bm3d_panel is not None:
            panels.append(bm3d_panel)
        for recipe in recipes:
            files = by_run.get((recipe, framework))
            if files is None:
                panels.append((None, f"{label(recipe)}: no {FRAMEWORK_TITLES[framework]} run"))
                continue
            psnr_value = read_last_psnr(files[1]).get((weights, image_id))
            picture = read_gray_png(files[0] / f"{image_id}.png")
            panels.append(
                (picture, _titled(f"{label(recipe)} {FRAMEWORK_TITLES[framework]}", psnr_value))
            )
        panels.append((clean, "clean"))
        layout.append([title for _, title in panels])
        for ax, (picture, title) in zip(axes[row], panels, strict=True):
            if picture is not None:
                ax.imshow(picture[window], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(title, fontsize="medium")
            ax.set_axis_off()
    fig.suptitle(
        f"BSD68 {image_id}, σ = {sigma}, centre crop: each method ({weights} weights, first "
        "seed); PSNR of the whole image"
    )
    save_figure(fig, output, dpi=100)
    return layout


# --- parity ---------------------------------------------------------------------------------


def read_parity(parity_csv: str | Path) -> dict[str, dict[str, float]]:
    """{arch (framework): {check: Jittor's measure / its threshold}} from parity.csv; >1 fails.

    NaN where a check was not measured (an arch whose layers did not even match).
    """

    def ratio(row: dict[str, str], check: str) -> float:
        value, limit = row[f"{check}_error_jittor"], row[f"{check}_threshold"]
        return float(value) / float(limit) if value and limit else float("nan")

    return {
        run_name(row): {label: ratio(row, check) for check, label in PARITY_CHECKS.items()}
        for row in read_parity_csv(parity_csv)
    }


def failed_archs(parity_csv: str | Path) -> list[str]:
    """Return the `arch (framework)` rows of parity.csv whose `passed` column is not True."""
    return [run_name(row) for row in read_parity_csv(parity_csv) if row["passed"] != "True"]


FAILED_COLOUR = "#b00020"


def plot_parity(
    errors: Mapping[str, Mapping[str, float]],
    line: float,
    path: str | Path,
    failed: Sequence[str] = (),
    line_label: str = "threshold",
    ylabel: str = "Jittor's measure / its threshold",
):
    """Bars of each quantity per arch against a dashed `line`; a failing arch is FAILED in red."""
    quantities = list(dict.fromkeys(q for per_arch in errors.values() for q in per_arch))
    archs = list(errors)
    fig, axes = panel_grid(1, 1)
    ax = axes[0, 0]
    fig.set_size_inches(max(5.0, 1.2 * len(quantities) * max(1, len(archs))), 4.0)
    width = 0.8 / max(1, len(archs))
    positions = np.arange(len(quantities))
    values = [v for per_arch in errors.values() for v in per_arch.values()]
    positive = [v for v in values if v > 0] + [line]
    # Log scale: the axis starts a decade below the smallest error; exact zeros sit on it.
    bottom = 10.0 ** (np.floor(np.log10(min(positive))) - 1)
    for index, arch in enumerate(archs):
        offsets = positions + (index - (len(archs) - 1) / 2) * width
        raw = [errors[arch].get(q, np.nan) for q in quantities]
        label = f"{arch}: FAILED" if arch in failed else arch
        bars = ax.bar(offsets, [max(v, bottom) - bottom for v in raw], width, bottom, label=label)
        if arch in failed:
            for bar in bars:
                bar.set_edgecolor(FAILED_COLOUR)
                bar.set_linewidth(2.0)
        texts = [f"{v:.1e}" if v > 0 else ("0" if v == 0 else "—") for v in raw]
        ax.bar_label(bars, texts, fontsize="x-small")
    ax.axhline(line, color="black", linestyle="--", label=line_label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=bottom)
    ax.set_xticks(positions, [q.replace("_", " ") for q in quantities], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title("Framework parity against float64, identical weights and batches")
    if failed:
        ax.text(
            0.01,
            0.98,
            "FAILED: " + ", ".join(a for a in archs if a in failed),
            transform=ax.transAxes,
            color=FAILED_COLOUR,
            fontweight="bold",
            va="top",
        )
    ax.grid(axis="y", alpha=0.3)
    legend = ax.legend(fontsize="small")
    for text in legend.get_texts():
        if text.get_text().endswith(": FAILED"):
            text.set_color(FAILED_COLOUR)
            text.set_fontweight("bold")
    save_figure(fig, path)


def make_parity_figure(
    *, parity_csv: str | Path, parity_json: str | Path, output: str | Path
) -> None:
    """parity.png: each check's named measure over its threshold (parity.DEFINITION)."""
    tolerance = float(read_parity_json(parity_json)["tolerance"])
    label = (
        f"threshold ({FACTOR:g} x PyTorch float32's own error with the same formulas, at least "
        f"{FLOOR:g}; PyTorch's within {tolerance:g})"
    )
    plot_parity(read_parity(parity_csv), 1.0, output, failed_archs(parity_csv), label)
