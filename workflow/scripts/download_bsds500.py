"""Fetch the jpgs in use from the configured mirrors, verified against the manifest."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from n2v_repro.logs import script_log  # noqa: E402

with script_log(snakemake.log[0]):
    from n2v_repro.data.download import DownloadSettings, download_images

    download_images(
        outputs=list(snakemake.output),
        manifest_path=snakemake.input.manifest,
        mirrors=snakemake.config["data"]["mirrors"],
        cache_dir=snakemake.params.cache_dir,
        settings=DownloadSettings.from_config(snakemake.config["data"]["download"]),
    )
