from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.reference_tables import plot_valid_loss

    plot_valid_loss(
        histories=snakemake.input.histories,
        runs=snakemake.params.runs,
        path=snakemake.output[0],
    )
