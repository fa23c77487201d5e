"""Split the BSD68 ids into validation and test subsets, seeded."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.data.split import make_split

    make_split(
        path=snakemake.output[0],
        ids=snakemake.params.ids,
        n_valid=snakemake.params.n_valid,
        seed=snakemake.params.seed,
    )
