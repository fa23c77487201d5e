import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import log_to_file  # noqa: E402

log_to_file(snakemake.log[0])

from n2v_repro.config import OptimizerConfig, from_plain  # noqa: E402
from n2v_repro.parity import run_framework  # noqa: E402

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
