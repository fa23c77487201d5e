"""The test tensors of a run's bioimage.io packages, predicted by the framework that trained it."""

from n2v_repro.framework_site import use_framework_site

# Before numpy is imported: Jittor's own numpy < 2 on a one-Python GPU machine (docs/gpu.md).
use_framework_site(snakemake.wildcards.framework)
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.bmz.test_tensors import write_test_tensors

    inputs = snakemake.input
    write_test_tensors(
        snakemake.output[0],
        framework=snakemake.wildcards.framework,
        arch=snakemake.params.arch,
        validation=snakemake.params.validation,
        weight_files={name: inputs[name] for name in snakemake.params.weights},
        stats_json=inputs.stats,
        valid_npz=inputs.valid,
        train_npy=inputs.train,
        index_csv=inputs.index,
        size=snakemake.params.size,
        threads=snakemake.threads,
    )
