from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.evaluation.bm3d_baseline import run_bm3d

    run_bm3d(
        sigma=int(snakemake.wildcards.sigma),
        clean_pngs=snakemake.input.clean,
        noisy_npz=snakemake.input.noisy,
        split_csv=snakemake.input.split,
        per_image_csv=snakemake.output.per_image,
        summary_json=snakemake.output.summary,
        denoised_dir=snakemake.output.denoised,
    )
