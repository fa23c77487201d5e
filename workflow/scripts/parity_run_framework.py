from n2v_repro.framework_site import use_framework_site

# Before numpy is imported: Jittor's own numpy < 2 on a one-Python GPU machine (docs/gpu.md).
use_framework_site(snakemake.wildcards.framework)
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.backends.gpu_select import claim_gpu_for_job
    from n2v_repro.config import OptimizerConfig, from_plain

    # Before any framework starts CUDA: this job's own GPU on a node with several (docs/gpu.md).
    gpu_lease = claim_gpu_for_job(snakemake.params.device)

    from n2v_repro.parity import run_framework

    run_framework(
        snakemake.wildcards.framework,
        snakemake.wildcards.arch,
        inputs_path=snakemake.input[0],
        output_path=snakemake.output[0],
        steps=snakemake.params.steps,
        optimizer=from_plain(OptimizerConfig, snakemake.params.optimizer),
        device=snakemake.params.device,
        threads=snakemake.threads,
    )
