"""Whole-image evaluation with a fake backend: geometry, normalisation, TTA, files."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from fake_results import FakeBackend, write_data
from PIL import Image

from n2v_repro.evaluation.metrics import psnr, ssim
from n2v_repro.evaluation.predict import (
    WARMUP_PASSES,
    EvalImage,
    denoise,
    dihedral,
    evaluate_model,
    inverse_dihedral,
    reflect_pad,
    run_evaluation,
    summarise,
)


def _images(n: int = 4, seed: int = 0) -> list[EvalImage]:
    rng = np.random.default_rng(seed)
    images = []
    for index in range(n):
        shape = (37, 50) if index % 2 else (50, 37)  # landscape and portrait, as BSD68
        clean = rng.integers(0, 256, size=shape, dtype=np.uint8)
        noisy = (clean + rng.normal(0, 25, shape)).astype(np.float32)
        images.append(EvalImage(f"img{index}", "test" if index < n // 2 else "valid", clean, noisy))
    return images


@pytest.mark.parametrize(
    ("shape", "stride", "padded_shape"),
    [((37, 50), 16, (48, 64)), ((32, 32), 16, (32, 32)), ((321, 481), 32, (352, 512))],
)
def test_reflect_pad_reaches_a_multiple_of_stride_and_crops_back(
    shape: tuple[int, int], stride: int, padded_shape: tuple[int, int]
) -> None:
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    padded, crop = reflect_pad(image, stride)
    assert padded.shape == padded_shape
    np.testing.assert_array_equal(padded[crop], image)


def test_reflect_pad_mirrors_without_repeating_the_edge() -> None:
    row = np.arange(5, dtype=np.float32)[None, :].repeat(2, 0)
    padded, crop = reflect_pad(row, 8)  # 5 -> 8 columns: 1 left, 2 right
    np.testing.assert_array_equal(padded[0], [1, 0, 1, 2, 3, 4, 3, 2])
    np.testing.assert_array_equal(padded[crop], row)


def test_the_eight_transforms_are_distinct_and_inverted() -> None:
    image = np.arange(16).reshape(4, 4)
    assert len({dihedral(image, i).tobytes() for i in range(8)}) == 8
    for index in range(8):
        oblong = np.arange(12).reshape(3, 4)
        np.testing.assert_array_equal(inverse_dihedral(dihedral(oblong, index), index), oblong)


def test_denoise_normalises_and_denormalises_and_does_not_clip() -> None:
    backend = FakeBackend()
    noisy = np.random.default_rng(1).normal(120, 60, (37, 50)).astype(np.float32)
    noisy[0, 0] = 300.0  # out of the 8-bit range: must survive
    np.testing.assert_allclose(denoise(backend, noisy, 110.0, 60.0), noisy, atol=1e-4)
    backend.gain = 0.0  # predicts 0 in normalised space = the training mean in grey levels
    np.testing.assert_allclose(denoise(backend, noisy, 110.0, 60.0), 110.0)
    assert backend.input_shapes == [(1, 1, 48, 64)] * 2


def test_tta_averages_the_eight_back_transformed_predictions() -> None:
    noisy = np.random.default_rng(2).normal(100, 30, (20, 30)).astype(np.float32)
    plain = denoise(FakeBackend(stride=4), noisy, 100.0, 30.0, tta=True)
    np.testing.assert_allclose(plain, noisy, atol=1e-3)  # equivariant model: TTA changes nothing

    biased = FakeBackend(stride=4, position_bias=1.0)
    single = denoise(biased, noisy, 100.0, 30.0)
    averaged = denoise(biased, noisy, 100.0, 30.0, tta=True)
    assert len(biased.input_shapes) == 1 + 8
    assert {s[2:] for s in biased.input_shapes[1:]} == {(20, 32), (32, 20)}
    # The bias is a ramp along the padded width; averaged over the 8 orientations it becomes
    # a nearly flat offset, far from the single prediction's ramp.
    assert np.ptp(averaged - noisy) < np.ptp(single - noisy) / 2


def test_evaluate_model_scores_noisy_and_every_weight_set() -> None:
    images = _images()
    backend = FakeBackend()
    weights = {"last": {"gain": np.float32(0.5)}, "best": {"gain": np.float32(1.0)}}
    result = evaluate_model(backend, weights, images, mean=120.0, std=50.0)

    assert [r["weights"] for r in result.rows] == ["noisy"] * 4 + ["last"] * 4 + ["best"] * 4
    for row, image in zip(result.rows[:4], images, strict=True):
        assert row["psnr"] == pytest.approx(psnr(image.clean, image.noisy))
        assert row["ssim"] == pytest.approx(ssim(image.clean, image.noisy))
        assert row["subset"] == image.subset
    # gain 1 reproduces the input, so "best" scores exactly like the noisy image
    for noisy_row, best_row in zip(result.rows[:4], result.rows[8:], strict=True):
        assert best_row["psnr"] == pytest.approx(noisy_row["psnr"], abs=1e-4)
    # gain 0.5 halves the deviation from the mean: check one image by hand
    expected = 0.5 * images[0].noisy + 0.5 * 120.0
    assert result.rows[4]["psnr"] == pytest.approx(psnr(images[0].clean, expected), abs=1e-4)
    np.testing.assert_allclose(result.denoised["img0"], expected, atol=1e-3)

    info = result.inference
    assert info["weights"] == "last" and info["device"] == "cpu" and info["images"] == 4
    assert info["images_per_s"] > 0 and info["megapixels_per_s"] > 0
    # warm-up passes per padded shape (two orientations), then one prediction per image and set
    assert len(backend.input_shapes) == 2 * WARMUP_PASSES + 4 + 4


def test_summarise_gives_both_test_sets_per_weights() -> None:
    rows = [
        {"id": "a", "subset": "test", "weights": "last", "psnr": 20.0, "ssim": 0.5},
        {"id": "b", "subset": "test", "weights": "last", "psnr": 30.0, "ssim": 0.7},
        {"id": "c", "subset": "valid", "weights": "last", "psnr": 40.0, "ssim": 0.9},
    ]
    summary = summarise(rows)
    assert summary["bsd68_test"]["last"] == pytest.approx(
        {"n": 2, "psnr_mean": 25.0, "psnr_std": 5.0, "ssim_mean": 0.6, "ssim_std": 0.1}
    )
    assert summary["bsd68"]["last"]["n"] == 3
    assert summary["bsd68"]["last"]["psnr_mean"] == pytest.approx(30.0)


def test_summarise_never_scores_best_weights_on_the_images_that_chose_them() -> None:
    rows = [
        {"id": i, "subset": subset, "weights": weights, "psnr": 25.0, "ssim": 0.6}
        for i, subset in (("a", "test"), ("b", "valid"))
        for weights in ("noisy", "last", "best")
    ]
    # BSD68 split: the best weights were chosen on "b", which is in bsd68 but not in bsd68_test.
    split = summarise(rows, "bsd68_split")
    assert set(split["bsd68"]) == {"noisy", "last"}
    assert set(split["bsd68_test"]) == {"noisy", "last", "best"}
    # Held-out training images chose them: every test set may show them.
    heldout = summarise(rows, "heldout_train")
    assert set(heldout["bsd68"]) == set(heldout["bsd68_test"]) == {"noisy", "last", "best"}
    with pytest.raises(ValueError, match="unknown validation scheme"):
        summarise(rows, "bsd68")


def _write_inputs(tmp_path: Path, images: list[EvalImage]) -> dict:
    gray = tmp_path / "gray"
    gray.mkdir()
    pngs = []
    for image in images:
        pngs.append(gray / f"{image.id}.png")
        Image.fromarray(image.clean).save(pngs[-1])
    np.savez(tmp_path / "noisy.npz", **{img.id: img.noisy for img in images})
    with open(tmp_path / "split.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "subset"])
        writer.writerows([img.id, img.subset] for img in images)
    (tmp_path / "stats.json").write_text(json.dumps({"mean": 120.0, "std": 50.0}))
    for name, gain in (("last", 0.5), ("best", 0.8)):
        np.savez(tmp_path / f"{name}.npz", gain=np.float32(gain))
    return {
        "clean_pngs": pngs,
        "noisy_npz": tmp_path / "noisy.npz",
        "split_csv": tmp_path / "split.csv",
        "stats_json": tmp_path / "stats.json",
        "weight_files": {"last": tmp_path / "last.npz", "best": tmp_path / "best.npz"},
    }


def _run(inputs: dict, out: Path, **settings) -> dict:
    """run_evaluation of the port recipe (BSD68 split) with FakeBackend, unless overridden."""
    defaults = {"framework": "torch", "arch": "n2n_unet", "sigma": 25, "recipe": "port",
                "seed": 7, "validation": "bsd68_split", "backend": FakeBackend()}  # fmt: skip
    return run_evaluation(
        **{**defaults, **settings},
        **inputs,
        per_image_csv=out / "per_image.csv",
        summary_json=out / "summary.json",
        denoised_dir=out / "denoised",
    )


def test_run_evaluation_writes_the_contract_files(tmp_path: Path) -> None:
    images = _images()
    out = tmp_path / "eval"
    summary = _run(_write_inputs(tmp_path, images), out)
    with open(out / "per_image.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["id", "subset", "weights", "psnr", "ssim"]
    assert len(rows) == 3 * len(images)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # bsd68_split: the best weights were chosen on the valid images, part of bsd68
    assert set(summary["test_sets"]["bsd68"]) == {"noisy", "last"}
    assert summary["test_sets"]["bsd68_test"]["last"]["n"] == 2
    assert (summary["recipe"], summary["seed"]) == ("port", 7)
    n_valid = sum(img.subset == "valid" for img in images)
    assert summary["validation"] == {
        "scheme": "bsd68_split",
        "images_in_test_set": {"bsd68_test": 0, "bsd68": n_valid},
    }
    assert summary["inference"]["device"] == "cpu"

    assert (out / "denoised").stat().st_mode & 0o755 == 0o755  # not mkdtemp's private mode
    written = sorted(p.name for p in (out / "denoised").iterdir())
    assert written == [f"{img.id}.png" for img in images]
    picture = np.asarray(Image.open(out / "denoised" / "img0.png"))
    expected = np.clip(np.rint(0.5 * images[0].noisy + 60.0), 0, 255)
    assert picture.dtype == np.uint8
    assert np.abs(picture.astype(int) - expected).max() <= 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_run_evaluation_names_a_missing_clean_image(tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path, _images())
    inputs["clean_pngs"] = inputs["clean_pngs"][1:]
    with pytest.raises(ValueError, match="img0"):
        _run(inputs, tmp_path / "eval")


# --- the real backends ------------------------------------------------------------------------


def _evaluate_init_weights(tmp_path: Path, framework: str, arch: str) -> dict:
    """run_evaluation with the real backend and seeded initial weights on small images."""
    from n2v_repro.models.initialisation import write_init_weights

    ids = [f"im{i}" for i in range(3)]
    write_data(tmp_path, ids, n_valid=1, sigmas=[25])
    write_init_weights(str(tmp_path / "init.npz"), arch, 123)
    inputs = {
        "clean_pngs": sorted((tmp_path / "resources/gray/bsd68").glob("*.png")),
        "noisy_npz": tmp_path / "resources/noisy/sigma25/bsd68.npz",
        "split_csv": tmp_path / "resources/bsd68_split.csv",
        "stats_json": tmp_path / "resources/patches/sigma25/train_stats.json",
        "weight_files": {"last": tmp_path / "init.npz"},
    }
    real = {"framework": framework, "arch": arch, "device": "cpu", "threads": 2, "backend": None}
    return _run(inputs, tmp_path / framework, recipe="paper", seed=123, validation="heldout_train",
                **real)  # fmt: skip


def test_torch_backend_evaluates_whole_images(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # n2v_unet32 (the paper's U-Net at half width) is residual: at initialisation its output
    # stays close to its input
    summary = _evaluate_init_weights(tmp_path, "torch", "n2v_unet32")
    scores = summary["test_sets"]["bsd68"]
    assert scores["last"]["n"] == 3
    assert scores["last"]["psnr_mean"] == pytest.approx(scores["noisy"]["psnr_mean"], abs=1.0)
    assert summary["inference"]["device"] == "cpu"
    assert len(list((tmp_path / "torch" / "denoised").iterdir())) == 3


@pytest.mark.slow
@pytest.mark.jittor
def test_jittor_and_torch_score_identical_weights_alike(tmp_path: Path) -> None:
    """Same weights, same images: the two frameworks' PSNRs agree to far below 0.01 dB."""
    if importlib.util.find_spec("jittor") is None:  # not imported: the backend prepares it
        pytest.skip("jittor is not installed")
    pytest.importorskip("torch")
    torch_scores = _evaluate_init_weights(tmp_path, "torch", "n2n_unet")["test_sets"]
    jittor_scores = _evaluate_init_weights(tmp_path, "jittor", "n2n_unet")["test_sets"]
    for test_set in ("bsd68", "bsd68_test"):
        torch_last, jittor_last = torch_scores[test_set]["last"], jittor_scores[test_set]["last"]
        assert jittor_last["psnr_mean"] == pytest.approx(torch_last["psnr_mean"], abs=1e-4)
        assert jittor_last["ssim_mean"] == pytest.approx(torch_last["ssim_mean"], abs=1e-5)
