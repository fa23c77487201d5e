from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.reference_tables import make_settings_table

    make_settings_table(
        summary_json=snakemake.input.summary,
        csv_path=snakemake.output.csv,
        html_path=snakemake.output.html,
    )
