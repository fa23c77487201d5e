"""What the rules take from one config: the validated config, images, data files, threads.

workflow/rules/common.smk calls these once per Snakemake invocation; errors are UserErrors,
which it turns into one-line WorkflowErrors.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from n2v_repro.backends.jittor_env import cuda_driver_available
from n2v_repro.config import PipelineConfig, TrainConfig, plain
from n2v_repro.data import manifest as manifests
from n2v_repro.errors import UserError
from n2v_repro.paths import BSD68_SPLIT, NOISY2_NPZ, NOISY_NPZ, PATCH_DIR, PATCH_TARGET

# Threads of a training/evaluation job under a cluster executor (framework_threads).
CLUSTER_FRAMEWORK_THREADS = 4


@dataclass(frozen=True)
class Images:
    """The BSDS500 images in use: each image's split, and the ids of each image set."""

    split_of: dict[str, str]
    ids: dict[str, list[str]]


def load(config: MutableMapping[str, Any]) -> tuple[PipelineConfig, Images]:
    """Validate Snakemake's `config` and read the manifest's training and BSD68 images.

    `config` is rewritten in place with every default filled in.
    """
    validated = PipelineConfig.from_mapping(config)
    config.clear()
    config.update(validated.as_dict())
    data = validated.data
    try:
        manifest = manifests.read_manifest(data.manifest)
        ids = {
            "bsd400": manifests.train_ids(manifest, data.train_images),
            "bsd68": manifests.bsd68_ids(manifest, data.bsd68_ids, data.bsd68_images),
        }
    except (OSError, manifests.ManifestError) as error:
        raise UserError(f"data.manifest / data.bsd68_ids: {error}") from None
    return validated, Images({i: entry.split for i, entry in manifest.items()}, ids)


def uses_gpu(config: PipelineConfig) -> bool:
    """Say whether training/evaluation jobs occupy a GPU: decides their `gpu` resource."""
    device = config.train.device
    return device == "cuda" or (device == "auto" and cuda_driver_available())


def recipe_settings(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """Return per recipe the settings the report needs: validation scheme, arch, training set.

    `settings` holds the recipe with the data limits, as the report compares them with the
    paper's.
    """
    data = config.data
    limits = {
        "train_images": data.train_images,
        "bsd68_images": data.bsd68_images,
        "patch_size": data.patch_size,
    }
    return {
        recipe.name: {
            "arch": recipe.train.arch,
            "validation": recipe.train.validation.scheme,
            "heldout_images": recipe.train.validation.heldout_images,
            "train_set": recipe.train.train_set,
            "init": recipe.train.init,
            "settings": {**plain(recipe.train), "data": limits},
        }
        for recipe in config.run_recipes
    }


def patch_files(data_tag: str, sigma: int | str, with_target: bool = False) -> dict[str, str]:
    """Return the files of one data set; a method with its own targets (N2C, N2N) adds them."""
    folder = PATCH_DIR.format(data_tag=data_tag, sigma=sigma)
    files = {
        "train": f"{folder}/train.npy",
        "index": f"{folder}/train_index.csv",
        "stats": f"{folder}/train_stats.json",
        "valid": f"{folder}/valid_tiles.npz",
    }
    if with_target:
        files["target"] = PATCH_TARGET.format(data_tag=data_tag, sigma=sigma)
    return files


def patchify_inputs(
    train: TrainConfig, sigma: int | str, gray_pngs: dict[str, list[str]], crops: str
) -> dict[str, Any]:
    """Return what one data set reads.

    A heldout_train set reads nothing of BSD68; a bsd68_split set reads the noisy and clean
    BSD68 validation images; Train400 reads the crop table and the clean training images
    (pixel check), as do held-out validation tiles (their clean references).
    """
    files: dict[str, Any] = {"bsd400": NOISY_NPZ.format(sigma=sigma, dataset="bsd400")}
    if train.train_set == "train400" or train.validation.scheme == "heldout_train":
        files["clean_bsd400"] = gray_pngs["bsd400"]
    if train.target == "noisy2":
        files["bsd400_noisy2"] = NOISY2_NPZ.format(sigma=sigma, dataset="bsd400")
    if train.train_set == "train400":
        files["crops"] = crops
    if train.validation.scheme == "bsd68_split":
        files["bsd68"] = NOISY_NPZ.format(sigma=sigma, dataset="bsd68")
        files["split"] = BSD68_SPLIT
        files["clean_bsd68"] = gray_pngs["bsd68"]
    return files


def framework_threads(cores: int | None, uses_gpu: bool) -> int:
    """Return a training/evaluation job's threads: on CPU every core, on a GPU at most 4.

    On CPU no two such jobs share the device. Under a cluster executor (`cores` None: each
    job gets its own share of a node) CLUSTER_FRAMEWORK_THREADS; the SLURM profiles'
    set-threads decide.
    """
    if cores is None:
        return CLUSTER_FRAMEWORK_THREADS
    return min(4, cores) if uses_gpu else cores
