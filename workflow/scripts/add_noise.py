"""Add one fixed Gaussian noise realisation (the first, or N2N's second) per image of one set."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.data.noise import write_noisy_sets

    write_noisy_sets(
        datasets={snakemake.wildcards.dataset: (list(snakemake.input), snakemake.output[0])},
        sigma=int(snakemake.wildcards.sigma),
        seed=snakemake.params.seed,
        realisation=snakemake.params.realisation,
    )
