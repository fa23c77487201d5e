"""The figures, drawn from a fake results tree: they exist, are PNGs, are not blank, and have
one panel column per sigma / one row per example image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_results import run_dir, write_bm3d, write_parity, write_results_tree
from PIL import Image

from n2v_repro import parity, paths
from n2v_repro.backends.registry import FRAMEWORK_TITLES
from n2v_repro.io.formats import read_history, read_per_image
from n2v_repro.report import figures, figures_eval
from n2v_repro.report.figures import FRAMEWORK_COLOURS, make_training_figures
from n2v_repro.report.figures_eval import (
    make_final_psnr_figure,
    make_parity_figure,
    make_qualitative_figure,
    read_parity,
)

IDS = [f"im{i}" for i in range(6)]


def _tree(root: Path, frameworks: tuple[str, ...], sigmas: tuple[int, ...], **kwargs) -> Path:
    write_results_tree(root, IDS, n_valid=2, frameworks=frameworks, sigmas=sigmas, **kwargs)
    return root


def _runs(root: Path, name: str, frameworks, sigmas, seeds=(1,), recipe="port") -> dict:
    return {
        (recipe, f, s, seed): run_dir(root, recipe, f, s, seed) / name
        for f in frameworks
        for s in sigmas
        for seed in seeds
    }


def _picture(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"), dtype=np.float64)


def _assert_drawn(path: Path) -> np.ndarray:
    picture = _picture(path)
    assert picture.std() > 10, f"{path.name} looks blank"
    return picture


def _training_figures(root: Path, frameworks, sigmas) -> dict[str, Path]:
    out = {
        "loss_curves": root / "fig" / "loss_curves.png",
        "valid_metrics": root / "fig" / "valid_psnr_ssim.png",
        "valid_psnr_time": root / "fig" / "valid_psnr_time.png",
        "epoch_time": root / "fig" / "epoch_time.png",
        "memory_utilisation": root / "fig" / "memory_utilisation.png",
    }
    make_training_figures(
        histories=_runs(root, "model/history.csv", frameworks, sigmas),
        monitors=_runs(root, "model/monitor.csv", frameworks, sigmas),
        validation="heldout_train",
        **out,
    )
    return out


def test_training_figures_have_a_panel_column_per_sigma(tmp_path: Path) -> None:
    frameworks = ("torch", "jittor")
    one = _training_figures(_tree(tmp_path / "one", frameworks, (25,)), frameworks, (25,))
    three_sigmas = (10, 25, 50)
    three = _training_figures(
        _tree(tmp_path / "three", frameworks, three_sigmas), frameworks, three_sigmas
    )
    for name in one:
        narrow, wide = _assert_drawn(one[name]), _assert_drawn(three[name])
        assert wide.shape[1] > 2.3 * narrow.shape[1], name
        assert wide.shape[0] == pytest.approx(narrow.shape[0], rel=0.15), name


def test_valid_psnr_time_has_a_line_per_framework_and_seed_against_minutes(
    tmp_path: Path, monkeypatch
) -> None:
    frameworks, sigmas, seeds = ("torch", "jittor"), (15, 25), (1, 2)
    root = _tree(tmp_path, frameworks, sigmas, seeds=seeds)
    drawn = []
    save = figures.save_figure

    def keep(fig, path, dpi=120):
        drawn.append(
            [
                [(line.get_color(), line.get_xdata(), line.get_ydata()) for line in ax.lines]
                for ax in fig.axes
            ]
        )
        save(fig, path, dpi)

    monkeypatch.setattr(figures, "save_figure", keep)
    histories = _runs(root, "model/history.csv", frameworks, sigmas, seeds)
    path = tmp_path / "valid_psnr_time.png"
    figures.plot_valid_psnr_time(figures.read_runs(histories, read_history), path)
    _assert_drawn(path)
    [panels] = drawn
    assert len(panels) == len(sigmas)
    for panel, sigma in zip(panels, sigmas, strict=True):
        assert len(panel) == len(frameworks) * len(seeds)
        for framework in frameworks:
            lines = [line for line in panel if line[0] == FRAMEWORK_COLOURS[framework]]
            assert len(lines) == len(seeds), framework
            for (_, x, y), seed in zip(lines, seeds, strict=True):
                history = read_history(histories[("port", framework, sigma, seed)])
                # x: the run's cumulative wall time in minutes; y: its per-epoch PSNR
                np.testing.assert_allclose(x, history["wall_time_s"] / 60)
                np.testing.assert_allclose(y, history["valid_psnr"])
    # jittor's fake epochs are slower: at equal epochs it is further right.
    jittor_end = max(line[1][-1] for line in panels[0] if line[0] == FRAMEWORK_COLOURS["jittor"])
    torch_end = max(line[1][-1] for line in panels[0] if line[0] == FRAMEWORK_COLOURS["torch"])
    assert jittor_end > torch_end


def test_final_psnr_with_one_framework(tmp_path: Path) -> None:
    root = _tree(tmp_path, ("jittor",), (25, 50))
    output = tmp_path / "final_psnr.png"
    make_final_psnr_figure(
        summaries=list(_runs(root, "eval/summary.json", ("jittor",), (25, 50)).values()),
        output=output,
        html_output=tmp_path / "final_psnr.html",
    )
    _assert_drawn(output)
    page = (tmp_path / "final_psnr.html").read_text()
    assert page.count('src="data:image/png;base64,') == 1 and "Krull" in page


def test_final_psnr_has_a_panel_per_recipe(tmp_path: Path) -> None:
    recipes = {"paper": "heldout_train", "port": "bsd68_split"}
    root = _tree(tmp_path, ("torch", "jittor"), (25,), recipes=recipes, seeds=(1, 2))
    widths = {}
    for names in (["port"], ["paper", "port"]):
        summaries = [
            path
            for recipe in names
            for path in _runs(
                root, "eval/summary.json", ("torch", "jittor"), (25,), (1, 2), recipe
            ).values()
        ]
        output = tmp_path / f"final_{len(names)}.png"
        make_final_psnr_figure(
            summaries=summaries,
            output=output,
            html_output=tmp_path / "final.html",
            recipe_order=names,
        )
        widths[len(names)] = _assert_drawn(output).shape[1]
    assert widths[2] > 1.5 * widths[1]


@pytest.mark.parametrize("frameworks", [("torch", "jittor"), ("torch",)])
def test_qualitative_grid_rows_and_columns(tmp_path: Path, frameworks: tuple[str, ...]) -> None:
    root = _tree(tmp_path, frameworks, (25,))
    pictures = {}
    for n_images in (1, 3):
        output = tmp_path / f"qualitative_{n_images}.png"
        make_qualitative_figure(
            sigma=25,
            clean_pngs=sorted((root / "resources/gray/bsd68").glob("*.png")),
            noisy_npz=root / "resources/noisy/sigma25/bsd68.npz",
            split_csv=root / "resources/bsd68_split.csv",
            denoised_dirs={
                f: run_dir(root, "port", f, 25, 1) / "eval/denoised" for f in frameworks
            },
            per_image_csvs={
                f: run_dir(root, "port", f, 25, 1) / "eval/per_image.csv" for f in frameworks
            },
            n_images=n_images,
            output=output,
            recipe="port",
            seed=1,
        )
        pictures[n_images] = _assert_drawn(output)
    assert pictures[3].shape[0] > 2.3 * pictures[1].shape[0]


def test_parity_figure_reads_each_checks_measure_over_its_threshold(tmp_path: Path) -> None:
    records = write_parity(tmp_path, tolerance=1e-4)
    errors = read_parity(tmp_path / "results/parity/parity.csv")
    assert list(errors) == [parity.run_name(record) for record in records]
    for record in records:
        bars = errors[parity.run_name(record)]
        # One bar per check: Jittor's measure at the layer the check names, over its threshold.
        assert list(bars) == list(figures_eval.PARITY_CHECKS.values())
        for check, label in figures_eval.PARITY_CHECKS.items():
            ratio = record[f"{check}_error_jittor"] / record[f"{check}_threshold"]
            assert bars[label] == pytest.approx(ratio, rel=1e-12) and 0 < ratio < 1
    output = tmp_path / "parity.png"
    make_parity_figure(
        parity_csv=tmp_path / "results/parity/parity.csv",
        parity_json=tmp_path / "results/parity/parity.json",
        output=output,
    )
    _assert_drawn(output)


def test_parity_figure_marks_a_failing_arch_in_red(tmp_path: Path, monkeypatch) -> None:
    from fake_results import save_fake_parity

    paths = {}
    for arch, noise in (("n2n_unet", 1e-7), ("rednet10", 1e-2)):  # rednet10 fails
        paths[arch] = save_fake_parity(tmp_path / "parity", arch, jittor_scale=noise)
    torch_paths, jittor_paths, references = zip(*paths.values(), strict=True)
    parity.compare_frameworks(
        list(paths), {"torch": torch_paths, "jittor": jittor_paths}, references,
        tmp_path / "parity.json", tmp_path / "parity.csv", tolerance=1e-4,
    )  # fmt: skip
    assert figures_eval.failed_archs(tmp_path / "parity.csv") == ["rednet10 (jittor)"]
    drawn = []
    real_save = figures_eval.save_figure

    def keep(fig, path, **kwargs):
        drawn.append(fig)
        real_save(fig, path, **kwargs)

    monkeypatch.setattr(figures_eval, "save_figure", keep)
    output = tmp_path / "parity.png"
    make_parity_figure(
        parity_csv=tmp_path / "parity.csv", parity_json=tmp_path / "parity.json", output=output
    )
    _assert_drawn(output)
    (ax,) = drawn[0].axes
    labels = {t.get_text(): t.get_color() for t in ax.get_legend().get_texts()}
    assert labels["rednet10 (jittor): FAILED"] == figures_eval.FAILED_COLOUR
    assert labels["n2n_unet (jittor)"] != figures_eval.FAILED_COLOUR
    banner = [t for t in ax.texts if t.get_text().startswith("FAILED")]
    assert [t.get_text() for t in banner] == ["FAILED: rednet10 (jittor)"]


# --- one crop, every method ---------------------------------------------------------------------


@pytest.mark.parametrize("frameworks", [("torch", "jittor"), ("jittor",)])
def test_methods_figure_shows_each_method_in_order_per_framework(
    tmp_path: Path, frameworks: tuple[str, ...]
) -> None:
    # Run order is not the figure's: N2V2, N2V, N2C; the figure goes BM3D, N2C, N2N, N2V, N2V2.
    methods = {"void2": "n2v2", "void": "n2v", "sup": "n2c"}
    root = _tree(tmp_path, frameworks, (25,), recipes=dict.fromkeys(methods, "heldout_train"))
    write_bm3d(root, 25)
    runs = [(r, f, 25, 1) for r in methods for f in frameworks]
    bm3d = root / paths.BM3D_EVAL_DIR.format(sigma=25)
    output = tmp_path / "methods.png"
    layout = figures_eval.make_methods_figure(
        sigma=25,
        clean_pngs=sorted((root / "resources/gray/bsd68").glob("*.png")),
        noisy_npz=root / "resources/noisy/sigma25/bsd68.npz",
        split_csv=root / "resources/bsd68_split.csv",
        runs=runs,
        denoised_dirs=[run_dir(root, *run) / "eval/denoised" for run in runs],
        per_image_csvs=[run_dir(root, *run) / "eval/per_image.csv" for run in runs],
        recipe_methods=methods,
        weights="last",
        output=output,
        bm3d_denoised=bm3d / "denoised",
        bm3d_per_image=bm3d / "per_image.csv",
    )
    assert len(layout) == len(frameworks)
    image_id = figures_eval.method_figure_image(root / "resources/bsd68_split.csv")
    assert image_id == "im2"  # the split's first test image (im0, im1 are its valid images)
    for row, framework in zip(layout, frameworks, strict=True):
        names = [title.split(":")[0] for title in row]
        title = FRAMEWORK_TITLES[framework]
        assert names == ["noisy", "BM3D", f"N2C {title}", f"N2V {title}",
                         f"N2V2 {title}", "clean"]  # fmt: skip
        # Each title's PSNR is that image's in the run's own per_image.csv.
        scores = read_per_image(run_dir(root, "void", framework, 25, 1) / "eval/per_image.csv")
        expected = next(r["psnr"] for r in scores if r["id"] == image_id and r["weights"] == "last")
        assert row[3].endswith(f"{expected:.2f} dB")
    picture = _assert_drawn(output)
    # Six panels side by side: much wider than tall, a panel row per framework.
    assert picture.shape[1] > 4 * picture.shape[0] / len(frameworks)


def test_methods_figure_crop_is_centred_and_clamped() -> None:
    rows, cols = figures_eval.crop_window((321, 481))
    assert (rows.start, rows.stop, cols.start, cols.stop) == (96, 224, 176, 304)
    rows, cols = figures_eval.crop_window((40, 56))
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 40, 0, 56)
