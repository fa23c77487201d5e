# Data stage: download the BSDS500 jpgs, convert them to gray, split BSD68, add one fixed
# noise realisation per sigma, and cut the training source and validation tiles of each data
# set in use (a recipe's training set x validation scheme).
# Logic lives in src/n2v_repro/data/; the scripts only pass the snakemake values on.


# On a cluster the download runs on the submit host: compute nodes often have no internet.
localrules:
    download_bsds500,


rule download_bsds500:
    input:
        manifest=CONFIG.data.manifest,
    output:
        JPGS["bsd400"] + JPGS["bsd68"],
    log:
        "logs/download_bsds500/download_bsds500.log",
    benchmark:
        DOWNLOAD_BENCHMARK
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # Mirrors are read from snakemake.config, not params: changing them must not
        # trigger a re-run, since the files are checked against the manifest anyway.
        cache_dir=DOWNLOAD_CACHE,
    script:
        "../scripts/download_bsds500.py"


# One job per image set, so that the training data of a heldout_train recipe depends on no
# job that reads a BSD68 image (the download fetches both sets but decodes none).
rule to_gray_bsd400:
    input:
        JPGS["bsd400"],
    output:
        GRAY_PNGS["bsd400"],
    log:
        "logs/to_gray/bsd400.log",
    benchmark:
        GRAY_BENCHMARK.format(dataset="bsd400")
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    params:
        dataset="bsd400",
        pixel_hashes=None,
    script:
        "../scripts/to_gray.py"


use rule to_gray_bsd400 as to_gray_bsd68 with:
    input:
        JPGS["bsd68"],
    output:
        GRAY_PNGS["bsd68"],
    log:
        "logs/to_gray/bsd68.log",
    benchmark:
        GRAY_BENCHMARK.format(dataset="bsd68")
    params:
        dataset="bsd68",
        pixel_hashes=CONFIG.data.bsd68_pixels,


# `snakemake to_gray` converts both sets.
rule to_gray:
    input:
        GRAY_PNGS["bsd400"],
        GRAY_PNGS["bsd68"],


rule split_bsd68:
    input:
        ids=CONFIG.data.bsd68_ids,
    output:
        BSD68_SPLIT,
    log:
        "logs/split_bsd68/split_bsd68.log",
    benchmark:
        SPLIT_BENCHMARK
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        ids=BSD68_IDS,
        n_valid=CONFIG.data.n_valid,
        seed=SEED,
    script:
        "../scripts/split_bsd68.py"


rule add_noise:
    input:
        lookup(dpath="{dataset}", within=GRAY_PNGS),
    output:
        NOISY_NPZ,
    log:
        "logs/add_noise/sigma{sigma}/{dataset}.log",
    benchmark:
        NOISE_BENCHMARK
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=data_mem_mb,
    params:
        seed=SEED,
        realisation=0,
    script:
        "../scripts/add_noise.py"


# Noise2Noise's second, independent realisation of the training images (only runs with N2N).
use rule add_noise as add_noise2 with:
    output:
        NOISY2_NPZ,
    log:
        "logs/add_noise/sigma{sigma}/{dataset}_noisy2.log",
    benchmark:
        NOISE2_BENCHMARK
    params:
        seed=SEED,
        realisation=1,


rule patchify:
    input:
        unpack(patchify_inputs),
    output:
        **patch_files("{data_tag}", "{sigma}"),
    log:
        "logs/patchify/{data_tag}/sigma{sigma}.log",
    benchmark:
        PATCH_BENCHMARK
    wildcard_constraints:
        data_tag=r"(bsd400|train400)_(bsd68_split|heldout\d+)",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=data_mem_mb,
    params:
        patch_size=CONFIG.data.patch_size,
        train_set=lookup(dpath="{data_tag}/train_set", within=DATA_TAG_TRAIN),
        validation=lookup(dpath="{data_tag}/validation", within=DATA_TAG_TRAIN),
        target=lookup(dpath="{data_tag}", within=DATA_TAG_TARGET),
    script:
        "../scripts/patchify.py"


# The data sets of N2C and N2N add their training targets (clean or second realisation).
use rule patchify as patchify_with_targets with:
    output:
        **patch_files("{data_tag}", "{sigma}"),
        target=PATCH_TARGET,
    wildcard_constraints:
        data_tag=r"(bsd400|train400)_heldout\d+_(clean|noisy2)",
