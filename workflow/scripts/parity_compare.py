import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.parity import compare_frameworks

    compare_frameworks(
        archs=list(snakemake.params.archs),
        torch_paths=list(snakemake.input.torch),
        jittor_paths=list(snakemake.input.jittor),
        reference_paths=list(snakemake.input.reference),
        json_path=snakemake.output.json,
        csv_path=snakemake.output.csv,
        html_path=snakemake.output.html,
        tolerance=snakemake.params.tolerance,
    )
