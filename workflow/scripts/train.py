from pathlib import Path

from n2v_repro.framework_site import use_framework_site

# Before numpy is imported: Jittor's own numpy < 2 on a one-Python GPU machine (docs/gpu.md).
use_framework_site(snakemake.wildcards.framework)
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.backends.gpu_select import claim_gpu_for_job
    from n2v_repro.config import TrainConfig, from_plain

    train_config = from_plain(TrainConfig, snakemake.params.train)
    # Before any framework starts CUDA: this job's own GPU on a node with several (docs/gpu.md).
    gpu_lease = claim_gpu_for_job(train_config.device)

    from n2v_repro.training.job import TrainJob
    from n2v_repro.training.loop import train

    train(
        TrainJob(
            framework=snakemake.wildcards.framework,
            patch_dir=Path(snakemake.input.train).parent,
            init_weights=Path(snakemake.input.init),
            out_dir=Path(snakemake.output.last).parent,
            checkpoint=Path(snakemake.params.checkpoint),
            train=train_config,
            patch_size=snakemake.params.patch_size,
            seed=int(snakemake.wildcards.seed),
            threads=snakemake.threads,
        )
    )
