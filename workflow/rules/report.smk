# Aggregation for the report: tables and figures per recipe, the summary over all recipes,
# and the parity figure. Everything here reads the evaluation and training outputs only
# (src/n2v_repro/report/tables.py, figures.py, figures_eval.py); each output is marked for the
# Snakemake report with its caption, in one menu category per recipe (report_category).


rule summary_tables:
    input:
        # Every run's files, ours then the reference implementations' (ALL_RUNS order).
        summaries=run_files(EVAL_DIR, "summary.json", REFERENCE_EVAL_DIR),
        per_image=run_files(EVAL_DIR, "per_image.csv", REFERENCE_EVAL_DIR),
        histories=run_files(MODEL_DIR, "history.csv", REFERENCE_MODEL_DIR),
        monitors=run_files(MODEL_DIR, "monitor.csv", REFERENCE_MODEL_DIR),
        train_benchmarks=run_files(TRAIN_BENCHMARK, "", REFERENCE_TRAIN_BENCHMARK),
        eval_benchmarks=run_files(EVAL_BENCHMARK, "", REFERENCE_PREDICT_BENCHMARK),
        data_benchmarks=data_benchmarks,
        # BM3D's summaries and job benchmarks (SIGMAS order; none when `baselines` is []):
        # its time per image in the benchmark table.
        baselines=baseline_files("summary.json"),
        baseline_benchmarks=expand(BM3D_BENCHMARK, sigma=BM3D_SIGMAS),
    output:
        psnr_ssim_csv=report(
            "results/tables/psnr_ssim.csv",
            caption="../report/psnr_ssim.rst",
            category=report_category("summary"),
            labels={"table": "PSNR / SSIM, every recipe", "format": "csv"},
        ),
        psnr_ssim_html=report(
            "results/tables/psnr_ssim.html",
            caption="../report/psnr_ssim.rst",
            category=report_category("summary"),
            labels={"table": "PSNR / SSIM, every recipe", "format": "html"},
        ),
        benchmark_csv=report(
            "results/tables/benchmark.csv",
            caption="../report/benchmark.rst",
            category=report_category("summary"),
            labels={"table": "time, memory, throughput, every run", "format": "csv"},
        ),
        time_breakdown_csv=report(
            "results/tables/time_breakdown.csv",
            caption="../report/time_breakdown.rst",
            category=report_category("summary"),
            labels={"table": "where the time went", "format": "csv"},
        ),
        time_breakdown_html=report(
            "results/tables/time_breakdown.html",
            caption="../report/time_breakdown.rst",
            category=report_category("summary"),
            labels={"table": "where the time went", "format": "html"},
        ),
        # The landing page's compact table (workflow.rst), not a report item of its own.
        summary_html="results/tables/summary.html",
    log:
        "logs/summary_tables/summary_tables.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # The (recipe, framework, sigma, seed) of each file above, in the order the input
        # lists give them: the script pairs them, never reading a path.
        runs=ALL_RUNS,
        recipes=RECIPE_SETTINGS,
    script:
        "../scripts/aggregate_tables.py"


rule recipe_tables:
    input:
        summaries=recipe_run_files(EVAL_DIR, "summary.json", REFERENCE_EVAL_DIR),
        per_image=recipe_run_files(EVAL_DIR, "per_image.csv", REFERENCE_EVAL_DIR),
        histories=recipe_run_files(MODEL_DIR, "history.csv", REFERENCE_MODEL_DIR),
        monitors=recipe_run_files(MODEL_DIR, "monitor.csv", REFERENCE_MODEL_DIR),
        train_benchmarks=recipe_run_files(
            TRAIN_BENCHMARK, "", REFERENCE_TRAIN_BENCHMARK
        ),
    output:
        psnr_ssim_csv=report(
            f"{RECIPE_TABLES}/psnr_ssim.csv",
            caption="../report/psnr_ssim.rst",
            category=recipe_category,
            subcategory="1. Accuracy",
            labels={"table": "PSNR / SSIM", "format": "csv"},
        ),
        psnr_ssim_html=report(
            f"{RECIPE_TABLES}/psnr_ssim.html",
            caption="../report/psnr_ssim.rst",
            category=recipe_category,
            subcategory="1. Accuracy",
            labels={"table": "PSNR / SSIM", "format": "html"},
        ),
        benchmark_csv=report(
            f"{RECIPE_TABLES}/benchmark.csv",
            caption="../report/benchmark.rst",
            category=recipe_category,
            subcategory="3. Cost",
            labels={"table": "time, memory, throughput", "format": "csv"},
        ),
        benchmark_html=report(
            f"{RECIPE_TABLES}/benchmark.html",
            caption="../report/benchmark.rst",
            category=recipe_category,
            subcategory="3. Cost",
            labels={"table": "time, memory, throughput", "format": "html"},
        ),
    log:
        "logs/recipe_tables/{recipe}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        runs=recipe_all_runs,
        recipes=one_recipe_settings,
    script:
        "../scripts/aggregate_tables.py"


rule plot_training:
    input:
        histories=recipe_run_files(MODEL_DIR, "history.csv"),
        monitors=recipe_run_files(MODEL_DIR, "monitor.csv"),
    output:
        loss_curves=report(
            f"{RECIPE_FIGURES}/loss_curves.png",
            caption="../report/loss_curves.rst",
            category=recipe_category,
            subcategory="2. Training",
            labels={"figure": "loss curves"},
        ),
        valid_metrics=report(
            f"{RECIPE_FIGURES}/valid_psnr_ssim.png",
            caption="../report/valid_psnr_ssim.rst",
            category=recipe_category,
            subcategory="2. Training",
            labels={"figure": "validation PSNR / SSIM"},
        ),
        valid_psnr_time=report(
            f"{RECIPE_FIGURES}/valid_psnr_time.png",
            caption="../report/valid_psnr_time.rst",
            category=recipe_category,
            subcategory="3. Cost",
            labels={"figure": "validation PSNR vs training time"},
        ),
        epoch_time=report(
            f"{RECIPE_FIGURES}/epoch_time.png",
            caption="../report/epoch_time.rst",
            category=recipe_category,
            subcategory="3. Cost",
            labels={"figure": "time per epoch"},
        ),
        memory_utilisation=report(
            f"{RECIPE_FIGURES}/memory_utilisation.png",
            caption="../report/memory_utilisation.rst",
            category=recipe_category,
            subcategory="3. Cost",
            labels={"figure": "memory and utilisation"},
        ),
    log:
        "logs/plot_training/{recipe}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # As in recipe_tables: the run of each input file, in the input lists' order.
        runs=recipe_runs,
        validation=lookup(dpath="{recipe}/validation/scheme", within=RECIPE_TRAIN),
    script:
        "../scripts/plot_training.py"


rule plot_final_psnr:
    input:
        summaries=run_files(EVAL_DIR, "summary.json"),
    output:
        png=report(
            "results/figures/final_psnr.png",
            caption="../report/final_psnr.rst",
            category=report_category("summary"),
            labels={"figure": "test PSNR by recipe, vs paper"},
        ),
    log:
        "logs/plot_final_psnr/plot_final_psnr.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        recipes=list(RECIPES),
    script:
        "../scripts/plot_final_psnr.py"


rule plot_qualitative:
    input:
        clean=GRAY_PNGS["bsd68"],
        noisy=NOISY_NPZ.replace("{dataset}", "bsd68"),
        split=BSD68_SPLIT,
        denoised=first_seed_files(EVAL_DIR, "denoised"),
        per_image=first_seed_files(EVAL_DIR, "per_image.csv"),
    output:
        report(
            f"{RECIPE_FIGURES}/qualitative_sigma{{sigma}}.png",
            caption="../report/qualitative.rst",
            category=recipe_category,
            subcategory="1. Accuracy",
            labels={"figure": "denoised examples, sigma {sigma}"},
        ),
    log:
        "logs/plot_qualitative/{recipe}/sigma{sigma}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        n_images=CONFIG.eval.figure_images,
        # The framework of each denoised folder and per_image.csv, in the inputs' order.
        frameworks=first_seed_frameworks,
        seed=SEEDS[0],
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
            category=report_category("parity"),
            labels={"figure": "relative errors"},
        ),
    log:
        "logs/plot_parity/plot_parity.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/plot_parity.py"


# The port's claims (Noise2Void_jittor's README) against this run's own files: accuracy,
# validation-curve fluctuation, epoch time, memory and utilisation, Jittor against PyTorch
# per seed (src/n2v_repro/report/claims.py).
rule port_claims:
    input:
        summaries=run_files(EVAL_DIR, "summary.json"),
        per_image=run_files(EVAL_DIR, "per_image.csv"),
        histories=run_files(MODEL_DIR, "history.csv"),
        monitors=run_files(MODEL_DIR, "monitor.csv"),
        train_summaries=run_files(MODEL_DIR, "train_summary.json"),
    output:
        json=f"{CLAIMS_TABLE}.json",
        markdown=f"{CLAIMS_TABLE}.md",
        html=report(
            f"{CLAIMS_TABLE}.html",
            caption="../report/port_claims.rst",
            category=report_category("claims"),
            labels={"table": "each claim, measured, with its verdict"},
        ),
    log:
        "logs/port_claims/port_claims.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        runs=RUNS,
    script:
        "../scripts/port_claims.py"


# Every method side by side: BM3D (config key `baselines`) and each recipe by its
# train.method, a block per sigma, on the landing page (workflow.rst), and one image crop of
# each method per sigma.
rule methods_table:
    input:
        summaries=run_files(EVAL_DIR, "summary.json", REFERENCE_EVAL_DIR),
        per_image=run_files(EVAL_DIR, "per_image.csv", REFERENCE_EVAL_DIR),
        baselines=baseline_files("summary.json"),
    output:
        csv=report(
            f"{METHODS_TABLE}.csv",
            caption="../report/methods.rst",
            category=report_category("summary"),
            labels={
                "table": "PSNR by method (BM3D, N2C, N2N, N2V, N2V2)",
                "format": "csv",
            },
        ),
        html=report(
            f"{METHODS_TABLE}.html",
            caption="../report/methods.rst",
            category=report_category("summary"),
            labels={
                "table": "PSNR by method (BM3D, N2C, N2N, N2V, N2V2)",
                "format": "html",
            },
        ),
    log:
        "logs/methods_table/methods_table.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # As in summary_tables: the run of each per_image.csv, in the input list's order.
        runs=ALL_RUNS,
        methods=RECIPE_METHODS,
    script:
        "../scripts/methods_table.py"


rule plot_methods:
    input:
        clean=GRAY_PNGS["bsd68"],
        noisy=NOISY_NPZ.replace("{dataset}", "bsd68"),
        split=BSD68_SPLIT,
        denoised=sigma_first_seed_files(EVAL_DIR, "denoised"),
        per_image=sigma_first_seed_files(EVAL_DIR, "per_image.csv"),
        bm3d_denoised=sigma_baseline_files("denoised"),
        bm3d_per_image=sigma_baseline_files("per_image.csv"),
    output:
        report(
            METHODS_FIGURE,
            caption="../report/methods_figure.rst",
            category=report_category("summary"),
            labels={"figure": "one crop, every method, sigma {sigma}"},
        ),
    log:
        "logs/plot_methods/sigma{sigma}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        runs=sigma_first_seed_runs,
        methods=RECIPE_METHODS,
        # The denoised PNGs are of the first evaluated weights (evaluation/predict.py).
        weights=CONFIG.eval.weights[0],
    script:
        "../scripts/plot_methods.py"
