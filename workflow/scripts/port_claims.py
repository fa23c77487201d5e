from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.claims import write_claims
    from n2v_repro.report.tables import pair_runs, psnr_ssim_rows, read_per_images, read_summaries

    runs = snakemake.params.runs
    accuracy = psnr_ssim_rows(
        read_summaries(snakemake.input.summaries),
        read_per_images(pair_runs(runs, snakemake.input.per_image)),
    )
    write_claims(
        runs=runs,
        histories=snakemake.input.histories,
        monitors=snakemake.input.monitors,
        train_summaries=snakemake.input.train_summaries,
        accuracy=accuracy,
        json_path=snakemake.output.json,
        html_path=snakemake.output.html,
        markdown_path=snakemake.output.markdown,
    )
