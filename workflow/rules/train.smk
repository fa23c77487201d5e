# Training: one job per framework x sigma, the same loop (src/n2v_repro/training/loop.py) for both.
# Each framework has its own rule so that each gets its own conda environment; the jittor
# rule is the torch rule with the environment and the framework constraint swapped.
# Resume state lives in results/checkpoints/{framework}/sigma{sigma}/ (not an output, so a
# failed or killed job keeps it and the rerun continues from the last complete epoch).


rule train_torch:
    input:
        unpack(training_inputs),
    output:
        last="results/models/{framework}/sigma{sigma}/last.npz",
        best="results/models/{framework}/sigma{sigma}/best.npz",
        history="results/models/{framework}/sigma{sigma}/history.csv",
        monitor="results/models/{framework}/sigma{sigma}/monitor.csv",
        summary="results/models/{framework}/sigma{sigma}/train_summary.json",
        model="results/models/{framework}/sigma{sigma}/model.json",
    log:
        "logs/train/{framework}/sigma{sigma}.log",
    benchmark:
        "benchmarks/train/{framework}/sigma{sigma}.tsv"
    wildcard_constraints:
        framework="torch",
    conda:
        "../../envs/torch.yaml"
    threads: framework_threads()
    resources:
        gpu=gpu_jobs_resource(),
    params:
        train=config["train"],
        patch_size=config["data"]["patch_size"],
        seed=SEED,
        checkpoint="results/checkpoints/{framework}/sigma{sigma}/checkpoint.npz",
    script:
        "../scripts/train.py"


use rule train_torch as train_jittor with:
    wildcard_constraints:
        framework="jittor",
    conda:
        "../../envs/jittor.yaml"
