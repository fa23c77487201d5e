"""Run each bioimage.io package's README lines, as the package ships them, on every BSD68 image.

    python tools/bmz_readme_check.py <checkout> --json bmz_readme_check.json

Run it with the Python of a user's own environment (`pip install bioimageio.core
"pydantic<2.14" scikit-image torch`, then `pip install --no-deps -e .` for this tool's own
readers), not the pipeline's: the point is that the README works where the pipeline's
environment is not. For every package under `results/*/*/sigma*/seed*/bmz/`,
the README's python block is executed on each noisy BSD68 image of the run's noise level, and
its PSNR is compared with the pipeline's own evaluation of the same weights
(`eval/per_image.csv`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from n2v_repro import paths
from n2v_repro.bmz.export import readme_use_lines
from n2v_repro.evaluation.metrics import psnr
from n2v_repro.io.formats import load_noisy_set, read_gray_png, read_per_image
from n2v_repro.io.machine import machine_name

# A package of one run, paths.BMZ_PACKAGE: its run's folder, noise level and weights.
PACKAGE = re.compile(
    r"(?P<run>results/[^/]+/[^/]+/sigma(?P<sigma>\d+)/seed\d+)/bmz/.+_(?P<w>last|best)\.zip$"
)


def readme_code(package: Path) -> str:
    """Return the package README's python block, pointed at the package's own path."""
    with zipfile.ZipFile(package) as archive:
        return readme_use_lines(archive.read("README.md").decode(), package)


def check_package(root: Path, package: Path) -> dict[str, object]:
    """Denoise every BSD68 image with the README's lines; compare with the pipeline's PSNR."""
    match = PACKAGE.search(package.relative_to(root).as_posix())
    assert match is not None, package
    run, sigma, weights = root / match["run"], match["sigma"], match["w"]
    pipeline = {
        row["id"]: row["psnr"]
        for row in read_per_image(run / "eval" / "per_image.csv")
        if row["weights"] == weights
    }
    noisy_set = load_noisy_set(root / paths.NOISY_NPZ.format(sigma=sigma, dataset="bsd68"))
    code = compile(readme_code(package), f"{package.name}:README.md", "exec")
    differences = []
    for image_id, pipeline_psnr in pipeline.items():
        namespace: dict = {"image": noisy_set[image_id]}
        exec(code, namespace)  # noqa: S102 - the package's own README lines, the thing checked
        clean = read_gray_png(root / paths.GRAY_PNG.format(dataset="bsd68", image_id=image_id))
        differences.append(psnr(clean, namespace["denoised"]) - pipeline_psnr)
    gaps = np.asarray(differences)
    pipeline_mean = float(np.mean(list(pipeline.values())))
    return {
        "package": package.relative_to(root).as_posix(),
        "images": len(gaps),
        "pipeline_mean_psnr": pipeline_mean,
        "readme_mean_psnr": pipeline_mean + float(gaps.mean()),
        "max_abs_image_difference_db": float(np.abs(gaps).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout after `bash run.sh`")
    parser.add_argument("--json", type=Path, required=True, help="where to write the records")
    args = parser.parse_args()
    root = args.checkout.resolve()
    packages = sorted(root.glob("results/*/*/sigma*/seed*/bmz/*.zip"))
    if not packages:
        sys.exit(f"{root}/results: no bioimage.io package (bmz/*.zip); run `bash run.sh` first")
    import bioimageio.core

    records = [check_package(root, package) for package in packages]
    for record in records:
        print(json.dumps(record))
    args.json.write_text(
        json.dumps(
            {
                "machine": machine_name(),
                "python": sys.version.split()[0],
                "bioimageio_core": bioimageio.core.__version__,
                "packages": records,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
