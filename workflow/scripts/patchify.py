"""Write the flat training source, its index and statistics, and the validation tiles."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.data.patches import patchify

    patchify(
        train_npz=snakemake.input.bsd400,
        bsd68_npz=snakemake.input.bsd68,
        split_csv=snakemake.input.split,
        clean_bsd68_pngs=list(snakemake.input.clean_bsd68),
        patch_size=snakemake.params.patch_size,
        outputs={
            key: getattr(snakemake.output, key) for key in ("train", "index", "stats", "valid")
        },
    )
