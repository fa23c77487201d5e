from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.tables import make_methods_table, pair_runs

    make_methods_table(
        summaries=snakemake.input.summaries,
        per_image=pair_runs(snakemake.params.runs, snakemake.input.per_image),
        recipe_methods=snakemake.params.methods,
        baseline_summaries=snakemake.input.baselines,
        csv_path=snakemake.output.csv,
        html_path=snakemake.output.html,
    )
