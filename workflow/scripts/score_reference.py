from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.references.registry import reference
    from n2v_repro.references.scoring import score_reference

    name = snakemake.wildcards.reference
    score_reference(
        name=name,
        recipe=snakemake.wildcards.recipe,
        arch=snakemake.params.arch,
        sigma=int(snakemake.wildcards.sigma),
        seed=int(snakemake.wildcards.seed),
        validation=snakemake.params.validation,
        weights=reference(name).weights,
        clean_pngs=snakemake.input.clean,
        noisy_npz=snakemake.input.noisy,
        split_csv=snakemake.input.split,
        predictions_npz=snakemake.input.predictions,
        inference_json=snakemake.input.inference,
        per_image_csv=snakemake.output.per_image,
        summary_json=snakemake.output.summary,
        denoised_dir=snakemake.output.denoised,
    )
