# Initial weights and the framework-parity check. PyTorch and Jittor run in separate jobs
# (their own conda environments) and exchange only files: inputs -> per-framework results
# -> comparison. framework_parity fails the workflow when forward outputs or gradients
# disagree beyond parity.tolerance (src/n2v_repro/parity.py defines the errors).


rule make_init_weights:
    output:
        "results/init/{arch}_seed{seed}.npz",
    log:
        "logs/make_init_weights/{arch}_seed{seed}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/make_init_weights.py"


rule parity_inputs:
    output:
        "results/parity/inputs/{arch}.npz",
    log:
        "logs/parity_inputs/{arch}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        seed=SEED,
        batch_size=config["parity"]["batch_size"],
        masking=config["train"]["masking"],
    script:
        "../scripts/parity_inputs.py"


rule parity_torch:
    input:
        "results/parity/inputs/{arch}.npz",
    output:
        "results/parity/{framework}/{arch}.npz",
    log:
        "logs/parity_framework/{framework}/{arch}.log",
    wildcard_constraints:
        framework="torch",
    conda:
        "../../envs/torch.yaml"
    threads: parity_threads()
    resources:
        gpu=gpu_jobs_resource(),
    params:
        steps=config["parity"]["steps"],
        optimizer=config["train"]["optimizer"],
        device=config["train"]["device"],
    script:
        "../scripts/parity_framework.py"


use rule parity_torch as parity_jittor with:
    wildcard_constraints:
        framework="jittor",
    conda:
        "../../envs/jittor.yaml"


rule framework_parity:
    input:
        torch=expand("results/parity/torch/{arch}.npz", arch=PARITY_ARCHS),
        jittor=expand("results/parity/jittor/{arch}.npz", arch=PARITY_ARCHS),
    output:
        json="results/parity/parity.json",
        csv="results/parity/parity.csv",
    log:
        "logs/framework_parity/framework_parity.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        archs=PARITY_ARCHS,
        tolerance=config["parity"]["tolerance"],
    script:
        "../scripts/framework_parity.py"
