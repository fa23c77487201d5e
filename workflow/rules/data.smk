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
        downloaded_jpgs(),
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
        dataset_jpgs("bsd400"),
    output:
        gray_train_pngs(),
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
        dataset_jpgs("bsd68"),
    output:
        gray_bsd68_pngs(),
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
        gray_train_pngs(),
        gray_bsd68_pngs(),


rule split_bsd68:
    input:
        ids=CONFIG.data.bsd68_ids,
    output:
        "resources/bsd68_split.csv",
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
        gray_pngs,
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
    script:
        "../scripts/add_noise.py"


rule patchify:
    input:
        unpack(patchify_inputs),
    output:
        **patch_files("{data_tag}", "{sigma}"),
    log:
        "logs/patchify/{data_tag}/sigma{sigma}.log",
    benchmark:
        PATCH_BENCHMARK
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=data_mem_mb,
    params:
        patch_size=CONFIG.data.patch_size,
        train_set=data_tag_train_set,
        validation=data_tag_validation,
    script:
        "../scripts/patchify.py"
