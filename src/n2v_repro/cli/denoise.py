r"""Denoise your own grey images with trained weights, in either framework.

    python -m n2v_repro.cli.denoise --weights results/cpu/torch/sigma25/seed123/model/best.npz \\
        --input my_images/ --output denoised/
    python -m n2v_repro.cli.denoise --weights results/cpu/jittor/sigma25/seed123/model/best.npz \\
        --input resources/gray/bsd68/3096.png --output out/ --add-noise 25 --framework torch

Training writes the weights to results/{recipe}/{framework}/sigma{sigma}/seed{seed}/model/
(MODEL_DIR in n2v_repro.paths). The arch and the normalisation are read from the
model.json beside the weights. Inputs: one image or a folder of 8-/16-bit grey PNG or TIFF
(colour is converted to grey; JPEG is read, written back as PNG). Outputs keep the name,
format and bit depth; with --add-noise the noisy input is written too (NAME_noisy.EXT), and
with --add-noise or --clean the PSNR and SSIM of each image are printed and written to
metrics.csv. Nothing is written unless every image succeeds. Logic:
src/n2v_repro/evaluation/denoise.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from n2v_repro.backends.registry import FRAMEWORKS
from n2v_repro.evaluation.denoise import DenoiseError, DenoiseOptions, Result, run_denoise
from n2v_repro.models.spec import ARCHS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m n2v_repro.cli.denoise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--weights", type=Path, required=True, help="last.npz or best.npz")
    parser.add_argument("--input", type=Path, required=True, help="an image or a folder")
    parser.add_argument("--output", type=Path, required=True, help="folder for the results")
    parser.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default=None,
        help="default: the framework that trained the weights",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument(
        "--tile", type=int, default=512, help="images larger than this are denoised in tiles"
    )
    parser.add_argument("--overlap", type=int, default=64, help="context around each tile")
    parser.add_argument(
        "--add-noise",
        type=int,
        default=None,
        metavar="SIGMA",
        help="add Gaussian noise of this sigma (8-bit grey levels) first, as the pipeline",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="noise seed; default: the training seed"
    )
    parser.add_argument(
        "--clean", type=Path, default=None, help="clean image (or folder, same names): metrics"
    )
    parser.add_argument(
        "--arch", choices=ARCHS, default=None, help="only for weights without a model.json"
    )
    parser.add_argument(
        "--stats", type=Path, default=None, help="train_stats.json, for weights without one"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    options = DenoiseOptions(
        weights=args.weights,
        input=args.input,
        output=args.output,
        framework=args.framework,
        device=args.device,
        threads=args.threads,
        arch=args.arch,
        stats=args.stats,
        tile=args.tile,
        overlap=args.overlap,
        add_noise=args.add_noise,
        seed=args.seed,
        clean=args.clean,
    )
    try:
        results = run_denoise(options)
    except DenoiseError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{len(results)} image(s) written to {args.output}")
    return results


if __name__ == "__main__":
    main()
