"""What the rules take from one config: the validated config, the images, the report's settings.

workflow/rules/common.smk calls these once per Snakemake invocation; errors are UserErrors,
which it turns into one-line WorkflowErrors.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from n2v_repro.backends.jittor_env import cuda_driver_available
from n2v_repro.config import PipelineConfig, plain
from n2v_repro.data import manifest as manifests
from n2v_repro.errors import UserError


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
