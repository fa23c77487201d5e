from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.figures_eval import make_final_psnr_figure

    make_final_psnr_figure(
        summaries=snakemake.input.summaries,
        output=snakemake.output.png,
        recipe_order=snakemake.params.recipes,
    )
