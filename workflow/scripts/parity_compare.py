from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.parity import compare_frameworks

    archs, frameworks = list(snakemake.params.archs), list(snakemake.params.frameworks)
    results = list(snakemake.input.results)  # expand(): framework-major, then arch
    compare_frameworks(
        archs=archs,
        framework_paths={
            fw: results[i * len(archs) : (i + 1) * len(archs)] for i, fw in enumerate(frameworks)
        },
        reference_paths=list(snakemake.input.reference),
        json_path=snakemake.output.json,
        csv_path=snakemake.output.csv,
        html_path=snakemake.output.html,
        finding_html_path=snakemake.output.finding,
        tolerance=snakemake.params.tolerance,
    )
