"""The training runs of one pipeline run, and the files of each, from its validated config.

A run is (recipe, framework, sigma, seed) for ours and (recipe, reference, sigma, seed) for a
reference implementation. Every per-run list of the workflow follows one order: ours
(recipes x frameworks x sigmas x seeds; Jittor's exact-BN variant only for an arch with batch
norm), then the references' (each N2V recipe x reference x sigma x seed). The rules' input
lists and the scripts' `runs` parameters come from the same lists, so they pair up.
"""

from __future__ import annotations

from collections.abc import Sequence

from n2v_repro.backends.registry import FRAMEWORKS, is_own_model
from n2v_repro.config import PipelineConfig
from n2v_repro.paths import reference_run_path, run_path

Run = tuple[str, str, int, int]


def our_runs(config: PipelineConfig) -> list[Run]:
    """Every (recipe, framework, sigma, seed) the run trains, in the one order."""
    return [
        (recipe.name, framework, sigma, seed)
        for recipe in config.run_recipes
        for framework in config.frameworks
        if is_own_model(framework, recipe.train.arch)
        for sigma in config.sigmas
        for seed in config.seeds
    ]


def reference_runs(config: PipelineConfig) -> list[Run]:
    """Every (recipe, reference, sigma, seed) the reference implementations train."""
    return [
        (recipe, reference, sigma, seed)
        for recipe in config.reference_recipes
        for reference in config.references
        for sigma in config.sigmas
        for seed in config.seeds
    ]


def select(
    runs: Sequence[Run],
    recipe: str | None = None,
    sigma: int | str | None = None,
    seed: int | str | None = None,
) -> list[Run]:
    """Return the runs of one recipe / sigma / seed (None: any), in their order."""
    return [
        run
        for run in runs
        if (recipe is None or run[0] == recipe)
        and (sigma is None or run[2] == int(sigma))
        and (seed is None or run[3] == int(seed))
    ]


def run_files(
    runs: Sequence[Run], pattern: str, name: str = "", reference_pattern: str = ""
) -> list[str]:
    """Return `name` under `pattern` for each of our runs.

    A reference's run (its second item is no framework) goes under `reference_pattern`.
    """
    files = []
    for run in runs:
        if run[1] in FRAMEWORKS:
            folder = run_path(pattern, *run)
        elif reference_pattern:
            folder = reference_run_path(reference_pattern, *run)
        else:
            raise ValueError(f"reference run {run} needs a reference_pattern")
        files.append(f"{folder}/{name}" if name else folder)
    return files
