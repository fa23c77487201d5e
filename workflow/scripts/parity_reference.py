from n2v_repro.framework_site import use_framework_site

# Before numpy is imported, as the framework jobs (docs/gpu.md): this is a torch job.
use_framework_site("torch")
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.parity import run_reference

    run_reference(
        snakemake.wildcards.arch,
        inputs_path=snakemake.input.inputs,
        framework_paths=dict(
            zip(snakemake.params.frameworks, snakemake.input.results, strict=True)
        ),
        output_path=snakemake.output[0],
        threads=snakemake.threads,
    )
