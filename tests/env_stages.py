"""The pipeline's stages, run inside one per-rule environment (helper of tests/test_envs.py).

`python env_stages.py <stage> <workdir>` runs, with the interpreter of the environment under
test, the library calls that the workflow scripts of that environment's rules make, on tiny
generated data, and checks that the framework the environment must not hold is absent:

- data (envs/analysis.yaml): download, gray, split, noise, patches, initial weights;
- torch / jittor (envs/torch.yaml, envs/jittor.yaml): one training epoch of one step, then
  the evaluation of the saved weights;
- report (envs/analysis.yaml): tables and figures from the torch and jittor outputs.

Only the standard library, the environment's packages, <repo>/src and this folder are
importable here (the test sets PYTHONPATH, as Snakemake extends a script's sys.path).
Paths follow docs/architecture.md, below `workdir`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SIGMA = 25
ARCH = "n2n_unet"
SEED = 123
PATCH_SIZE = 64
FRAMEWORKS = ("torch", "jittor")
RECIPE = "port"
DATA_TAG = "bsd400_bsd68_split"
INIT = f"results/init/{ARCH}_torch_default_seed{SEED}.npz"


def run_path(framework: str) -> str:
    """The run folder of `framework` (workflow/rules/common.smk RUN)."""
    return f"results/{RECIPE}/{framework}/sigma{SIGMA}/seed{SEED}"


# Each environment must NOT hold these (the rules of one framework never import the other).
FORBIDDEN = {
    "data": ("torch", "jittor"),
    "report": ("torch", "jittor"),
    "torch": ("jittor",),
    "jittor": ("torch",),
}


def check_forbidden(stage: str) -> None:
    """Fail if a framework this environment must not contain can be found at all."""
    present = [name for name in FORBIDDEN[stage] if importlib.util.find_spec(name) is not None]
    if present:
        raise SystemExit(f"environment for stage {stage!r} must not contain {present}")


def data_stage(workdir: Path) -> None:
    from fake_bsds import make_fake_bsds

    from n2v_repro.config import ValidationConfig
    from n2v_repro.data.download import download_images
    from n2v_repro.data.gray import convert_images
    from n2v_repro.data.manifest import bsd68_ids, read_manifest, train_ids
    from n2v_repro.data.noise import write_noisy_sets
    from n2v_repro.data.patches import patchify
    from n2v_repro.data.split import make_split
    from n2v_repro.models.initialisation import write_init_weights

    fake = make_fake_bsds(workdir / "mirror", n_train=3, n_test=1, n_val=4, n_bsd68=4)
    manifest = read_manifest(fake.manifest)
    train = train_ids(manifest)
    bsd68 = bsd68_ids(manifest, fake.bsd68_ids)
    jpgs = [workdir / f"resources/bsds500/{manifest[i].split}/{i}.jpg" for i in train + bsd68]
    # The mirror is a plain folder (file:// through urllib): the same code path as http.
    download_images(jpgs, fake.manifest, [str(fake.images)], workdir / "resources/.cache")
    train_pngs = [workdir / f"resources/gray/bsd400/{i}.png" for i in train]
    bsd68_pngs = [workdir / f"resources/gray/bsd68/{i}.png" for i in bsd68]
    convert_images(
        jpgs=jpgs,
        train_pngs=train_pngs,
        bsd68_pngs=bsd68_pngs,
        pixel_hashes_file=fake.bsd68_pixels,
        workers=1,
    )
    split_csv = workdir / "resources/bsd68_split.csv"
    make_split(path=split_csv, ids=bsd68, n_valid=2, seed=SEED)
    noisy = workdir / f"resources/noisy/sigma{SIGMA}"
    write_noisy_sets(
        datasets={
            "bsd400": (train_pngs, noisy / "bsd400.npz"),
            "bsd68": (bsd68_pngs, noisy / "bsd68.npz"),
        },
        sigma=SIGMA,
        seed=SEED,
    )
    patches = workdir / f"resources/patches/{DATA_TAG}/sigma{SIGMA}"
    patchify(
        validation=ValidationConfig("bsd68_split", 4),
        train_npz=noisy / "bsd400.npz",
        bsd68_npz=noisy / "bsd68.npz",
        split_csv=split_csv,
        clean_bsd68_pngs=bsd68_pngs,
        patch_size=PATCH_SIZE,
        outputs={
            "train": patches / "train.npy",
            "index": patches / "train_index.csv",
            "stats": patches / "train_stats.json",
            "valid": patches / "valid_tiles.npz",
        },
    )
    write_init_weights(str(workdir / INIT), ARCH, SEED, "torch_default")


def framework_stage(workdir: Path, framework: str) -> None:
    from n2v_repro.config import PipelineConfig
    from n2v_repro.evaluation.predict import run_evaluation
    from n2v_repro.training.job import TrainJob
    from n2v_repro.training.loop import train

    config = PipelineConfig.from_mapping(
        {
            "frameworks": [framework],
            "sigmas": [SIGMA],
            "train": {
                "arch": ARCH,
                "epochs": 1,
                "steps_per_epoch": 1,
                "batch_size": 2,
                "valid_tiles": 2,
                "device": "cpu",
            },
        }
    )
    patches = workdir / f"resources/patches/{DATA_TAG}/sigma{SIGMA}"
    run = workdir / run_path(framework)
    models = run / "model"
    train(
        TrainJob(
            framework=framework,
            patch_dir=patches,
            init_weights=workdir / INIT,
            out_dir=models,
            checkpoint=run / "checkpoint" / "checkpoint.npz",
            train=config.train,
            patch_size=PATCH_SIZE,
            seed=SEED,
            threads=2,
        )
    )
    evaluation = run / "eval"
    run_evaluation(
        framework=framework,
        arch=ARCH,
        sigma=SIGMA,
        recipe=RECIPE,
        seed=SEED,
        validation="bsd68_split",
        clean_pngs=sorted(str(p) for p in (workdir / "resources/gray/bsd68").glob("*.png")),
        noisy_npz=workdir / f"resources/noisy/sigma{SIGMA}/bsd68.npz",
        split_csv=workdir / "resources/bsd68_split.csv",
        stats_json=patches / "train_stats.json",
        weight_files={name: models / f"{name}.npz" for name in ("last", "best")},
        per_image_csv=evaluation / "per_image.csv",
        summary_json=evaluation / "summary.json",
        denoised_dir=evaluation / "denoised",
        device="cpu",
        threads=2,
        tta=False,
    )


def report_stage(workdir: Path) -> None:
    from n2v_repro.config import PipelineConfig, plain
    from n2v_repro.report.figures import make_training_figures
    from n2v_repro.report.figures_eval import make_final_psnr_figure, make_qualitative_figure
    from n2v_repro.report.tables import make_tables

    def per_run(name: str) -> dict[tuple[str, str, int, int], str]:
        return {(RECIPE, f, SIGMA, SEED): str(workdir / run_path(f) / name) for f in FRAMEWORKS}

    def per_framework(name: str) -> dict[str, str]:
        return {run[1]: path for run, path in per_run(name).items()}

    # Snakemake's benchmark file of each training job (written by Snakemake, not the library).
    benchmarks = {
        (RECIPE, f, SIGMA, SEED): str(workdir / f"benchmarks/train/{run_path(f)[8:]}.tsv")
        for f in FRAMEWORKS
    }
    for path in benchmarks.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t900.1\n")
    summaries = list(per_run("eval/summary.json").values())
    histories = per_run("model/history.csv")
    monitors = per_run("model/monitor.csv")
    tables, figures = workdir / "results/tables", workdir / "results/figures"
    make_tables(
        summaries=summaries,
        per_image=per_run("eval/per_image.csv"),
        histories=histories,
        monitors=monitors,
        train_benchmarks=benchmarks,
        recipe_settings={RECIPE: {"settings": plain(PipelineConfig.from_mapping({}).train)}},
        psnr_ssim_csv=tables / "psnr_ssim.csv",
        psnr_ssim_html=tables / "psnr_ssim.html",
        benchmark_csv=tables / "benchmark.csv",
        benchmark_html=tables / "benchmark.html",
        summary_html=tables / "summary.html",
    )
    make_training_figures(
        histories=histories,
        monitors=monitors,
        loss_curves=figures / "loss_curves.png",
        valid_metrics=figures / "valid_psnr_ssim.png",
        valid_psnr_time=figures / "valid_psnr_time.png",
        epoch_time=figures / "epoch_time.png",
        memory_utilisation=figures / "memory_utilisation.png",
        validation="bsd68_split",
    )
    make_final_psnr_figure(
        summaries=summaries,
        output=figures / "final_psnr.png",
        html_output=figures / "final_psnr.html",
        recipe_order=[RECIPE],
    )
    make_qualitative_figure(
        sigma=SIGMA,
        clean_pngs=sorted(str(p) for p in (workdir / "resources/gray/bsd68").glob("*.png")),
        noisy_npz=workdir / f"resources/noisy/sigma{SIGMA}/bsd68.npz",
        split_csv=workdir / "resources/bsd68_split.csv",
        denoised_dirs=per_framework("eval/denoised"),
        per_image_csvs=per_framework("eval/per_image.csv"),
        n_images=2,
        output=figures / f"qualitative_sigma{SIGMA}.png",
        recipe=RECIPE,
        seed=SEED,
    )


def main(stage: str, workdir: Path) -> None:
    check_forbidden(stage)
    if stage == "data":
        data_stage(workdir)
    elif stage == "report":
        report_stage(workdir)
    else:
        framework_stage(workdir, stage)
    print(f"stage {stage} done with {sys.executable}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
