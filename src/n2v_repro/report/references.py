"""Published numbers our results are compared against: the only place they are written down.

Two sources, each shown only beside the `paper` recipe's rows (the recipe that follows them):

- Krull, Buchholz, Jug, "Noise2Void - Learning Denoising from Single Noisy Images", CVPR 2019,
  Table 1: N2V on BSD68 (all 68 images, whole-image prediction, PSNR against the clean 8-bit
  image with data range 255), Gaussian noise sigma 25: 27.71 dB.
- The reference code, juglab/n2v `examples/2D/denoising2D_BSD68/BSD68_reproducibility.ipynb`,
  re-run in 2021: 27.81 dB with the weights of the lowest validation loss (what its
  `N2V.train()` reloads for prediction), 27.77 with the last epoch's.

`REFERENCE_RECIPE` is that notebook's recipe, key by key in this project's config names, so
that the report can list where a run's `paper` recipe departs from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAPER_RECIPE = "paper"
PAPER_CITATION = "Krull, Buchholz & Jug, Noise2Void, CVPR 2019, Table 1"
PAPER_SHORT = "Krull et al. 2019"
REFERENCE_CODE_CITATION = (
    "juglab/n2v examples/2D/denoising2D_BSD68/BSD68_reproducibility.ipynb, re-run 2021 "
    "(best = lowest validation loss, the weights its N2V.train() reloads; last = final epoch)"
)

# (test set, sigma) -> PSNR in dB. Only the paper's protocol (all of BSD68) has a reference.
PAPER_PSNR: dict[tuple[str, int], float] = {("bsd68", 25): 27.71}
# (test set, sigma, weights) -> PSNR in dB of the reference code.
REFERENCE_CODE_PSNR: dict[tuple[str, int, str], float] = {
    ("bsd68", 25, "best"): 27.81,
    ("bsd68", 25, "last"): 27.77,
}

# juglab/n2v's BSD68 recipe in this project's keys (recipe settings, then data settings).
REFERENCE_RECIPE: dict[str, Any] = {
    "arch": "n2v_unet",
    "epochs": 200,
    "steps_per_epoch": 400,
    "batch_size": 128,
    "augment": True,
    "masking.kind": "uniform_withCP",
    "masking.percentage": 0.198,
    "masking.radius": 2,
    "optimizer.lr": 4e-4,
    "optimizer.betas": [0.9, 0.999],
    "optimizer.eps": 1e-7,
    # Keras' Adam: lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), Jittor's form.
    "optimizer.semantics": "keras",
    "schedule.kind": "plateau",
    "schedule.factor": 0.5,
    "schedule.patience": 10,
    "train_set": "train400",
    "validation.scheme": "heldout_train",
    "validation.heldout_images": 4,
    "init": "glorot_uniform",
    "data.train_images": None,
    "data.bsd68_images": None,
    "data.patch_size": 64,
}


def paper_psnr(recipe: str, test_set: str, sigma: int) -> float | None:
    """Return the paper's N2V PSNR for a row of `recipe`, or None (other recipes, no reference)."""
    if recipe != PAPER_RECIPE:
        return None
    return PAPER_PSNR.get((test_set, int(sigma)))


def reference_code_psnr(recipe: str, test_set: str, sigma: int, weights: str) -> float | None:
    """Return the reference code's PSNR for a row of `recipe` and these weights, or None."""
    if recipe != PAPER_RECIPE:
        return None
    return REFERENCE_CODE_PSNR.get((test_set, int(sigma), weights))


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def deviations(settings: Mapping[str, Any]) -> list[str]:
    """Name every key of REFERENCE_RECIPE where `settings` (recipe keys + `data`) differ.

    `settings` is a recipe's train mapping with the run's `data` section under "data".
    """
    flat = _flatten(settings)
    return [
        f"{key} {flat.get(key)!r} (reference {value!r})"
        for key, value in REFERENCE_RECIPE.items()
        if key in flat and flat[key] != value
    ]


# --- every method of the paper's Table 1 ----------------------------------------------------

# Krull et al. 2019, Table 1, BSD68 (all 68 images), Gaussian noise sigma 25, by method (the
# train.method names; "n2c" is the paper's "traditional" supervised training, "bm3d" its
# training-free baseline). Taken second-hand (issue 22), not yet checked against the paper's
# own text; N2V agrees with PAPER_PSNR. The paper has no N2V2 (Höck et al. 2022), so none here.
METHOD_PAPER_PSNR: dict[tuple[str, int], float] = {
    ("bm3d", 25): 28.59,
    ("n2c", 25): 29.06,
    ("n2n", 25): 28.86,
    ("n2v", 25): 27.71,
}
METHOD_PAPER_CITATION = "Krull et al. 2019, Table 1"


def method_paper_psnr(method: str, test_set: str, sigma: int) -> float | None:
    """Return the paper's PSNR of `method` at `sigma` on its protocol (all of BSD68), or None."""
    if test_set != "bsd68":
        return None
    return METHOD_PAPER_PSNR.get((method, int(sigma)))
