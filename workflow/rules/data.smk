# Data stage: download the BSDS500 jpgs, convert them to gray, split BSD68, add one fixed
# noise realisation per sigma, and cut the training source and validation tiles.
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
        "benchmarks/download_bsds500/download_bsds500.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        # Mirrors are read from snakemake.config, not params: changing them must not
        # trigger a re-run, since the files are checked against the manifest anyway.
        cache_dir=DOWNLOAD_CACHE,
    script:
        "../scripts/download_bsds500.py"


rule to_gray:
    input:
        downloaded_jpgs(),
    output:
        bsd400=gray_train_pngs(),
        bsd68=gray_bsd68_pngs(),
    log:
        "logs/to_gray/to_gray.log",
    benchmark:
        "benchmarks/to_gray/to_gray.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    params:
        pixel_hashes=CONFIG.data.bsd68_pixels,
    script:
        "../scripts/to_gray.py"


rule split_bsd68:
    input:
        ids=CONFIG.data.bsd68_ids,
    output:
        "resources/bsd68_split.csv",
    log:
        "logs/split_bsd68/split_bsd68.log",
    benchmark:
        "benchmarks/split_bsd68/split_bsd68.tsv"
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
        bsd400=gray_train_pngs(),
        bsd68=gray_bsd68_pngs(),
    output:
        bsd400=NOISY_NPZ.replace("{dataset}", "bsd400"),
        bsd68=NOISY_NPZ.replace("{dataset}", "bsd68"),
    log:
        "logs/add_noise/sigma{sigma}.log",
    benchmark:
        "benchmarks/add_noise/sigma{sigma}.tsv"
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
        bsd400=NOISY_NPZ.replace("{dataset}", "bsd400"),
        bsd68=NOISY_NPZ.replace("{dataset}", "bsd68"),
        split="resources/bsd68_split.csv",
        clean_bsd68=gray_bsd68_pngs(),
    output:
        **patch_files("{sigma}"),
    log:
        "logs/patchify/sigma{sigma}.log",
    benchmark:
        "benchmarks/patchify/sigma{sigma}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=data_mem_mb,
    params:
        patch_size=CONFIG.data.patch_size,
    script:
        "../scripts/patchify.py"
