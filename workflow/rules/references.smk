# The reference implementations (config key `references`): juglab n2v (the authors'
# TensorFlow code) and CAREamics, each in an environment the pipeline builds for it, trained
# on each N2V recipe's own training images and validation tiles with the recipe's budget,
# predicting the same noisy BSD68 images, scored by the pipeline's metric code
# (src/n2v_repro/references/). A reference's training reads nothing of BSD68 (as ours);
# prediction is its own job.


wildcard_constraints:
    reference="|".join(REFERENCE_NAMES),


rule reference_env:
    input:
        env_file=reference_env_file,
    output:
        REFERENCE_ENV_BUILT.replace("{envs}", REFERENCE_ENVS),
    log:
        "logs/reference_env/{reference}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        prefix=reference_env_prefix,
        repo=workflow.basedir,
    script:
        "../scripts/reference_env.py"


rule train_reference:
    input:
        unpack(reference_training_inputs),
    output:
        model=directory(f"{REFERENCE_MODEL_DIR}/library"),
        history=f"{REFERENCE_MODEL_DIR}/history.csv",
        monitor=f"{REFERENCE_MODEL_DIR}/monitor.csv",
        summary=f"{REFERENCE_MODEL_DIR}/train_summary.json",
    log:
        f"logs/train_reference/{REFERENCE_RUN}.log",
    benchmark:
        REFERENCE_TRAIN_BENCHMARK
    conda:
        "../../envs/analysis.yaml"
    threads: framework_threads()
    resources:
        gpu=JOB_GPUS,
    params:
        train=lookup(dpath="{recipe}", within=RECIPE_TRAIN),
        patch_size=CONFIG.data.patch_size,
        prefix=reference_env_prefix,
    script:
        "../scripts/train_reference.py"


rule predict_reference:
    input:
        model=f"{REFERENCE_MODEL_DIR}/library",
        noisy=NOISY_NPZ.replace("{dataset}", "bsd68"),
        split=BSD68_SPLIT,
        env=reference_env,
    output:
        predictions=f"{REFERENCE_EVAL_DIR}/predictions.npz",
        inference=f"{REFERENCE_EVAL_DIR}/inference.json",
    log:
        f"logs/predict_reference/{REFERENCE_RUN}.log",
    benchmark:
        REFERENCE_PREDICT_BENCHMARK
    conda:
        "../../envs/analysis.yaml"
    threads: framework_threads()
    resources:
        gpu=JOB_GPUS,
    params:
        prefix=reference_env_prefix,
    script:
        "../scripts/predict_reference.py"


rule score_reference:
    input:
        clean=GRAY_PNGS["bsd68"],
        noisy=NOISY_NPZ.replace("{dataset}", "bsd68"),
        split=BSD68_SPLIT,
        predictions=f"{REFERENCE_EVAL_DIR}/predictions.npz",
        inference=f"{REFERENCE_EVAL_DIR}/inference.json",
    output:
        per_image=f"{REFERENCE_EVAL_DIR}/per_image.csv",
        summary=f"{REFERENCE_EVAL_DIR}/summary.json",
        denoised=directory(f"{REFERENCE_EVAL_DIR}/denoised"),
    log:
        f"logs/score_reference/{REFERENCE_RUN}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        arch=lookup(dpath="{recipe}/arch", within=RECIPE_TRAIN),
        validation=lookup(dpath="{recipe}/validation/scheme", within=RECIPE_TRAIN),
    script:
        "../scripts/score_reference.py"


# Ours beside theirs, setting by setting, from the first sigma's first-seed run (the
# settings do not depend on sigma or seed).
rule reference_settings:
    input:
        summary=lambda wildcards: reference_run_path(
            f"{REFERENCE_MODEL_DIR}/train_summary.json",
            wildcards.recipe,
            wildcards.reference,
            SIGMAS[0],
            SEEDS[0],
        ),
    output:
        csv=report(
            f"{REFERENCE_SETTINGS}.csv",
            caption="../report/reference_settings.rst",
            category=recipe_category,
            subcategory="4. References",
            labels={"table": "settings: ours and {reference}", "format": "csv"},
        ),
        html=report(
            f"{REFERENCE_SETTINGS}.html",
            caption="../report/reference_settings.rst",
            category=recipe_category,
            subcategory="4. References",
            labels={"table": "settings: ours and {reference}", "format": "html"},
        ),
    log:
        "logs/reference_settings/{recipe}_{reference}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/reference_settings.py"


# Validation loss against patches trained, for every run of the recipe, ours and the references', on the
# same axes (first seed, every sigma).
rule plot_reference_curves:
    input:
        histories=lambda w: run_files(
            MODEL_DIR,
            "history.csv",
            REFERENCE_MODEL_DIR,
            recipe=w.recipe,
            seed=SEEDS[0],
        ),
    output:
        report(
            REFERENCE_CURVES,
            caption="../report/reference_curves.rst",
            category=recipe_category,
            subcategory="4. References",
            labels={"figure": "validation loss: ours and the references"},
        ),
    log:
        "logs/plot_reference_curves/{recipe}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # The run of each history above, in order: ours, then the references'.
        runs=lambda w: runs_of(recipe=w.recipe, seed=SEEDS[0], references=True),
    script:
        "../scripts/plot_reference_curves.py"
