"""The table of the run's bioimage.io packages and their `bioimageio test` status."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.bmz.table import write_package_table

    write_package_table(
        snakemake.input.validations,
        csv_path=snakemake.output.csv,
        html_path=snakemake.output.html,
    )
