"""One run's weights as a bioimage.io model package, validated with `bioimageio test`."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.bmz.export import RunInfo, export_package

    wildcards, params = snakemake.wildcards, snakemake.params
    info = RunInfo(
        recipe=wildcards.recipe,
        framework=wildcards.framework,
        sigma=int(wildcards.sigma),
        seed=int(wildcards.seed),
        weights=wildcards.weights,
        arch=params.arch,
        train_set=params.train_set,
        validation=params.validation,
        authors=tuple(params.authors),
        method=params.method,
    )
    export_package(
        info=info,
        weights_npz=snakemake.input.weights,
        tensors_npz=snakemake.input.tensors,
        stats_json=snakemake.input.stats,
        eval_summary=snakemake.input.eval_summary,
        package=snakemake.output.package,
        validation_json=snakemake.output.validation,
        threads=snakemake.threads,
    )
