"""The pipeline's path patterns, each defined once (docs/architecture.md describes the files).

workflow/rules/common.smk builds the rules and target lists from them; the tools that read a
finished run (tools/measured_doc.py, tools/cpu_tuning.py) format the same patterns. Paths are
relative to the working directory. Wildcards: `{sigma}`, `{dataset}` (bsd400 or bsd68),
`{data_tag}`, `{arch}`, `{init}`, `{seed}`, `{recipe}`, `{framework}`, `{weights}`, `{image_id}`.
"""

from __future__ import annotations

BSD68_SPLIT = "resources/bsd68_split.csv"
GRAY_PNG = "resources/gray/{dataset}/{image_id}.png"
NOISY_NPZ = "resources/noisy/sigma{sigma}/{dataset}.npz"
# Noise2Noise's second, independent noise realisation of the training images.
NOISY2_NPZ = "resources/noisy/sigma{sigma}/{dataset}_noisy2.npz"
PATCH_DIR = "resources/patches/{data_tag}/sigma{sigma}"
# The training targets of N2C (clean) and N2N (second realisation), indexed like train.npy.
PATCH_TARGET = f"{PATCH_DIR}/train_target.npy"
INIT_WEIGHTS = "results/init/{arch}_{init}_seed{seed}.npz"
# One training run: recipe x framework x sigma x seed. Its model, evaluation and resume state.
RUN = "{recipe}/{framework}/sigma{sigma}/seed{seed}"
MODEL_DIR = f"results/{RUN}/model"
EVAL_DIR = f"results/{RUN}/eval"
CHECKPOINT = f"results/{RUN}/checkpoint/checkpoint.npz"
# The data jobs' benchmarks: their rules write them, the time breakdown sums them.
DOWNLOAD_BENCHMARK = "benchmarks/download_bsds500/download_bsds500.tsv"
GRAY_BENCHMARK = "benchmarks/to_gray/{dataset}.tsv"
SPLIT_BENCHMARK = "benchmarks/split_bsd68/split_bsd68.tsv"
NOISE_BENCHMARK = "benchmarks/add_noise/sigma{sigma}/{dataset}.tsv"
NOISE2_BENCHMARK = "benchmarks/add_noise/sigma{sigma}/{dataset}_noisy2.tsv"
PATCH_BENCHMARK = "benchmarks/patchify/{data_tag}/sigma{sigma}.tsv"
TRAIN_BENCHMARK = f"benchmarks/train/{RUN}.tsv"
EVAL_BENCHMARK = f"benchmarks/evaluate/{RUN}.tsv"
# The BM3D baseline: no framework, no seed, one evaluation per sigma (evaluation/bm3d_baseline.py).
BM3D_EVAL_DIR = "results/bm3d/sigma{sigma}/eval"
BM3D_BENCHMARK = "benchmarks/bm3d/sigma{sigma}.tsv"
# Every method of the run side by side (report/tables.make_methods_table).
METHODS_TABLE = "results/tables/methods"
METHODS_FIGURE = "results/figures/methods_sigma{sigma}.png"
# The port's claims against this run (report/claims.py): .json, .html, .md.
CLAIMS_TABLE = "results/tables/port_claims"
RECIPE_TABLES = "results/tables/{recipe}"
RECIPE_FIGURES = "results/figures/{recipe}"
PARITY_DIR = "results/parity"
PARITY_INPUTS = f"{PARITY_DIR}/inputs/{{arch}}.npz"
PARITY_RESULT = f"{PARITY_DIR}/{{framework}}/{{arch}}.npz"
# The float64 reference of both frameworks' results (parity.run_reference).
PARITY_REFERENCE = f"{PARITY_DIR}/reference/{{arch}}.npz"
# bioimage.io packages of one run: the test tensors (its framework's own prediction), then
# per weights the package and its `bioimageio test` summary (workflow/rules/bmz.smk).
BMZ_DIR = f"results/{RUN}/bmz"
BMZ_TENSORS = f"{BMZ_DIR}/test_tensors.npz"
BMZ_PACKAGE = f"{BMZ_DIR}/n2v_{{recipe}}_{{framework}}_sigma{{sigma}}_seed{{seed}}_{{weights}}.zip"
BMZ_VALIDATION = f"{BMZ_DIR}/{{weights}}_validation.json"
BMZ_TABLE = "results/tables/bmz_packages"
# The reference implementations (workflow/rules/references.smk): one run per recipe x
# reference x sigma x seed, beside the pipeline's runs; each reference's environment below
# the config key reference_envs.
REFERENCE_RUN = "{recipe}/references/{reference}/sigma{sigma}/seed{seed}"
REFERENCE_MODEL_DIR = f"results/{REFERENCE_RUN}/model"
REFERENCE_EVAL_DIR = f"results/{REFERENCE_RUN}/eval"
REFERENCE_TRAIN_BENCHMARK = f"benchmarks/train_reference/{REFERENCE_RUN}.tsv"
REFERENCE_PREDICT_BENCHMARK = f"benchmarks/predict_reference/{REFERENCE_RUN}.tsv"
REFERENCE_ENV_BUILT = "{envs}/{reference}/built.json"
# Per recipe and reference: its settings beside ours (.csv, .html).
REFERENCE_SETTINGS = f"{RECIPE_TABLES}/reference_{{reference}}_settings"
REFERENCE_CURVES = f"{RECIPE_FIGURES}/reference_valid_loss.png"
# Verified downloads; not a declared output, so a failed job never deletes them.
DOWNLOAD_CACHE = "resources/.download_cache"


def run_path(pattern: str, recipe: str, framework: str, sigma: int | str, seed: int | str) -> str:
    """`pattern` (RUN, MODEL_DIR, TRAIN_BENCHMARK, ...) of one training run."""
    return pattern.format(recipe=recipe, framework=framework, sigma=sigma, seed=seed)


def reference_run_path(
    pattern: str, recipe: str, reference: str, sigma: int | str, seed: int | str
) -> str:
    """`pattern` (REFERENCE_MODEL_DIR, ...) of one reference run."""
    return pattern.format(recipe=recipe, reference=reference, sigma=sigma, seed=seed)
