import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.training.loop import TrainJob, train

    train(
        TrainJob(
            framework=snakemake.wildcards.framework,
            patch_dir=Path(snakemake.input.train).parent,
            init_weights=Path(snakemake.input.init),
            out_dir=Path(snakemake.output.last).parent,
            checkpoint=Path(snakemake.params.checkpoint),
            train_cfg=snakemake.params.train,
            patch_size=snakemake.params.patch_size,
            seed=snakemake.params.seed,
            threads=snakemake.threads,
        )
    )
