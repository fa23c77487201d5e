import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.report.tables import make_tables, pair_runs

    runs = snakemake.params.runs
    make_tables(
        summaries=snakemake.input.summaries,
        histories=pair_runs(runs, snakemake.input.histories),
        monitors=pair_runs(runs, snakemake.input.monitors),
        train_benchmarks=pair_runs(runs, snakemake.input.train_benchmarks),
        psnr_ssim_csv=snakemake.output.psnr_ssim_csv,
        psnr_ssim_html=snakemake.output.psnr_ssim_html,
        benchmark_csv=snakemake.output.benchmark_csv,
        benchmark_html=snakemake.output.benchmark_html,
    )
