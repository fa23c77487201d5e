from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.report.tables import make_tables, make_time_breakdown, pair_runs

    # Both table rules run this script: the summary over every recipe, and one recipe's tables.
    runs = snakemake.params.runs
    output = snakemake.output
    histories = pair_runs(runs, snakemake.input.histories)
    train_benchmarks = pair_runs(runs, snakemake.input.train_benchmarks)
    make_tables(
        summaries=snakemake.input.summaries,
        per_image=pair_runs(runs, snakemake.input.per_image),
        histories=histories,
        monitors=pair_runs(runs, snakemake.input.monitors),
        train_benchmarks=train_benchmarks,
        recipe_settings=snakemake.params.recipes,
        psnr_ssim_csv=output.psnr_ssim_csv,
        psnr_ssim_html=output.psnr_ssim_html,
        benchmark_csv=output.benchmark_csv,
        benchmark_html=output.get("benchmark_html"),
        summary_html=output.get("summary_html"),
        # Only the summary rule has BM3D's rows (its time per image beside the networks').
        baseline_summaries=snakemake.input.get("baselines", []),
        baseline_benchmarks=snakemake.input.get("baseline_benchmarks", []),
    )
    # Only the summary rule asks where the whole pipeline's time went.
    if output.get("time_breakdown_csv"):
        make_time_breakdown(
            data_benchmarks=snakemake.input.data_benchmarks,
            histories=histories,
            train_benchmarks=train_benchmarks,
            eval_benchmarks=snakemake.input.eval_benchmarks,
            csv_path=output.time_breakdown_csv,
            html_path=output.time_breakdown_html,
        )
