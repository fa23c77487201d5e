import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import log_to_file  # noqa: E402

log_to_file(snakemake.log[0])

from n2v_repro.report.figures_eval import make_final_psnr_figure  # noqa: E402

make_final_psnr_figure(
    summaries=snakemake.input.summaries,
    output=snakemake.output.png,
    recipe_order=snakemake.params.recipes,
)
