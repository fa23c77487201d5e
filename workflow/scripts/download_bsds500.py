"""Fetch the jpgs in use from the configured mirrors, verified against the manifest."""

from n2v_repro.logs import script_log

with script_log(snakemake.log[0]):
    from n2v_repro.data.download import DownloadSettings, download_images

    download_images(
        outputs=list(snakemake.output),
        manifest_path=snakemake.input.manifest,
        mirrors=snakemake.config["data"]["mirrors"],
        cache_dir=snakemake.params.cache_dir,
        settings=DownloadSettings.from_config(snakemake.config["data"]["download"]),
    )
