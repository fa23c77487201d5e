from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.figures_eval import make_qualitative_figure

    make_qualitative_figure(
        sigma=int(snakemake.wildcards.sigma),
        clean_pngs=snakemake.input.clean,
        noisy_npz=snakemake.input.noisy,
        split_csv=snakemake.input.split,
        denoised_dirs=dict(zip(snakemake.params.frameworks, snakemake.input.denoised, strict=True)),
        per_image_csvs=dict(
            zip(snakemake.params.frameworks, snakemake.input.per_image, strict=True)
        ),
        n_images=snakemake.params.n_images,
        output=snakemake.output[0],
        recipe=snakemake.wildcards.recipe,
        seed=snakemake.params.seed,
    )
