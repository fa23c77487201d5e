from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.references.launch import predict_reference

    predict_reference(
        name=snakemake.wildcards.reference,
        prefix=snakemake.params.prefix,
        model_dir=snakemake.input.model,
        noisy_npz=snakemake.input.noisy,
        split_csv=snakemake.input.split,
        seed=int(snakemake.wildcards.seed),
        predictions_npz=snakemake.output.predictions,
        inference_json=snakemake.output.inference,
        threads=snakemake.threads,
        log_path=snakemake.log[0],
    )
