"""Training denoises: a few hundred CPU steps of the real loop raise PSNR well above the input.

Generated piecewise-smooth pictures (gradients, stripes, discs) get Gaussian noise of sigma 25
(float, unclipped, as the pipeline's). Four train through `training.loop.train` in each
framework for each arch; a fifth, never trained on, is denoised whole through the evaluation
code. The check is `assert_denoises`: the prediction must beat the noisy input's PSNR by
MIN_GAIN_DB. The identity test shows that check can fail: a "model" that returns its input
does not pass it. Every method trains through the same loop: N2V and N2V2 on the noisy
pictures alone, N2N against a second noise realisation, N2C against the clean pictures.

Cheap settings, not the recipes': 32 x 32 patches (64 x 64 for n2n_unet: its fifth pooling
would meet a 2 x 2 map, which Jittor's pooling refuses), batch 4 (2), Adam lr 1e-3, constant
schedule, and 2 % masked pixels (about 20 per 32 x 32 patch instead of the paper's 0.198 %,
i.e. ~2), so each step carries more signal. The CSBDeep U-Nets (batch norm) need more steps
than the port's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from n2v_repro.config import METHOD_TARGETS, PipelineConfig
from n2v_repro.data.patches import pixel_stats, tile_image, write_train_source
from n2v_repro.evaluation.metrics import psnr
from n2v_repro.evaluation.predict import denoise
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import load_weights, save_valid_tiles, write_train_stats
from n2v_repro.models.initialisation import make_init_weights
from n2v_repro.training.loop import TrainJob, train

SIGMA = 25
SIZE = 96
MIN_GAIN_DB = 3.0
PATCH = {"n2n_unet": 64, "n2v_unet32": 32, "n2v2_unet32": 32}
BATCH = {"n2n_unet": 2, "n2v_unet32": 4, "n2v2_unet32": 4}
# Steps per arch: enough for a clear gain on these pictures, measured on this 2-core CPU
# (torch: n2n_unet +8.9 dB after 150 steps of 4 x 32^2, n2v_unet32 +7.4 after 600; on an
# AMD EPYC, n2v2_unet32 +6.4 after 600, +4.2 after 300, 19 s). The
# paper's n2v_unet is the same U-Net built by the same code at twice the width (models.spec);
# training it here took 100-150 s per framework for no code path n2v_unet32 does not run, so
# its computations are checked by the parity gate instead.
STEPS = {"n2n_unet": 150, "n2v_unet32": 600, "n2v2_unet32": 600}
INIT = {
    "n2n_unet": "torch_default",
    "n2v_unet32": "glorot_uniform",
    "n2v2_unet32": "glorot_uniform",
}
# Learning from a target that is not the input itself needs fewer steps (every pixel counts).
METHOD_STEPS = {"n2c": 150, "n2n": 200}


def picture(rng: np.random.Generator) -> np.ndarray:
    """A uint8 SIZE x SIZE picture: a ramp, stripes and four discs of random grey."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    image = 60 + 100 * cols / SIZE + 40 * np.sin(2 * np.pi * rows / rng.uniform(20, 40))
    for _ in range(4):
        centre_row, centre_col, radius = (
            rng.uniform(0, SIZE),
            rng.uniform(0, SIZE),
            rng.uniform(8, 25),
        )
        image[(rows - centre_row) ** 2 + (cols - centre_col) ** 2 < radius**2] = rng.uniform(0, 255)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pictures() -> dict:
    """Five clean pictures and two independent noisy versions: four to train on, one to test."""
    rng = np.random.default_rng(0)
    clean = [picture(rng) for _ in range(5)]
    noisy = [(c + rng.normal(0, SIGMA, c.shape)).astype(np.float32) for c in clean]
    noisy2 = [(c + rng.normal(0, SIGMA, c.shape)).astype(np.float32) for c in clean]
    return {"clean": clean, "noisy": noisy, "noisy2": noisy2}


def patch_folder(pictures: dict, folder: Path, patch: int, target: str = "noisy") -> dict:
    """Patch folder of the four training pictures, tiles of the fifth; the test picture.

    `target` (TrainConfig.target) adds the training targets: clean or noisy2 pictures.
    """
    clean, noisy = pictures["clean"], pictures["noisy"]
    train_images = {str(k): noisy[k] for k in range(4)}
    write_train_source(train_images, folder / "train.npy", folder / "train_index.csv")
    if target != "noisy":
        targets = {str(k): pictures[target][k].astype(np.float32) for k in range(4)}
        write_train_source(targets, folder / "train_target.npy", folder / "target_index.csv")
    stats = pixel_stats(train_images)
    write_train_stats(folder / "train_stats.json", stats)
    tiles = tile_image(noisy[4], patch)
    save_valid_tiles(
        folder / "valid_tiles.npz",
        {
            "noisy": tiles,
            "clean": tile_image(clean[4], patch),
            "ids": np.array(["4"] * len(tiles)),
            "noisy2": tile_image(pictures["noisy2"][4], patch),
        },
    )
    return {"folder": folder, "clean": clean[4], "noisy": noisy[4], **stats}


@pytest.fixture(scope="module")
def data(pictures: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return patch_folder(pictures, tmp_path_factory.mktemp("patches"), 32)


def assert_denoises(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray) -> float:
    """Assert the prediction beats the noisy input by MIN_GAIN_DB; return the gain."""
    gain = psnr(clean, denoised) - psnr(clean, noisy)
    assert gain >= MIN_GAIN_DB, (
        f"PSNR {psnr(clean, denoised):.2f} dB is only {gain:+.2f} dB over the noisy input's "
        f"{psnr(clean, noisy):.2f} dB; need +{MIN_GAIN_DB}"
    )
    return gain


class IdentityModel:
    """A "network" that returns its input: what a broken model or loss would amount to."""

    stride = 4
    device = "cpu"

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return inputs.copy()


def test_a_model_returning_its_input_fails_the_check(data: dict) -> None:
    prediction = denoise(IdentityModel(), data["noisy"], data["mean"], data["std"])
    np.testing.assert_allclose(prediction, data["noisy"], atol=1e-3)
    with pytest.raises(AssertionError, match="only"):
        assert_denoises(data["clean"], data["noisy"], prediction)


def train_and_denoise(
    pictures: dict, tmp_path: Path, framework: str, arch: str, method: str = "n2v"
) -> float:
    if framework == "jittor" and importlib.util.find_spec("jittor") is None:
        pytest.skip("jittor is not installed")
    from n2v_repro.backends.registry import make_backend

    (tmp_path / "patches").mkdir()
    data = patch_folder(pictures, tmp_path / "patches", PATCH[arch], METHOD_TARGETS[method])

    init = tmp_path / "init.npz"
    save_npz(init, make_init_weights(arch, 1, INIT[arch]))
    settings = {
        "method": method,
        "arch": arch,
        "epochs": 1,
        "steps_per_epoch": METHOD_STEPS.get(method, STEPS[arch]),
        "batch_size": BATCH[arch],
        "device": "cpu",
        "optimizer": {"lr": 1e-3},
        "schedule": {"kind": "constant"},
        "masking": {"percentage": 2.0},
        "init": INIT[arch],
        # N2C and N2N validate on held-out training images (here: the fifth picture's tiles).
        "validation": {"scheme": "heldout_train"},
    }
    job = TrainJob(
        framework=framework,
        patch_dir=data["folder"],
        init_weights=init,
        out_dir=tmp_path / "out",
        checkpoint=tmp_path / "checkpoint" / "checkpoint.npz",
        train=PipelineConfig.from_mapping({"train": settings}).train,
        patch_size=PATCH[arch],
        seed=1,
        # One thread: on a shared 2-core machine two spinning threads slow down tenfold.
        threads=1,
    )
    state = train(job).state
    assert state.history[-1]["valid_psnr"] > psnr(data["clean"], data["noisy"])  # tiles too
    backend = make_backend(framework, arch, device="cpu", threads=1)
    backend.load_weights(load_weights(tmp_path / "out" / "last.npz"))
    prediction = denoise(backend, data["noisy"], data["mean"], data["std"])
    return assert_denoises(data["clean"], data["noisy"], prediction)


@pytest.mark.parametrize("arch", ["n2n_unet", "n2v_unet32"])
def test_torch_denoises(pictures: dict, tmp_path: Path, arch: str) -> None:
    assert train_and_denoise(pictures, tmp_path, "torch", arch) >= MIN_GAIN_DB


@pytest.mark.jittor
@pytest.mark.parametrize("arch", ["n2n_unet", "n2v_unet32"])
def test_jittor_denoises(pictures: dict, tmp_path: Path, arch: str) -> None:
    assert train_and_denoise(pictures, tmp_path, "jittor", arch) >= MIN_GAIN_DB


@pytest.mark.parametrize("method", ["n2c", "n2n"])
def test_supervised_and_noise2noise_denoise(pictures: dict, tmp_path: Path, method: str) -> None:
    assert train_and_denoise(pictures, tmp_path, "torch", "n2v_unet32", method) >= MIN_GAIN_DB


def test_n2v2_denoises(pictures: dict, tmp_path: Path) -> None:
    # N2V2: its own U-Net (blur-pool, no top skip, no residual) and median replacement.
    assert train_and_denoise(pictures, tmp_path, "torch", "n2v2_unet32", "n2v2") >= MIN_GAIN_DB
