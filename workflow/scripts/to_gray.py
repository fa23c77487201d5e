"""Convert one image set's jpgs to 8-bit gray PNGs (MATLAB rgb2gray); check BSD68 pixel hashes."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.data.gray import convert_images

    bsd68 = snakemake.params.dataset == "bsd68"
    convert_images(
        jpgs=list(snakemake.input),
        train_pngs=[] if bsd68 else list(snakemake.output),
        bsd68_pngs=list(snakemake.output) if bsd68 else [],
        pixel_hashes_file=snakemake.params.pixel_hashes,
        workers=snakemake.threads,
    )
