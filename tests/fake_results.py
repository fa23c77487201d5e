"""A small, fake but well-formed results tree (docs/architecture.md formats) for the tests of
the tables, the figures and the report. Numbers are made up; the evaluation outputs are made
by the real `run_evaluation` over a fake backend, so they have exactly the real layout.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from n2v_repro.evaluation.predict import run_evaluation

# Gain of the fake "network" per framework (prediction = mean + gain * (noisy - mean)):
# different gains give the two frameworks different scores, as real runs would.
FAKE_GAIN = {"torch": 0.55, "jittor": 0.6}
HISTORY_HEADER = [
    *("epoch", "lr", "train_loss", "valid_loss", "valid_psnr", "valid_ssim"),
    *("epoch_time_s", "patches_per_s", "wall_time_s"),
]


class FakeBackend:
    """predict = gain * x + position_bias * column index; `gain` comes from the weights.

    With `position_bias` the output depends on where a pixel sits in the padded input, so it
    is not equivariant to flips/rotations: this is what lets a test see TTA at work.
    """

    def __init__(self, stride: int = 16, position_bias: float = 0.0) -> None:
        self.stride = stride
        self.device = "cpu"
        self.position_bias = position_bias
        self.gain = 1.0
        self.input_shapes: list[tuple[int, ...]] = []
        self.synchronized = 0

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.gain = float(weights["gain"])

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        assert inputs.dtype == np.float32 and inputs.ndim == 4
        assert inputs.shape[2] % self.stride == 0 and inputs.shape[3] % self.stride == 0
        self.input_shapes.append(inputs.shape)
        ramp = np.arange(inputs.shape[3], dtype=np.float32)[None, None, None, :]
        return (self.gain * inputs + self.position_bias * ramp).astype(np.float32)

    def synchronize(self) -> None:
        self.synchronized += 1


def smooth_image(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A uint8 picture with structure (gradients and a disc), so denoising has something to keep."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    disc = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) < (min(shape) / 4) ** 2
    picture = 60 + 120 * xx / shape[1] + 50 * disc + rng.normal(0, 3, shape)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


def write_data(root: Path, ids: Sequence[str], n_valid: int, sigmas: Sequence[int]) -> None:
    """Clean PNGs, the split, noisy BSD68 and training statistics per sigma."""
    rng = np.random.default_rng(0)
    clean = {}
    for index, image_id in enumerate(ids):
        shape = (40, 56) if index % 3 else (56, 40)  # landscape and portrait
        clean[image_id] = smooth_image(shape, rng)
        path = root / "resources" / "gray" / "bsd68" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(clean[image_id]).save(path)
    split = root / "resources" / "bsd68_split.csv"
    with open(split, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "subset"])
        writer.writerows([i, "valid" if n < n_valid else "test"] for n, i in enumerate(ids))
    for sigma in sigmas:
        noisy = {
            i: (c + rng.normal(0, sigma, c.shape)).astype(np.float32) for i, c in clean.items()
        }
        folder = root / "resources" / "noisy" / f"sigma{sigma}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "bsd68.npz", **noisy)
        stats = root / "resources" / "patches" / f"sigma{sigma}" / "train_stats.json"
        stats.parent.mkdir(parents=True, exist_ok=True)
        stats.write_text(json.dumps({"mean": 110.0, "std": 60.0}))


def write_training(
    root: Path,
    framework: str,
    sigma: int,
    epochs: int = 4,
    weights: dict[str, np.ndarray] | None = None,
) -> None:
    """history.csv, monitor.csv, last/best weights and the train job's benchmark.

    The weights are `weights` when given (real network weights), else a fake `gain` for
    FakeBackend.
    """
    folder = root / "results" / "models" / framework / f"sigma{sigma}"
    folder.mkdir(parents=True, exist_ok=True)
    slow = 1.0 if framework == "torch" else 1.2
    with open(folder / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_HEADER)
        wall = 0.0
        for epoch in range(1, epochs + 1):
            epoch_time = (30.0 if epoch == 1 else 10.0 + epoch) * slow
            wall += epoch_time
            writer.writerow(
                [epoch, 1e-4, 1.0 / epoch, 1.2 / epoch**0.5, 20 + epoch, 0.5 + 0.05 * epoch]
                + [epoch_time, 64 * 4 / epoch_time, wall]
            )
    with open(folder / "monitor.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["time_s", "cpu_percent", "rss_mib", "gpu_util_percent", "gpu_mem_mib"]
            + ["framework_mem_mib"]
        )
        for step in range(20):
            writer.writerow([0.5 * step, 150 + step, 800 + 10 * step * slow, "", "", ""])
    for name, gain in (("last", FAKE_GAIN[framework]), ("best", FAKE_GAIN[framework] + 0.1)):
        np.savez(folder / f"{name}.npz", **(weights or {"gain": np.float32(gain)}))
    bench = root / "benchmarks" / "train" / framework / f"sigma{sigma}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{123.4 * slow}\t0:02:03\t900.1\t2000.0\t850.0\t860.0\t1.0\t2.0\t180.0\t220.0\n"
    )


def write_evaluation(root: Path, framework: str, sigma: int) -> dict:
    """per_image.csv, summary.json and denoised/ through the real evaluation code."""
    resources = root / "resources"
    models = root / "results" / "models" / framework / f"sigma{sigma}"
    out = root / "results" / "eval" / framework / f"sigma{sigma}"
    return run_evaluation(
        framework=framework,
        arch="n2n_unet",
        sigma=sigma,
        clean_pngs=sorted((resources / "gray" / "bsd68").glob("*.png")),
        noisy_npz=resources / "noisy" / f"sigma{sigma}" / "bsd68.npz",
        split_csv=resources / "bsd68_split.csv",
        stats_json=resources / "patches" / f"sigma{sigma}" / "train_stats.json",
        weight_files={"last": models / "last.npz", "best": models / "best.npz"},
        per_image_csv=out / "per_image.csv",
        summary_json=out / "summary.json",
        denoised_dir=out / "denoised",
        backend=FakeBackend(),
    )


def write_parity(root: Path, tolerance: float = 1e-4) -> None:
    folder = root / "results" / "parity"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "parity.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "forward_rel_error", "grad_rel_error_max", "param_rel_error_max"])
        writer.writerow(["n2n_unet", 3e-7, 2.5e-6, 2.8e-2])
        writer.writerow(["n2v_unet", 4e-7, 1.0e-6, 0.0])
    (folder / "parity.json").write_text(json.dumps({"tolerance": tolerance, "passed": True}))


def write_results_tree(
    root: Path,
    ids: Sequence[str],
    n_valid: int,
    frameworks: Sequence[str] = ("torch", "jittor"),
    sigmas: Sequence[int] = (25,),
) -> None:
    """Every input of the tables, figures and report for these frameworks and sigmas."""
    write_data(root, ids, n_valid, sigmas)
    for framework in frameworks:
        for sigma in sigmas:
            write_training(root, framework, sigma)
            write_evaluation(root, framework, sigma)
    if set(frameworks) >= {"torch", "jittor"}:
        write_parity(root)
