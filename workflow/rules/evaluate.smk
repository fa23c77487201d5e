# Evaluation: one job per recipe x framework x sigma x seed. Whole BSD68 images, normalised
# with the training statistics, predicted unclipped; per-image PSNR/SSIM (data range 255) for
# each saved weights and for the noisy input (src/n2v_repro/evaluation/predict.py). This is
# the first job of a heldout_train recipe that reads a BSD68 image. Like training, each
# framework has its own rule so that each gets its own conda environment.


rule evaluate_torch:
    input:
        unpack(evaluation_inputs),
    output:
        per_image=f"{EVAL_DIR}/per_image.csv",
        summary=f"{EVAL_DIR}/summary.json",
        denoised=directory(f"{EVAL_DIR}/denoised"),
    log:
        f"logs/evaluate/{RUN}.log",
    benchmark:
        EVAL_BENCHMARK
    wildcard_constraints:
        framework="torch",
    conda:
        "../../envs/torch.yaml"
    threads: framework_threads()
    resources:
        gpu=JOB_GPUS,
    params:
        arch=lookup(dpath="{recipe}/arch", within=RECIPE_TRAIN),
        validation=lookup(dpath="{recipe}/validation/scheme", within=RECIPE_TRAIN),
        device=CONFIG.train.device,
        precision=lookup(dpath="{recipe}/precision", within=RECIPE_TRAIN),
        weights=list(CONFIG.eval.weights),
        tta=CONFIG.eval.tta,
    script:
        "../scripts/evaluate.py"


use rule evaluate_torch as evaluate_jittor with:
    wildcard_constraints:
        framework=JITTOR_FRAMEWORKS,
    conda:
        "../../envs/jittor.yaml"
