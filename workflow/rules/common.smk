# Config loading, wildcard constraints, and the input functions and target lists that the
# rules use (the path patterns are n2v_repro.paths). No rules here.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from n2v_repro.backends.jittor_env import cuda_driver_available
from n2v_repro.backends.registry import FRAMEWORKS as KNOWN_FRAMEWORKS
from n2v_repro.backends.registry import is_own_model
from n2v_repro.config import ConfigError, PipelineConfig, plain
from n2v_repro.data import manifest as _manifest
from n2v_repro.framework_site import framework_package
from n2v_repro.models.initialisation import INIT_SCHEMES
from n2v_repro.models.spec import ARCHS
from n2v_repro.paths import (
    BMZ_PACKAGE,
    BMZ_TABLE,
    BMZ_TENSORS,
    BMZ_VALIDATION,
    BSD68_SPLIT,
    CLAIMS_TABLE,
    CHECKPOINT,
    DOWNLOAD_BENCHMARK,
    DOWNLOAD_CACHE,
    EVAL_BENCHMARK,
    EVAL_DIR,
    GRAY_BENCHMARK,
    GRAY_PNG,
    INIT_WEIGHTS,
    MODEL_DIR,
    NOISE2_BENCHMARK,
    NOISE_BENCHMARK,
    NOISY2_NPZ,
    NOISY_NPZ,
    PARITY_DIR,
    PARITY_INPUTS,
    PARITY_REFERENCE,
    PARITY_RESULT,
    PATCH_BENCHMARK,
    PATCH_DIR,
    PATCH_TARGET,
    RECIPE_FIGURES,
    RECIPE_TABLES,
    RUN,
    SPLIT_BENCHMARK,
    TRAIN_BENCHMARK,
    run_path,
)
from n2v_repro.report.categories import report_category as _report_category

min_version("9.0")


# The merged config is validated once (schema + cross-key checks) into frozen dataclasses;
# Snakemake's `config` keeps the plain mapping with every default filled in.
try:
    CONFIG = PipelineConfig.from_mapping(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(CONFIG.as_dict())

try:
    MANIFEST = _manifest.read_manifest(CONFIG.data.manifest)
    TRAIN_IDS = _manifest.train_ids(MANIFEST, CONFIG.data.train_images)
    BSD68_IDS = _manifest.bsd68_ids(
        MANIFEST, CONFIG.data.bsd68_ids, CONFIG.data.bsd68_images
    )
except (OSError, _manifest.ManifestError) as error:
    raise WorkflowError(f"data.manifest / data.bsd68_ids: {error}") from None

SIGMAS = list(CONFIG.sigmas)
FRAMEWORKS = list(CONFIG.frameworks)
SEEDS = list(CONFIG.seeds)
# The recipes this run trains, by name, in the report's order (recipes x recipe_book).
RECIPES = {recipe.name: recipe.train for recipe in CONFIG.run_recipes}
# Every (recipe, framework, sigma, seed) training run, in the one order that every per-run
# list follows; Jittor's exact-BN variant only for an arch with batch norm (is_own_model).
RUNS = [
    (recipe, fw, s, seed)
    for recipe, train in RECIPES.items()
    for fw in FRAMEWORKS
    if is_own_model(fw, train.arch)
    for s in SIGMAS
    for seed in SEEDS
]
# The frameworks that run in Jittor's environment: the jittor rules' wildcard constraint.
JITTOR_FRAMEWORKS = "|".join(
    f for f in KNOWN_FRAMEWORKS if framework_package(f) == "jittor"
)
# Training + validation data sets in use, by name (a recipe's `data_tag`): several recipes
# with the same training set and validation scheme share one set of patches.
DATA_TAGS = {train.data_tag: train for train in RECIPES.values()}
# The recipes' and data sets' settings as the plain mappings scripts rebuild; rules take one
# key with lookup(dpath="{recipe}/arch", within=RECIPE_TRAIN).
RECIPE_TRAIN = {name: plain(train) for name, train in RECIPES.items()}
DATA_TAG_TRAIN = {tag: plain(train) for tag, train in DATA_TAGS.items()}
# What each data set's training targets are (TrainConfig.target): noisy, clean or noisy2.
DATA_TAG_TARGET = {tag: train.target for tag, train in DATA_TAGS.items()}
# Whether a method of the run trains on a second noise realisation (N2N).
NEEDS_NOISY2 = "noisy2" in DATA_TAG_TARGET.values()
# The data seed: noise realisations and the BSD68 split.
SEED = CONFIG.seed
# Training-free baselines scored beside the learned methods (bm3d).
BASELINES = list(CONFIG.baselines)


wildcard_constraints:
    sigma=r"\d+",
    framework="|".join(KNOWN_FRAMEWORKS),
    image_id=r"[^/]+",
    arch="|".join(ARCHS),
    seed=r"\d+",
    recipe="|".join(CONFIG.recipe_book),
    data_tag=r"(bsd400|train400)_(bsd68_split|heldout\d+)(_clean|_noisy2)?",
    init="|".join(INIT_SCHEMES),
    dataset="bsd400|bsd68",
    weights="last|best",


# Pixels of one BSDS500 image (481 x 321): sizes the memory of the whole-set data jobs.
BSDS500_IMAGE_PIXELS = 481 * 321


# --- data -----------------------------------------------------------------------------------


# The images in use of each image set (the `dataset` wildcard): training and BSD68.
IMAGE_IDS = {"bsd400": TRAIN_IDS, "bsd68": BSD68_IDS}
JPGS = {
    dataset: [f"resources/bsds500/{MANIFEST[i].split}/{i}.jpg" for i in ids]
    for dataset, ids in IMAGE_IDS.items()
}
GRAY_PNGS = {
    dataset: [GRAY_PNG.format(dataset=dataset, image_id=i) for i in ids]
    for dataset, ids in IMAGE_IDS.items()
}


def data_mem_mb(wildcards):
    """add_noise / patchify hold the noisy set as float32 plus one float64 image at a time;
    x3 covers the npz being written and numpy's temporaries, plus the interpreter."""
    n_bytes = 4 * BSDS500_IMAGE_PIXELS * (len(TRAIN_IDS) + len(BSD68_IDS))
    return 3 * n_bytes // 2**20 + 500


def data_benchmarks(wildcards):
    """The benchmark of every data job the run makes: the time breakdown's data row."""
    return [
        DOWNLOAD_BENCHMARK,
        *[GRAY_BENCHMARK.format(dataset=d) for d in ("bsd400", "bsd68")],
        SPLIT_BENCHMARK,
        *[
            NOISE_BENCHMARK.format(sigma=s, dataset=d)
            for s in SIGMAS
            for d in ("bsd400", "bsd68")
        ],
        *[
            NOISE2_BENCHMARK.format(sigma=s, dataset="bsd400")
            for s in SIGMAS
            if NEEDS_NOISY2
        ],
        *[
            PATCH_BENCHMARK.format(data_tag=t, sigma=s)
            for t in DATA_TAGS
            for s in SIGMAS
        ],
    ]


def patch_files(data_tag, sigma):
    """The files of one data set; a method with its own targets (N2C, N2N) adds them."""
    folder = PATCH_DIR.format(data_tag=data_tag, sigma=sigma)
    files = {
        "train": f"{folder}/train.npy",
        "index": f"{folder}/train_index.csv",
        "stats": f"{folder}/train_stats.json",
        "valid": f"{folder}/valid_tiles.npz",
    }
    if DATA_TAG_TARGET.get(data_tag, "noisy") != "noisy":
        files["target"] = PATCH_TARGET.format(data_tag=data_tag, sigma=sigma)
    return files


def patchify_inputs(wildcards):
    """What one data set reads. A heldout_train set reads nothing of BSD68; a bsd68_split
    set reads the noisy and clean BSD68 validation images; Train400 reads the crop table and
    the clean training images (pixel check), as do held-out validation tiles (their clean
    references)."""
    train = DATA_TAGS[wildcards.data_tag]
    inputs = {"bsd400": NOISY_NPZ.format(sigma=wildcards.sigma, dataset="bsd400")}
    if train.train_set == "train400" or train.validation.scheme == "heldout_train":
        inputs["clean_bsd400"] = GRAY_PNGS["bsd400"]
    if train.target == "noisy2":
        inputs["bsd400_noisy2"] = NOISY2_NPZ.format(
            sigma=wildcards.sigma, dataset="bsd400"
        )
    if train.train_set == "train400":
        inputs["crops"] = CONFIG.data.train400_crops
    if train.validation.scheme == "bsd68_split":
        inputs["bsd68"] = NOISY_NPZ.format(sigma=wildcards.sigma, dataset="bsd68")
        inputs["split"] = BSD68_SPLIT
        inputs["clean_bsd68"] = GRAY_PNGS["bsd68"]
    return inputs


def training_inputs(wildcards):
    train = RECIPES[wildcards.recipe]
    return {
        **patch_files(train.data_tag, wildcards.sigma),
        "init": INIT_WEIGHTS.format(
            arch=train.arch, init=train.init, seed=wildcards.seed
        ),
    }


# --- training and evaluation ----------------------------------------------------------------


def uses_gpu():
    """Whether training/evaluation jobs occupy a GPU: decides the `gpu` resource."""
    device = CONFIG.train.device
    return device == "cuda" or (device == "auto" and cuda_driver_available())


# The `gpu` resource of a training/evaluation job.
JOB_GPUS = 1 if uses_gpu() else 0


# Threads of a training/evaluation job under a cluster executor, where Snakemake has no total
# of cores (each job gets its own share of a node); the SLURM profiles' set-threads decide.
CLUSTER_FRAMEWORK_THREADS = 4


def total_cores():
    """`--cores`; None under a cluster executor, where `workflow.cores` raises."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


def framework_threads():
    """On CPU a training job takes every core so that no two share the device."""
    cores = total_cores()
    if cores is None:
        return CLUSTER_FRAMEWORK_THREADS
    return cores if not uses_gpu() else min(4, cores)


def one_recipe_settings(wildcards):
    return {wildcards.recipe: recipe_settings()[wildcards.recipe]}


def evaluation_inputs(wildcards):
    """The test images, the training statistics and the weights named in eval.weights."""
    train = RECIPES[wildcards.recipe]
    folder = run_path(
        MODEL_DIR,
        wildcards.recipe,
        wildcards.framework,
        wildcards.sigma,
        wildcards.seed,
    )
    return {
        "clean": GRAY_PNGS["bsd68"],
        "noisy": NOISY_NPZ.format(sigma=wildcards.sigma, dataset="bsd68"),
        "split": BSD68_SPLIT,
        "stats": patch_files(train.data_tag, wildcards.sigma)["stats"],
        **{name: f"{folder}/{name}.npz" for name in CONFIG.eval.weights},
    }


def runs_of(recipe=None, sigma=None, seed=None):
    """The runs (RUNS order) of one recipe / sigma / seed, or all."""
    return [
        run
        for run in RUNS
        if (recipe is None or run[0] == recipe)
        and (sigma is None or run[2] == int(sigma))
        and (seed is None or run[3] == int(seed))
    ]


def run_files(pattern, name, recipe=None, sigma=None, seed=None):
    """`name` under `pattern` for each run of runs_of(recipe, sigma, seed)."""
    return [
        f"{run_path(pattern, *run)}/{name}" if name else run_path(pattern, *run)
        for run in runs_of(recipe, sigma, seed)
    ]


def recipe_run_files(pattern, name, reference_pattern=None):
    """Input function: `name` of every run of the wildcard's recipe; with
    `reference_pattern`, the reference implementations' runs of it after ours."""
    return lambda wildcards: run_files(pattern, name, recipe=wildcards.recipe) + (
        reference_run_files(reference_pattern, name, recipe=wildcards.recipe)
        if reference_pattern
        else []
    )


def recipe_runs(wildcards):
    """The (recipe, framework, sigma, seed) of each file of recipe_run_files, in order."""
    return runs_of(recipe=wildcards.recipe)


def recipe_all_runs(wildcards):
    """recipe_runs, then the recipe's reference runs (recipe_run_files with references)."""
    return runs_of(recipe=wildcards.recipe) + reference_runs_of(wildcards.recipe)


def first_seed_files(pattern, name):
    """Input function: `name` of each framework's first-seed run at the wildcards' recipe
    and sigma (the qualitative figure shows one seed)."""
    return lambda wildcards: run_files(
        pattern, name, recipe=wildcards.recipe, sigma=wildcards.sigma, seed=SEEDS[0]
    )


def first_seed_frameworks(wildcards):
    """The framework of each of first_seed_files' files: the exact-BN variant has no run of
    an arch without batch norm."""
    runs = runs_of(recipe=wildcards.recipe, sigma=wildcards.sigma, seed=SEEDS[0])
    return [run[1] for run in runs]


def recipe_settings():
    """Per recipe the settings the report needs: validation scheme, arch, training set."""
    return {
        name: {
            "arch": train.arch,
            "validation": train.validation.scheme,
            "heldout_images": train.validation.heldout_images,
            "train_set": train.train_set,
            "init": train.init,
            # The recipe and the data limits, as the report compares them with the paper's.
            "settings": {
                **plain(train),
                "data": {
                    "train_images": CONFIG.data.train_images,
                    "bsd68_images": CONFIG.data.bsd68_images,
                    "patch_size": CONFIG.data.patch_size,
                },
            },
        }
        for name, train in RECIPES.items()
    }


def report_category(section):
    """Report menu categories, in order: summary, one per recipe, parity."""
    return _report_category(section, list(RECIPES))


def recipe_category(wildcards):
    return report_category(wildcards.recipe)


def parity_outputs():
    """Parity needs PyTorch and a Jittor; with one framework there is nothing to compare."""
    if "torch" in FRAMEWORKS and PARITY_FRAMEWORKS[1:]:
        # passed.txt is the gate's output: a parity failure fails `all`, not the report.
        return [
            f"{PARITY_DIR}/parity.json",
            f"{PARITY_DIR}/parity.csv",
            f"{PARITY_DIR}/parity.html",
            f"{PARITY_DIR}/batch_norm.html",
            f"{PARITY_DIR}/passed.txt",
        ]
    return []


def recipe_figure_files(recipe):
    folder = RECIPE_FIGURES.format(recipe=recipe)
    return [
        f"{folder}/loss_curves.png",
        f"{folder}/valid_psnr_ssim.png",
        f"{folder}/epoch_time.png",
        f"{folder}/valid_psnr_time.png",
        f"{folder}/memory_utilisation.png",
        *[f"{folder}/qualitative_sigma{s}.png" for s in SIGMAS],
    ]


def recipe_table_files(recipe):
    folder = RECIPE_TABLES.format(recipe=recipe)
    return [
        f"{folder}/{name}.{ext}"
        for name in ("psnr_ssim", "benchmark")
        for ext in ("csv", "html")
    ]


def figure_files():
    """Every figure of the report; parity.png only when there is a parity check."""
    return [
        "results/figures/final_psnr.png",
        *[f for recipe in RECIPES for f in recipe_figure_files(recipe)],
        *(["results/figures/parity.png"] if parity_outputs() else []),
    ]


def final_outputs():
    return [
        "results/tables/psnr_ssim.csv",
        "results/tables/psnr_ssim.html",
        "results/tables/summary.html",
        "results/tables/benchmark.csv",
        "results/tables/time_breakdown.csv",
        "results/tables/time_breakdown.html",
        *[f for recipe in RECIPES for f in recipe_table_files(recipe)],
        *figure_files(),
        *parity_outputs(),
        *claims_outputs(),
        *bmz_outputs(),
    ]


def claims_outputs():
    """The port's claims compare a Jittor with PyTorch: none without both."""
    if "torch" in FRAMEWORKS and PARITY_FRAMEWORKS[1:]:
        return [f"{CLAIMS_TABLE}.{ext}" for ext in ("json", "md", "html")]
    return []


# --- parity ---------------------------------------------------------------------------------

# The networks this run trains, each checked once with the settings of its first recipe
# (masking, optimizer, init: rules lookup() them by arch).
PARITY_ARCHS = list(dict.fromkeys(train.arch for train in RECIPES.values()))
# The frameworks parity runs: PyTorch first, then every Jittor of the run.
PARITY_FRAMEWORKS = ["torch"] + [f for f in FRAMEWORKS if f != "torch"]
PARITY_TRAIN = {
    arch: next(train for train in RECIPE_TRAIN.values() if train["arch"] == arch)
    for arch in PARITY_ARCHS
}


# --- baselines (BM3D) and the methods table -------------------------------------------------
# BM3D runs once per sigma on every BSD68 image in use when `baselines` lists it; the methods
# table and figure set every recipe, placed by its train.method, beside it.
from n2v_repro.paths import BM3D_BENCHMARK, BM3D_EVAL_DIR, METHODS_FIGURE, METHODS_TABLE

# Each recipe's method (n2v, n2v2, n2n, n2c), in the run's recipe order.
RECIPE_METHODS = {name: train.method for name, train in RECIPES.items()}


def baseline_files(name):
    """`name` under each sigma's BM3D evaluation folder ([] with BM3D off), SIGMAS order."""
    if "bm3d" not in BASELINES:
        return []
    return [
        (
            f"{BM3D_EVAL_DIR.format(sigma=s)}/{name}"
            if name
            else BM3D_EVAL_DIR.format(sigma=s)
        )
        for s in SIGMAS
    ]


def baseline_benchmarks():
    return (
        [BM3D_BENCHMARK.format(sigma=s) for s in SIGMAS] if "bm3d" in BASELINES else []
    )


def sigma_baseline_files(name):
    """Input function: `name` of the wildcard sigma's BM3D evaluation ([] with BM3D off)."""
    return lambda wildcards: (
        [f"{BM3D_EVAL_DIR.format(sigma=wildcards.sigma)}/{name}"]
        if "bm3d" in BASELINES
        else []
    )


def sigma_first_seed_files(pattern, name):
    """Input function: `name` of every recipe's first-seed run of each framework at the
    wildcard sigma (runs_of order): the methods figure shows one seed."""
    return lambda wildcards: run_files(
        pattern, name, sigma=wildcards.sigma, seed=SEEDS[0]
    )


def sigma_first_seed_runs(wildcards):
    return runs_of(sigma=wildcards.sigma, seed=SEEDS[0])


def methods_outputs():
    return [
        f"{METHODS_TABLE}.csv",
        f"{METHODS_TABLE}.html",
        *[METHODS_FIGURE.format(sigma=s) for s in SIGMAS],
    ]


# --- end baselines and the methods table ----------------------------------------------------


# --- bioimage.io packages (workflow/rules/bmz.smk) ------------------------------------------

# The weights packaged per run (bmz.weights; null resolved to eval.weights by the config).
BMZ_WEIGHTS = list(CONFIG.bmz.weights)


def bmz_tensor_inputs(wildcards):
    """The run's weights, its training statistics and where its test image comes from."""
    train = RECIPES[wildcards.recipe]
    folder = run_path(
        MODEL_DIR,
        wildcards.recipe,
        wildcards.framework,
        wildcards.sigma,
        wildcards.seed,
    )
    patches = patch_files(train.data_tag, wildcards.sigma)
    return {
        **{name: f"{folder}/{name}.npz" for name in BMZ_WEIGHTS},
        "stats": patches["stats"],
        "valid": patches["valid"],
        "train": patches["train"],
        "index": patches["index"],
    }


def bmz_method(wildcards):
    """What the run's network learnt from, for its package's README (train.method; n2v in
    a configuration without that key)."""
    return RECIPE_TRAIN[wildcards.recipe].get("method", "n2v")


def bmz_export_inputs(wildcards):
    """One package's weights, test tensors, statistics and BSD68 evaluation."""
    train = RECIPES[wildcards.recipe]
    run = (wildcards.recipe, wildcards.framework, wildcards.sigma, wildcards.seed)
    return {
        "weights": f"{run_path(MODEL_DIR, *run)}/{wildcards.weights}.npz",
        "tensors": run_path(BMZ_TENSORS, *run),
        "stats": patch_files(train.data_tag, wildcards.sigma)["stats"],
        "eval_summary": f"{run_path(EVAL_DIR, *run)}/summary.json",
    }


def bmz_files(pattern):
    """`pattern` (BMZ_PACKAGE, BMZ_VALIDATION) of every run and packaged weights."""
    return [
        pattern.format(recipe=r, framework=f, sigma=s, seed=seed, weights=w)
        for r, f, s, seed in RUNS
        for w in BMZ_WEIGHTS
    ]


def bmz_validation_files():
    return bmz_files(BMZ_VALIDATION)


def bmz_outputs():
    """Every package, its validation and the table; none when bmz.export is false."""
    if not CONFIG.bmz.export:
        return []
    return [*bmz_files(BMZ_PACKAGE), f"{BMZ_TABLE}.csv", f"{BMZ_TABLE}.html"]


# --- reference implementations (workflow/rules/references.smk) -----------------------------
from pathlib import Path

from n2v_repro.config import reference_recipes as _reference_recipes
from n2v_repro.paths import (
    REFERENCE_CURVES,
    REFERENCE_ENV_BUILT,
    REFERENCE_EVAL_DIR,
    REFERENCE_MODEL_DIR,
    REFERENCE_PREDICT_BENCHMARK,
    REFERENCE_RUN,
    REFERENCE_SETTINGS,
    REFERENCE_TRAIN_BENCHMARK,
    reference_run_path,
)
from n2v_repro.references.registry import REFERENCE_NAMES, REFERENCES as _REFERENCES

REFERENCES = list(CONFIG.references)
# Where each reference's environment is built; several working directories may share it.
REFERENCE_ENVS = CONFIG.reference_envs
# Every (recipe, reference, sigma, seed) run: each N2V recipe of the run, every seed.
REFERENCE_RUNS = [
    (recipe, name, s, seed)
    for recipe in _reference_recipes(config)
    for name in REFERENCES
    for s in SIGMAS
    for seed in SEEDS
]


# Ours, then the references': the run of each file of all_run_files, in order.
ALL_RUNS = RUNS + REFERENCE_RUNS


def all_run_files(pattern, reference_pattern, name):
    """`name` under `pattern` for every run of ours, then under `reference_pattern` for
    every reference run (ALL_RUNS order)."""
    return run_files(pattern, name) + reference_run_files(reference_pattern, name)


def reference_env(wildcards):
    return REFERENCE_ENV_BUILT.format(
        envs=REFERENCE_ENVS, reference=wildcards.reference
    )


def reference_env_prefix(wildcards):
    return str(Path(reference_env(wildcards)).parent)


def reference_env_file(wildcards):
    return str(Path(workflow.basedir) / _REFERENCES[wildcards.reference].env_file)


def reference_training_inputs(wildcards):
    """The recipe's own training images, validation tiles and statistics; the environment."""
    train = RECIPES[wildcards.recipe]
    return {
        **patch_files(train.data_tag, wildcards.sigma),
        "env": reference_env(wildcards),
    }


def reference_run_files(pattern, name="", recipe=None, sigma=None, seed=None):
    """`name` under `pattern` of each reference run (REFERENCE_RUNS order), filtered."""
    return [
        (
            f"{reference_run_path(pattern, *run)}/{name}"
            if name
            else reference_run_path(pattern, *run)
        )
        for run in REFERENCE_RUNS
        if (recipe is None or run[0] == recipe)
        and (sigma is None or run[2] == int(sigma))
        and (seed is None or run[3] == int(seed))
    ]


def reference_runs_of(recipe=None):
    return [run for run in REFERENCE_RUNS if recipe is None or run[0] == recipe]


def reference_outputs():
    """The references' settings tables and validation curves, per recipe that has them."""
    recipes = dict.fromkeys(run[0] for run in REFERENCE_RUNS)
    return [
        *[
            f"{REFERENCE_SETTINGS.format(recipe=r, reference=name)}.{ext}"
            for r in recipes
            for name in REFERENCES
            for ext in ("csv", "html")
        ],
        *[REFERENCE_CURVES.format(recipe=r) for r in recipes],
    ]
