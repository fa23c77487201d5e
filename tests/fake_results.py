"""A small, fake but well-formed results tree for the tests of the tables, figures and report.

Numbers are made up, but every file is written by the pipeline's own writers
(`n2v_repro.io.formats`, `run_evaluation`, `parity.compare_frameworks`), so it has exactly
the real layout.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from n2v_repro import parity, paths
from n2v_repro.backends.registry import FRAMEWORKS
from n2v_repro.config import OptimizerConfig
from n2v_repro.evaluation.predict import run_evaluation
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import (
    MONITOR_HEADER,
    monitor_line,
    save_noisy_set,
    save_weights,
    write_gray_png,
    write_history,
    write_split,
    write_train_stats,
)
from n2v_repro.models import spec as arch_spec
from n2v_repro.parity.finding import EMULATION_ORDER

# Gain of the fake "network" per framework (prediction = mean + gain * (noisy - mean)):
# different gains give the two frameworks different scores, as real runs would.
FAKE_GAIN = {"torch": 0.55, "jittor": 0.6}
PARITY_ARCHS = ("n2n_unet", "n2v_unet")


class FakeBackend:
    """predict = gain * x + position_bias * column index; `gain` comes from the weights.

    With `position_bias` the output depends on where a pixel sits in the padded input, so it
    is not equivariant to flips/rotations: this is what lets a test see TTA at work.
    """

    def __init__(self, stride: int = 16, position_bias: float = 0.0) -> None:
        self.stride = stride
        self.device = "cpu"
        self.precision = "fp32"
        self.speed_levers: tuple[str, ...] = ()
        self.batch_norm: str | None = None
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
        write_gray_png(root / "resources" / "gray" / "bsd68" / f"{image_id}.png", clean[image_id])
    write_split(
        root / "resources" / "bsd68_split.csv",
        {i: "valid" if n < n_valid else "test" for n, i in enumerate(ids)},
    )
    for sigma in sigmas:
        noisy = {
            i: (c + rng.normal(0, sigma, c.shape)).astype(np.float32) for i, c in clean.items()
        }
        save_noisy_set(root / "resources" / "noisy" / f"sigma{sigma}" / "bsd68.npz", noisy)
        write_train_stats(
            root / "resources" / "patches" / f"sigma{sigma}" / "train_stats.json",
            {"mean": 110.0, "std": 60.0},
        )


def run_dir(root: Path, recipe: str, framework: str, sigma: int, seed: int) -> Path:
    """The pipeline's folder of one run."""
    return root / "results" / paths.run_path(paths.RUN, recipe, framework, sigma, seed)


def train_benchmark(root: Path, recipe: str, framework: str, sigma: int, seed: int) -> Path:
    return root / paths.run_path(paths.TRAIN_BENCHMARK, recipe, framework, sigma, seed)


def eval_benchmark(root: Path, recipe: str, framework: str, sigma: int, seed: int) -> Path:
    return root / paths.run_path(paths.EVAL_BENCHMARK, recipe, framework, sigma, seed)


def write_benchmark(path: Path, seconds: float) -> Path:
    """A Snakemake benchmark TSV of one job that took `seconds`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{seconds}\t0:02:03\t900.1\t2000.0\t850.0\t860.0\t1.0\t2.0\t180.0\t220.0\n"
    )
    return path


def write_training(
    root: Path,
    framework: str,
    sigma: int,
    epochs: int = 4,
    weights: dict[str, np.ndarray] | None = None,
    recipe: str = "port",
    seed: int = 1,
) -> None:
    """history.csv, monitor.csv, last/best weights and the train job's benchmark.

    The weights are `weights` when given (real network weights), else a fake `gain` for
    FakeBackend, a little different per seed, as real replicates would be.
    """
    folder = run_dir(root, recipe, framework, sigma, seed) / "model"
    folder.mkdir(parents=True, exist_ok=True)
    slow = 1.0 if framework == "torch" else 1.2
    history, wall = [], 0.0
    for epoch in range(1, epochs + 1):
        epoch_time = (30.0 if epoch == 1 else 10.0 + epoch) * slow
        valid_time, checkpoint_time = 0.4 * slow, 0.1
        wall += epoch_time + valid_time + checkpoint_time
        history.append(
            {
                "epoch": epoch,
                "lr": 1e-4,
                "train_loss": 1.0 / epoch,
                "valid_loss": 1.2 / epoch**0.5,
                "valid_psnr": 20 + epoch,
                "valid_ssim": 0.5 + 0.05 * epoch,
                "epoch_time_s": epoch_time,
                "patches_per_s": 64 * 4 / epoch_time,
                "valid_time_s": valid_time,
                "checkpoint_time_s": checkpoint_time,
                "wall_time_s": wall,
            }
        )
    write_history(folder / "history.csv", history)
    # The monitor thread's own line format; GPU and framework columns empty as on a CPU.
    lines = [
        monitor_line([0.5 * s, 150 + s, 800 + 10 * s * slow, None, None, None]) for s in range(20)
    ]
    (folder / "monitor.csv").write_text("\n".join([MONITOR_HEADER, *lines]) + "\n")
    gain = FAKE_GAIN[framework] + 0.01 * seed
    for name, value in (("last", gain), ("best", gain + 0.1)):
        save_weights(folder / f"{name}.npz", weights or {"gain": np.float32(value)})
    write_benchmark(train_benchmark(root, recipe, framework, sigma, seed), 123.4 * slow)


def write_evaluation(
    root: Path,
    framework: str,
    sigma: int,
    recipe: str = "port",
    seed: int = 1,
    validation: str = "bsd68_split",
) -> dict:
    """per_image.csv, summary.json and denoised/ through the real evaluation code; the job's
    benchmark (made-up seconds)."""
    write_benchmark(eval_benchmark(root, recipe, framework, sigma, seed), 20.0 + sigma / 5)
    resources = root / "resources"
    folder = run_dir(root, recipe, framework, sigma, seed)
    models, out = folder / "model", folder / "eval"
    return run_evaluation(
        framework=framework,
        arch="n2n_unet",
        sigma=sigma,
        recipe=recipe,
        seed=seed,
        validation=validation,
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


# The fake parity results' Adam: 1 step with these settings, from the inputs' seed.
FAKE_ADAM = OptimizerConfig(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, semantics="torch")
FAKE_SEED = 3


@functools.lru_cache
def _exact_adam(arch: str, semantics: str) -> dict[str, np.ndarray]:
    settings = dataclasses.replace(FAKE_ADAM, semantics=semantics)
    return parity.adam_reference(arch, settings, FAKE_SEED, 1)


def fake_parity_reference(arch: str) -> dict[str, np.ndarray]:
    """A `parity.run_reference`-shaped result: the "exact" values (float64) of three layers,
    the first batch norm's statistics, the eval output, the loss and every gradient."""
    base = np.random.default_rng(99)
    names = [layer.name for layer in arch_spec.layers(arch)[:3]]
    out: dict[str, np.ndarray] = {"layer_names": np.array(names)}
    out |= {f"layer/{name}": base.standard_normal(64) for name in names}
    norms = [layer.name for layer in arch_spec.layers(arch) if layer.kind == "batch_norm"][:1]
    for name in norms:
        out |= {f"buffer/{name}.{b}": base.standard_normal(4) for b in arch_spec.BN_BUFFERS}
    out |= {"eval_output": base.standard_normal((1, 1, 8, 8)), "loss": np.array(1.5)}
    out |= {f"grad/{name}": base.standard_normal(3) for name in arch_spec.trainable_names(arch)}
    return out


def reference_file(arch: str, exact: dict[str, np.ndarray] | None = None) -> dict:
    """`parity.run_reference`'s file around the exact values (fake_parity_reference's): each
    batch-norm semantics' copy, no unit across a kink, and for an arch with batch norm stock
    Jittor's yardstick runs (parity.batch_norm's emulations, PyTorch's float32 rounding)."""
    exact = fake_parity_reference(arch) if exact is None else exact
    out = {f"{semantics}/{k}": v for semantics in ("torch", "jittor") for k, v in exact.items()}
    for run in (*FRAMEWORKS, parity.YARDSTICK):
        out[f"kink_flips/{run}"] = np.array(0)
        out[f"kink_distance/{run}"] = np.array(0.0)
    if arch_spec.has_batch_norm(arch):
        emulated = fake_parity_result(arch)
        for name in EMULATION_ORDER:
            out |= {f"emulation/{name}/{k}": v for k, v in emulated.items()}
    return out


def fake_parity_result(arch: str, scale: float = 1e-7, seed: int = 0) -> dict[str, np.ndarray]:
    """A `parity.run_framework`-shaped result: the reference's values and float64 Adam's,
    in float32 with relative noise of `scale` (float32 rounding: 1e-7)."""
    rng = np.random.default_rng(seed)

    def noisy(value: np.ndarray) -> np.ndarray:
        value = np.asarray(value)
        return (value * (1 + scale * rng.standard_normal(value.shape))).astype(np.float32)

    ref = fake_parity_reference(arch)
    out = {"layer_names": ref["layer_names"], "steps": np.array(1), "seed": np.array(FAKE_SEED)}
    out["adam_settings"] = np.array([FAKE_ADAM.lr, *FAKE_ADAM.betas, FAKE_ADAM.eps])
    for key, value in ref.items():
        if key.startswith(("layer/", "grad/")) or key in ("eval_output", "loss"):
            out[key] = noisy(value)
        elif key.startswith("buffer/"):
            out[key] = noisy(value).astype(np.float64)
    for semantics in parity.SEMANTICS:
        exact = _exact_adam(arch, semantics)
        out |= {f"adam_{semantics}/{name}": noisy(value) for name, value in exact.items()}
    return out


def save_fake_parity(
    folder: Path, arch: str, jittor_scale: float = 1e-7, jittor: dict | None = None
) -> tuple[Path, Path, Path]:
    """Write the torch, jittor and reference files of `arch` under the pipeline's paths in
    `folder` (results/parity): PyTorch with float32 rounding, Jittor with `jittor_scale`
    (or the `jittor` result given). Returns the three paths."""
    files = tuple(folder / part / f"{arch}.npz" for part in ("torch", "jittor", "reference"))
    save_npz(files[0], fake_parity_result(arch))
    save_npz(files[1], jittor or fake_parity_result(arch, scale=jittor_scale, seed=1))
    save_npz(files[2], reference_file(arch))
    return files


def write_parity(root: Path, tolerance: float = 1e-4) -> list[dict]:
    """parity.json and parity.csv, by the real comparison of fake framework results."""
    folder = root / "results" / "parity"
    files = [save_fake_parity(folder, arch) for arch in PARITY_ARCHS]
    torch_paths, jittor_paths, references = zip(*files, strict=True)
    return parity.compare_frameworks(
        list(PARITY_ARCHS),
        {"torch": torch_paths, "jittor": jittor_paths},
        references,
        folder / "parity.json",
        folder / "parity.csv",
        tolerance,
    )


def write_results_tree(
    root: Path,
    ids: Sequence[str],
    n_valid: int,
    frameworks: Sequence[str] = ("torch", "jittor"),
    sigmas: Sequence[int] = (25,),
    recipes: dict[str, str] | None = None,
    seeds: Sequence[int] = (1,),
) -> list[tuple[str, str, int, int]]:
    """Every input of the tables, figures and report; returns the runs in pipeline order.

    `recipes` maps each recipe name to its validation scheme (default: port, bsd68_split).
    """
    recipes = recipes or {"port": "bsd68_split"}
    write_data(root, ids, n_valid, sigmas)
    runs = [
        (recipe, framework, sigma, seed)
        for recipe in recipes
        for framework in frameworks
        for sigma in sigmas
        for seed in seeds
    ]
    for recipe, framework, sigma, seed in runs:
        write_training(root, framework, sigma, recipe=recipe, seed=seed)
        write_evaluation(root, framework, sigma, recipe, seed, recipes[recipe])
    if set(frameworks) >= {"torch", "jittor"}:
        write_parity(root)
    return runs


def fake_bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """A stand-in for BM3D: shrinks each pixel halfway towards the image mean (fast, and a
    real improvement on the fake pictures' noise)."""
    return (0.5 * noisy + 0.5 * float(noisy.mean())).astype(np.float32)


def write_bm3d(root: Path, sigma: int, benchmark_s: float = 42.0) -> dict:
    """BM3D's evaluation files at `sigma` through the real writer (`run_bm3d`), with
    `fake_bm3d` as the denoiser, and its job's benchmark."""
    from n2v_repro.evaluation.bm3d_baseline import run_bm3d

    resources = root / "resources"
    out = root / paths.BM3D_EVAL_DIR.format(sigma=sigma)
    write_benchmark(root / paths.BM3D_BENCHMARK.format(sigma=sigma), benchmark_s)
    return run_bm3d(
        sigma=sigma,
        clean_pngs=sorted((resources / "gray" / "bsd68").glob("*.png")),
        noisy_npz=resources / "noisy" / f"sigma{sigma}" / "bsd68.npz",
        split_csv=resources / "bsd68_split.csv",
        per_image_csv=out / "per_image.csv",
        summary_json=out / "summary.json",
        denoised_dir=out / "denoised",
        denoiser=fake_bm3d,
    )
