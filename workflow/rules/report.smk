# Aggregation for the report: the PSNR/SSIM and cost tables, and the figures. Everything here
# reads the evaluation and training outputs only (src/n2v_repro/report/tables.py, figures.py,
# figures_eval.py); each output is marked for the Snakemake report with its caption.


rule aggregate_tables:
    input:
        summaries=all_eval_summaries(),
        histories=all_histories(),
        monitors=all_monitors(),
        train_benchmarks=all_train_benchmarks(),
    output:
        psnr_ssim_csv=report(
            "results/tables/psnr_ssim.csv",
            caption="../report/psnr_ssim.rst",
            category="1. Accuracy",
            labels={"table": "PSNR / SSIM", "format": "csv"},
        ),
        psnr_ssim_html=report(
            "results/tables/psnr_ssim.html",
            caption="../report/psnr_ssim.rst",
            category="1. Accuracy",
            labels={"table": "PSNR / SSIM", "format": "html"},
        ),
        benchmark_csv=report(
            "results/tables/benchmark.csv",
            caption="../report/benchmark.rst",
            category="3. Cost",
            labels={"table": "time, memory, throughput", "format": "csv"},
        ),
        benchmark_html=report(
            "results/tables/benchmark.html",
            caption="../report/benchmark.rst",
            category="3. Cost",
            labels={"table": "time, memory, throughput", "format": "html"},
        ),
    log:
        "logs/aggregate_tables/aggregate_tables.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # The (framework, sigma) of each training file above, in the order the all_*()
        # input functions list them: the script pairs them, never reading a path.
        runs=RUNS,
    script:
        "../scripts/aggregate_tables.py"


rule plot_training:
    input:
        histories=all_histories(),
        monitors=all_monitors(),
    output:
        loss_curves=report(
            "results/figures/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="2. Training",
            labels={"figure": "loss curves"},
        ),
        valid_metrics=report(
            "results/figures/valid_psnr_ssim.png",
            caption="../report/valid_psnr_ssim.rst",
            category="2. Training",
            labels={"figure": "validation PSNR / SSIM"},
        ),
        epoch_time=report(
            "results/figures/epoch_time.png",
            caption="../report/epoch_time.rst",
            category="3. Cost",
            labels={"figure": "time per epoch"},
        ),
        memory_utilisation=report(
            "results/figures/memory_utilisation.png",
            caption="../report/memory_utilisation.rst",
            category="3. Cost",
            labels={"figure": "memory and utilisation"},
        ),
    log:
        "logs/plot_training/plot_training.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # As in aggregate_tables: the run of each input file, in the input lists' order.
        runs=RUNS,
    script:
        "../scripts/plot_training.py"


rule plot_final_psnr:
    input:
        summaries=all_eval_summaries(),
    output:
        png=report(
            "results/figures/final_psnr.png",
            caption="../report/final_psnr.rst",
            category="1. Accuracy",
            labels={"figure": "test PSNR vs paper"},
        ),
        # The same figure inlined in HTML, for the landing page (workflow.rst).
        html="results/figures/final_psnr.html",
    log:
        "logs/plot_final_psnr/plot_final_psnr.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/plot_final_psnr.py"


rule plot_qualitative:
    input:
        clean=gray_bsd68_pngs(),
        noisy="resources/noisy/sigma{sigma}/bsd68.npz",
        split="resources/bsd68_split.csv",
        denoised=sigma_denoised_dirs,
        per_image=sigma_per_image_csvs,
    output:
        report(
            "results/figures/qualitative_sigma{sigma}.png",
            caption="../report/qualitative.rst",
            category="1. Accuracy",
            labels={"figure": "denoised examples, sigma {sigma}"},
        ),
    log:
        "logs/plot_qualitative/sigma{sigma}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        n_images=CONFIG.eval.figure_images,
        # The framework of each denoised folder and per_image.csv, in the inputs' order.
        frameworks=FRAMEWORKS,
    script:
        "../scripts/plot_qualitative.py"


rule plot_parity:
    input:
        csv=f"{PARITY_DIR}/parity.csv",
        json=f"{PARITY_DIR}/parity.json",
    output:
        report(
            "results/figures/parity.png",
            caption="../report/parity.rst",
            category="4. Framework parity",
            labels={"figure": "relative errors"},
        ),
    log:
        "logs/plot_parity/plot_parity.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/plot_parity.py"
