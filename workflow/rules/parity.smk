# Initial weights and the framework-parity check. PyTorch and Jittor run in separate jobs
# (their own conda environments) and exchange only files: inputs -> per-framework results
# -> the float64 reference (PyTorch on the CPU, after both: it needs their kink units) ->
# comparison. parity_compare always writes the measures (and the report's table, failing
# archs in red); parity_gate then fails when a framework's layer outputs, gradients or Adam
# steps differ from float64 beyond the criterion, so a failure is its own failed job while
# training, evaluation and the report still complete (keep-going in profiles/default).
# src/n2v_repro/parity.py defines the measures and the criterion.


rule make_init_weights:
    output:
        INIT_WEIGHTS,
    log:
        "logs/make_init_weights/{arch}_{init}_seed{seed}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/make_init_weights.py"


rule parity_inputs:
    output:
        PARITY_INPUTS,
    log:
        "logs/parity_inputs/{arch}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        seed=SEED,
        batch_size=CONFIG.parity.batch_size,
        masking=lookup(dpath="{arch}/masking", within=PARITY_TRAIN),
        # The initialisation the arch's (first) recipe trains from.
        init=lookup(dpath="{arch}/init", within=PARITY_TRAIN),
    script:
        "../scripts/parity_inputs.py"


rule parity_torch:
    input:
        PARITY_INPUTS,
    output:
        PARITY_RESULT,
    log:
        "logs/parity_{framework}/{arch}.log",
    wildcard_constraints:
        framework="torch",
    conda:
        "../../envs/torch.yaml"
    # Parity jobs are small; on CPU they still get the cores so that no two share them.
    threads: framework_threads()
    resources:
        gpu=JOB_GPUS,
    params:
        steps=CONFIG.parity.steps,
        optimizer=lookup(dpath="{arch}/optimizer", within=PARITY_TRAIN),
        device=CONFIG.train.device,
    script:
        "../scripts/parity_run_framework.py"


use rule parity_torch as parity_jittor with:
    wildcard_constraints:
        framework=JITTOR_FRAMEWORKS,
    conda:
        "../../envs/jittor.yaml"


rule parity_reference:
    input:
        inputs=PARITY_INPUTS,
        results=expand(PARITY_RESULT, framework=PARITY_FRAMEWORKS, allow_missing=True),
    output:
        PARITY_REFERENCE,
    log:
        "logs/parity_reference/{arch}.log",
    conda:
        "../../envs/torch.yaml"
    # float64 on the CPU whatever the device; the cores, as the framework jobs.
    threads: framework_threads()
    params:
        frameworks=PARITY_FRAMEWORKS,
    script:
        "../scripts/parity_reference.py"


rule parity_compare:
    input:
        results=expand(PARITY_RESULT, framework=PARITY_FRAMEWORKS, arch=PARITY_ARCHS),
        reference=expand(PARITY_REFERENCE, arch=PARITY_ARCHS),
    output:
        json=f"{PARITY_DIR}/parity.json",
        csv=f"{PARITY_DIR}/parity.csv",
        html=report(
            f"{PARITY_DIR}/parity.html",
            caption="../report/parity_table.rst",
            category=report_category("parity"),
            labels={"table": "per-layer measures against float64, passed / FAILED"},
        ),
        finding=report(
            f"{PARITY_DIR}/batch_norm.html",
            caption="../report/batch_norm_finding.rst",
            category=report_category("parity"),
            labels={"table": "stock Jittor's batch norm against PyTorch, by cause"},
        ),
    log:
        "logs/parity_compare/parity_compare.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        archs=PARITY_ARCHS,
        frameworks=PARITY_FRAMEWORKS,
        tolerance=CONFIG.parity.tolerance,
    script:
        "../scripts/parity_compare.py"


rule parity_gate:
    input:
        f"{PARITY_DIR}/parity.json",
    output:
        f"{PARITY_DIR}/passed.txt",
    log:
        "logs/parity_gate/parity_gate.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/parity_gate.py"
