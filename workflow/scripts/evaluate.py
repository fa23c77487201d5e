import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.evaluation.predict import run_evaluation

    run_evaluation(
        framework=snakemake.wildcards.framework,
        arch=snakemake.params.arch,
        sigma=int(snakemake.wildcards.sigma),
        clean_pngs=snakemake.input.clean,
        noisy_npz=snakemake.input.noisy,
        split_csv=snakemake.input.split,
        stats_json=snakemake.input.stats,
        weight_files={name: snakemake.input[name] for name in snakemake.params.weights},
        per_image_csv=snakemake.output.per_image,
        summary_json=snakemake.output.summary,
        denoised_dir=snakemake.output.denoised,
        device=snakemake.params.device,
        threads=snakemake.threads,
        tta=snakemake.params.tta,
    )
