from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.parity import check_parity

    check_parity(json_path=snakemake.input[0], passed_path=snakemake.output[0])
