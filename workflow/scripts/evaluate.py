from n2v_repro.framework_site import use_framework_site

# Before numpy is imported: Jittor's own numpy < 2 on a one-Python GPU machine (docs/gpu.md).
use_framework_site(snakemake.wildcards.framework)
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.backends.gpu_select import claim_gpu_for_job

    # Before any framework starts CUDA: this job's own GPU on a node with several (docs/gpu.md).
    gpu_lease = claim_gpu_for_job(snakemake.params.device)

    from n2v_repro.evaluation.predict import run_evaluation

    run_evaluation(
        framework=snakemake.wildcards.framework,
        arch=snakemake.params.arch,
        sigma=int(snakemake.wildcards.sigma),
        recipe=snakemake.wildcards.recipe,
        seed=int(snakemake.wildcards.seed),
        validation=snakemake.params.validation,
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
        precision=snakemake.params.precision,
    )
