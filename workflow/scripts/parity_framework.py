import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.config import OptimizerConfig, from_plain
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
