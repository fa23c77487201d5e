from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.references.env import build_env

    build_env(
        snakemake.wildcards.reference,
        prefix=snakemake.params.prefix,
        repo_root=snakemake.params.repo,
        log_path=snakemake.log[0],
    )
