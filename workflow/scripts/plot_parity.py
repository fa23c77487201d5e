from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.figures_eval import make_parity_figure

    make_parity_figure(
        parity_csv=snakemake.input.csv,
        parity_json=snakemake.input.json,
        output=snakemake.output[0],
    )
