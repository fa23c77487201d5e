# Training: one job per recipe x framework x sigma x seed, the same loop
# (src/n2v_repro/training/loop.py) for both frameworks. Each framework has its own rule so that
# each gets its own conda environment; the jittor rule is the torch rule with the environment
# and the framework constraint swapped. Resume state lives in
# results/{recipe}/{framework}/sigma{sigma}/seed{seed}/checkpoint/ (not an output, so a failed
# or killed job keeps it and the rerun continues from the last complete epoch).


rule train_torch:
    input:
        unpack(training_inputs),
    output:
        last=f"{MODEL_DIR}/last.npz",
        best=f"{MODEL_DIR}/best.npz",
        history=f"{MODEL_DIR}/history.csv",
        monitor=f"{MODEL_DIR}/monitor.csv",
        summary=f"{MODEL_DIR}/train_summary.json",
        model=f"{MODEL_DIR}/model.json",
    log:
        f"logs/train/{RUN}.log",
    benchmark:
        TRAIN_BENCHMARK
    wildcard_constraints:
        framework="torch",
    conda:
        "../../envs/torch.yaml"
    threads: framework_threads()
    resources:
        gpu=JOB_GPUS,
    params:
        train=lookup(dpath="{recipe}", within=RECIPE_TRAIN),
        patch_size=CONFIG.data.patch_size,
        # The run's resume state: not an output, so a failed job keeps it.
        checkpoint=CHECKPOINT,
    script:
        "../scripts/train.py"


use rule train_torch as train_jittor with:
    wildcard_constraints:
        framework=JITTOR_FRAMEWORKS,
    conda:
        "../../envs/jittor.yaml"
