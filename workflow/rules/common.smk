# Config loading, wildcard constraints, path patterns, and the input functions and target
# lists that the rules use. No rules here.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from n2v_repro.backends.jittor_env import cuda_driver_available
from n2v_repro.backends.registry import FRAMEWORKS as KNOWN_FRAMEWORKS
from n2v_repro.config import ConfigError, PipelineConfig, plain
from n2v_repro.data import manifest as _manifest
from n2v_repro.models.spec import ARCHS

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
# Every (framework, sigma) training run, in the one order that every per-run list follows.
RUNS = [(fw, s) for fw in FRAMEWORKS for s in SIGMAS]
ARCH = CONFIG.train.arch
SEED = CONFIG.seed


wildcard_constraints:
    sigma=r"\d+",
    framework="|".join(KNOWN_FRAMEWORKS),
    image_id=r"[^/]+",
    arch="|".join(ARCHS),
    seed=r"\d+",


# --- path patterns (each defined once; rules and target lists format them) ------------------

NOISY_NPZ = "resources/noisy/sigma{sigma}/{dataset}.npz"
PATCH_DIR = "resources/patches/sigma{sigma}"
INIT_WEIGHTS = "results/init/{arch}_seed{seed}.npz"
MODEL_DIR = "results/models/{framework}/sigma{sigma}"
CHECKPOINT = "results/checkpoints/{framework}/sigma{sigma}/checkpoint.npz"
EVAL_DIR = "results/eval/{framework}/sigma{sigma}"
TRAIN_BENCHMARK = "benchmarks/train/{framework}/sigma{sigma}.tsv"
PARITY_DIR = "results/parity"
PARITY_INPUTS = f"{PARITY_DIR}/inputs/{{arch}}.npz"
PARITY_RESULT = f"{PARITY_DIR}/{{framework}}/{{arch}}.npz"
# Verified downloads; not a declared output, so a failed job never deletes them.
DOWNLOAD_CACHE = "resources/.download_cache"

# Pixels of one BSDS500 image (481 x 321): sizes the memory of the whole-set data jobs.
BSDS500_IMAGE_PIXELS = 481 * 321


# --- data -----------------------------------------------------------------------------------


def downloaded_jpgs():
    """Every jpg the run needs: the training images and the BSD68 images in use."""
    return [
        f"resources/bsds500/{MANIFEST[i].split}/{i}.jpg" for i in TRAIN_IDS + BSD68_IDS
    ]


def gray_train_pngs():
    return [f"resources/gray/bsd400/{i}.png" for i in TRAIN_IDS]


def gray_bsd68_pngs():
    return [f"resources/gray/bsd68/{i}.png" for i in BSD68_IDS]


def data_mem_mb(wildcards):
    """add_noise / patchify hold the noisy set as float32 plus one float64 image at a time;
    x3 covers the npz being written and numpy's temporaries, plus the interpreter."""
    n_bytes = 4 * BSDS500_IMAGE_PIXELS * (len(TRAIN_IDS) + len(BSD68_IDS))
    return 3 * n_bytes // 2**20 + 500


def patch_files(sigma):
    folder = PATCH_DIR.format(sigma=sigma)
    return {
        "train": f"{folder}/train.npy",
        "index": f"{folder}/train_index.csv",
        "stats": f"{folder}/train_stats.json",
        "valid": f"{folder}/valid_tiles.npz",
    }


def training_inputs(wildcards):
    return {
        **patch_files(wildcards.sigma),
        "init": INIT_WEIGHTS.format(arch=ARCH, seed=SEED),
    }


# --- training and evaluation ----------------------------------------------------------------


def uses_gpu():
    """Whether training/evaluation jobs occupy a GPU: decides the `gpu` resource."""
    device = CONFIG.train.device
    return device == "cuda" or (device == "auto" and cuda_driver_available())


def gpu_jobs_resource():
    return 1 if uses_gpu() else 0


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


def model_dir(framework, sigma):
    return MODEL_DIR.format(framework=framework, sigma=sigma)


def eval_dir(framework, sigma):
    return EVAL_DIR.format(framework=framework, sigma=sigma)


def evaluation_inputs(wildcards):
    """The test images, the training statistics and the weights named in eval.weights."""
    folder = model_dir(wildcards.framework, wildcards.sigma)
    return {
        "clean": gray_bsd68_pngs(),
        "noisy": NOISY_NPZ.format(sigma=wildcards.sigma, dataset="bsd68"),
        "split": "resources/bsd68_split.csv",
        "stats": patch_files(wildcards.sigma)["stats"],
        **{name: f"{folder}/{name}.npz" for name in CONFIG.eval.weights},
    }


def sigma_denoised_dirs(wildcards):
    return [f"{eval_dir(fw, wildcards.sigma)}/denoised" for fw in FRAMEWORKS]


def sigma_per_image_csvs(wildcards):
    return [f"{eval_dir(fw, wildcards.sigma)}/per_image.csv" for fw in FRAMEWORKS]


def all_eval_summaries():
    return [f"{eval_dir(fw, s)}/summary.json" for fw, s in RUNS]


def all_histories():
    return [f"{model_dir(fw, s)}/history.csv" for fw, s in RUNS]


def all_monitors():
    return [f"{model_dir(fw, s)}/monitor.csv" for fw, s in RUNS]


def all_train_benchmarks():
    return [
        TRAIN_BENCHMARK.format(framework=fw, sigma=s)
        for fw in FRAMEWORKS
        for s in SIGMAS
    ]


def parity_outputs():
    """Parity needs both frameworks; with one configured there is nothing to compare."""
    if set(FRAMEWORKS) >= set(KNOWN_FRAMEWORKS):
        # passed.txt is the gate's output: a parity failure fails `all`, not the report.
        return [
            f"{PARITY_DIR}/parity.json",
            f"{PARITY_DIR}/parity.csv",
            f"{PARITY_DIR}/parity.html",
            f"{PARITY_DIR}/passed.txt",
        ]
    return []


def figure_files():
    """Every figure of the report; parity.png only when there is a parity check."""
    return [
        "results/figures/loss_curves.png",
        "results/figures/valid_psnr_ssim.png",
        "results/figures/epoch_time.png",
        "results/figures/memory_utilisation.png",
        "results/figures/final_psnr.png",
        *[f"results/figures/qualitative_sigma{s}.png" for s in SIGMAS],
        *(["results/figures/parity.png"] if parity_outputs() else []),
    ]


def final_outputs():
    return [
        "results/tables/psnr_ssim.csv",
        "results/tables/psnr_ssim.html",
        "results/tables/benchmark.csv",
        "results/tables/benchmark.html",
        *figure_files(),
        *parity_outputs(),
    ]


# --- parity ---------------------------------------------------------------------------------

PARITY_ARCHS = list(ARCHS)


def parity_threads():
    """Parity jobs are small; on CPU they still get the cores so that no two share them."""
    return framework_threads()
