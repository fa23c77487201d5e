"""Write the flat training source, its index and statistics, and the validation tiles."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.config import ValidationConfig, from_plain
    from n2v_repro.data.patches import patchify

    inputs = snakemake.input
    patchify(
        train_npz=inputs.bsd400,
        patch_size=snakemake.params.patch_size,
        outputs=dict(snakemake.output.items()),
        validation=from_plain(ValidationConfig, snakemake.params.validation),
        train_set=snakemake.params.train_set,
        crops_file=inputs.get("crops"),
        clean_train_pngs=list(inputs.get("clean_bsd400", [])),
        bsd68_npz=inputs.get("bsd68"),
        split_csv=inputs.get("split"),
        clean_bsd68_pngs=list(inputs.get("clean_bsd68", [])),
        target=snakemake.params.target,
        train2_npz=inputs.get("bsd400_noisy2"),
    )
