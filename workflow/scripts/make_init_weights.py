from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.models.initialisation import write_init_weights

    write_init_weights(
        snakemake.output[0],
        arch=snakemake.wildcards.arch,
        seed=int(snakemake.wildcards.seed),
        scheme=snakemake.wildcards.init,
    )
