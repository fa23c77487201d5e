from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.references.launch import train_reference

    train_reference(
        name=snakemake.wildcards.reference,
        prefix=snakemake.params.prefix,
        recipe=snakemake.wildcards.recipe,
        train=snakemake.params.train,
        patch_size=snakemake.params.patch_size,
        sigma=int(snakemake.wildcards.sigma),
        seed=int(snakemake.wildcards.seed),
        inputs=snakemake.input,
        model_dir=snakemake.output.model,
        history_csv=snakemake.output.history,
        monitor_csv=snakemake.output.monitor,
        summary_json=snakemake.output.summary,
        threads=snakemake.threads,
        log_path=snakemake.log[0],
    )
