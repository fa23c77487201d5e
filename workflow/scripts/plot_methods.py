from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.figures_eval import make_methods_figure

    # BM3D's folder and per_image.csv are absent when `baselines` leaves it out.
    bm3d_denoised = snakemake.input.bm3d_denoised
    bm3d_per_image = snakemake.input.bm3d_per_image
    make_methods_figure(
        sigma=int(snakemake.wildcards.sigma),
        clean_pngs=snakemake.input.clean,
        noisy_npz=snakemake.input.noisy,
        split_csv=snakemake.input.split,
        runs=snakemake.params.runs,
        denoised_dirs=snakemake.input.denoised,
        per_image_csvs=snakemake.input.per_image,
        recipe_methods=snakemake.params.methods,
        weights=snakemake.params.weights,
        output=snakemake.output[0],
        bm3d_denoised=bm3d_denoised[0] if bm3d_denoised else None,
        bm3d_per_image=bm3d_per_image[0] if bm3d_per_image else None,
    )
