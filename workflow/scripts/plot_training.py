from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.figures import make_training_figures
    from n2v_repro.report.tables import pair_runs

    runs = snakemake.params.runs
    make_training_figures(
        histories=pair_runs(runs, snakemake.input.histories),
        monitors=pair_runs(runs, snakemake.input.monitors),
        loss_curves=snakemake.output.loss_curves,
        valid_metrics=snakemake.output.valid_metrics,
        valid_psnr_time=snakemake.output.valid_psnr_time,
        epoch_time=snakemake.output.epoch_time,
        memory_utilisation=snakemake.output.memory_utilisation,
        validation=snakemake.params.validation,
    )
