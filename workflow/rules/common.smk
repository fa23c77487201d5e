# The validated config, wildcard constraints, and the input functions that the rules use;
# the path patterns are n2v_repro.paths, the runs n2v_repro.pipeline. No rules here.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from n2v_repro.backends.registry import FRAMEWORKS as KNOWN_FRAMEWORKS
from n2v_repro.config import plain
from n2v_repro.errors import UserError
from n2v_repro.framework_site import framework_package
from n2v_repro.models.initialisation import INIT_SCHEMES
from n2v_repro.models.spec import ARCHS

# Every path pattern (MODEL_DIR, EVAL_DIR, ...) and run_path, under its own name.
from n2v_repro.paths import *
from n2v_repro.pipeline import inputs
from n2v_repro.pipeline.runs import our_runs, reference_runs, select
from n2v_repro.pipeline.runs import run_files as _run_files
from n2v_repro.report.categories import report_category as _report_category

min_version("9.0")

# The merged config, validated once into frozen dataclasses; Snakemake's `config` keeps the
# plain mapping with every default filled in.
try:
    CONFIG, IMAGES = inputs.load(config)
except UserError as error:
    raise WorkflowError(str(error)) from None

SIGMAS = list(CONFIG.sigmas)
FRAMEWORKS = list(CONFIG.frameworks)
SEEDS = list(CONFIG.seeds)
# The recipes this run trains, by name, in the report's order (recipes x recipe_book).
RECIPES = {recipe.name: recipe.train for recipe in CONFIG.run_recipes}
# Every (recipe, framework, sigma, seed) training run, then every (recipe, reference, sigma,
# seed) run of the reference implementations: the one order of every per-run list.
RUNS = our_runs(CONFIG)
REFERENCE_RUNS = reference_runs(CONFIG)
ALL_RUNS = RUNS + REFERENCE_RUNS
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
IMAGE_IDS = IMAGES.ids
BSD68_IDS = IMAGE_IDS["bsd68"]
JPGS = {
    dataset: [f"resources/bsds500/{IMAGES.split_of[i]}/{i}.jpg" for i in ids]
    for dataset, ids in IMAGE_IDS.items()
}
GRAY_PNGS = {
    dataset: [GRAY_PNG.format(dataset=dataset, image_id=i) for i in ids]
    for dataset, ids in IMAGE_IDS.items()
}


def data_mem_mb(wildcards):
    """add_noise / patchify hold the noisy set as float32 plus one float64 image at a time;
    x3 covers the npz being written and numpy's temporaries, plus the interpreter."""
    n_bytes = 4 * BSDS500_IMAGE_PIXELS * sum(len(ids) for ids in IMAGE_IDS.values())
    return 3 * n_bytes // 2**20 + 500


def data_benchmarks(wildcards):
    """The benchmark of every data job the run makes: the time breakdown's data row."""
    datasets = list(IMAGE_IDS)
    return [
        DOWNLOAD_BENCHMARK,
        *expand(GRAY_BENCHMARK, dataset=datasets),
        SPLIT_BENCHMARK,
        *expand(NOISE_BENCHMARK, sigma=SIGMAS, dataset=datasets),
        *expand(
            NOISE2_BENCHMARK, sigma=SIGMAS if NEEDS_NOISY2 else [], dataset="bsd400"
        ),
        *expand(PATCH_BENCHMARK, data_tag=DATA_TAGS, sigma=SIGMAS),
    ]


def patch_files(data_tag, sigma):
    with_target = DATA_TAG_TARGET.get(data_tag, "noisy") != "noisy"
    return inputs.patch_files(data_tag, sigma, with_target)


def patchify_inputs(w):
    train, crops = DATA_TAGS[w.data_tag], CONFIG.data.train400_crops
    return inputs.patchify_inputs(train, w.sigma, GRAY_PNGS, crops)


def training_inputs(wildcards):
    train = RECIPES[wildcards.recipe]
    return {
        **patch_files(train.data_tag, wildcards.sigma),
        "init": INIT_WEIGHTS.format(
            arch=train.arch, init=train.init, seed=wildcards.seed
        ),
    }


# The `gpu` resource of a training/evaluation job.
JOB_GPUS = 1 if inputs.uses_gpu(CONFIG) else 0


def framework_threads():
    """A training/evaluation job's threads; `workflow.cores` raises under a cluster."""
    try:
        cores = workflow.cores
    except WorkflowError:
        cores = None
    return inputs.framework_threads(cores, bool(JOB_GPUS))


# Per recipe the settings the report needs (scripts/aggregate_tables.py).
RECIPE_SETTINGS = inputs.recipe_settings(CONFIG)


def one_recipe_settings(wildcards):
    return {wildcards.recipe: RECIPE_SETTINGS[wildcards.recipe]}


def evaluation_inputs(wildcards):
    """The test images, the training statistics and the weights named in eval.weights."""
    train = RECIPES[wildcards.recipe]
    folder = MODEL_DIR.format(**wildcards)
    return {
        "clean": GRAY_PNGS["bsd68"],
        "noisy": NOISY_NPZ.format(sigma=wildcards.sigma, dataset="bsd68"),
        "split": BSD68_SPLIT,
        "stats": patch_files(train.data_tag, wildcards.sigma)["stats"],
        **{name: f"{folder}/{name}.npz" for name in CONFIG.eval.weights},
    }


def runs_of(recipe=None, sigma=None, seed=None, references=False):
    """Our runs (with `references`, then the references') of one recipe / sigma / seed."""
    return select(ALL_RUNS if references else RUNS, recipe, sigma, seed)


def run_files(pattern, name="", reference_pattern="", **which):
    """`name` under `pattern` of each of runs_of(**which); with `reference_pattern`, the
    reference runs' after ours, under it."""
    runs = runs_of(references=bool(reference_pattern), **which)
    return _run_files(runs, pattern, name, reference_pattern)


def recipe_run_files(pattern, name, reference_pattern=""):
    """Input function: run_files of the wildcard's recipe."""
    return lambda w: run_files(pattern, name, reference_pattern, recipe=w.recipe)


def recipe_runs(wildcards):
    """The run of each file of recipe_run_files without references, in order."""
    return runs_of(recipe=wildcards.recipe)


def recipe_all_runs(wildcards):
    """The run of each file of recipe_run_files with references, in order."""
    return runs_of(recipe=wildcards.recipe, references=True)


def first_seed_files(pattern, name):
    """Input function: each framework's first-seed run at the wildcards' recipe and sigma
    (the qualitative figure shows one seed)."""
    return lambda w: run_files(
        pattern, name, recipe=w.recipe, sigma=w.sigma, seed=SEEDS[0]
    )


def first_seed_frameworks(w):
    """The framework of each of first_seed_files' files."""
    return [run[1] for run in runs_of(recipe=w.recipe, sigma=w.sigma, seed=SEEDS[0])]


def report_category(section):
    """Report menu categories, in order: summary, one per recipe, parity."""
    return _report_category(section, list(RECIPES))


def recipe_category(wildcards):
    return report_category(wildcards.recipe)


# --- parity ---------------------------------------------------------------------------------

# The networks this run trains, each checked once with the settings of its first recipe
# (masking, optimizer, init: rules lookup() them by arch).
PARITY_ARCHS = list(dict.fromkeys(train.arch for train in RECIPES.values()))
# The frameworks parity runs: PyTorch first, then every Jittor of the run.
PARITY_FRAMEWORKS = ["torch"] + [f for f in FRAMEWORKS if f != "torch"]
# Parity and the port's claims compare a Jittor with PyTorch: none without both.
HAS_PARITY = "torch" in FRAMEWORKS and len(PARITY_FRAMEWORKS) > 1
PARITY_TRAIN = {
    arch: next(train for train in RECIPE_TRAIN.values() if train["arch"] == arch)
    for arch in PARITY_ARCHS
}


# --- baselines (BM3D) and the methods table -------------------------------------------------
# BM3D runs once per sigma on every BSD68 image in use when `baselines` lists it; the methods
# table and figure set every recipe, placed by its train.method, beside it.

# Each recipe's method (n2v, n2v2, n2n, n2c), in the run's recipe order.
RECIPE_METHODS = {name: train.method for name, train in RECIPES.items()}


# The sigmas BM3D runs at: every sigma when `baselines` lists it, else none.
BM3D_SIGMAS = SIGMAS if "bm3d" in BASELINES else []


def baseline_files(name):
    """`name` under each sigma's BM3D evaluation folder ([] with BM3D off), SIGMAS order."""
    return [f"{BM3D_EVAL_DIR.format(sigma=s)}/{name}".rstrip("/") for s in BM3D_SIGMAS]


def sigma_baseline_files(name):
    """Input function: `name` of the wildcard sigma's BM3D evaluation ([] with BM3D off)."""
    return lambda w: (
        [f"{BM3D_EVAL_DIR.format(sigma=w.sigma)}/{name}"] if BM3D_SIGMAS else []
    )


def sigma_first_seed_files(pattern, name):
    """Input function: every recipe's first-seed run of each framework at the wildcard
    sigma: the methods figure shows one seed."""
    return lambda w: run_files(pattern, name, sigma=w.sigma, seed=SEEDS[0])


def sigma_first_seed_runs(w):
    return runs_of(sigma=w.sigma, seed=SEEDS[0])


# --- bioimage.io packages (workflow/rules/bmz.smk) ------------------------------------------

# The weights packaged per run (bmz.weights; null resolved to eval.weights by the config).
BMZ_WEIGHTS = list(CONFIG.bmz.weights)


def bmz_tensor_inputs(wildcards):
    """The run's weights, its training statistics and where its test image comes from."""
    train = RECIPES[wildcards.recipe]
    folder = MODEL_DIR.format(**wildcards)
    patches = patch_files(train.data_tag, wildcards.sigma)
    return {
        **{name: f"{folder}/{name}.npz" for name in BMZ_WEIGHTS},
        **{key: patches[key] for key in ("stats", "valid", "train", "index")},
    }


def bmz_export_inputs(wildcards):
    """One package's weights, test tensors, statistics and BSD68 evaluation."""
    train = RECIPES[wildcards.recipe]
    return {
        "weights": f"{MODEL_DIR.format(**wildcards)}/{wildcards.weights}.npz",
        "tensors": BMZ_TENSORS.format(**wildcards),
        "stats": patch_files(train.data_tag, wildcards.sigma)["stats"],
        "eval_summary": f"{EVAL_DIR.format(**wildcards)}/summary.json",
    }


def bmz_validation_files():
    """The `bioimageio test` summary of every run's packaged weights."""
    return [
        BMZ_VALIDATION.format(recipe=r, framework=f, sigma=s, seed=seed, weights=w)
        for r, f, s, seed in RUNS
        for w in BMZ_WEIGHTS
    ]


# --- reference implementations (workflow/rules/references.smk) -----------------------------
from pathlib import Path

from n2v_repro.references.registry import REFERENCE_NAMES, REFERENCES as _REFERENCES

REFERENCES = list(CONFIG.references)
# Where each reference's environment is built; several working directories may share it.
REFERENCE_ENVS = CONFIG.reference_envs


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
