from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.config import MaskingConfig, from_plain
    from n2v_repro.parity import write_parity_inputs

    write_parity_inputs(
        snakemake.output[0],
        arch=snakemake.wildcards.arch,
        seed=snakemake.params.seed,
        batch_size=snakemake.params.batch_size,
        masking=from_plain(MaskingConfig, snakemake.params.masking),
        init=snakemake.params.init,
    )
