"""Command line of the GPU check (docs/gpu.md, "How to run the GPU check").

    python -m n2v_repro.gpu_check prepare --mirror /data/BSDS500 --dest .gpu_data
    python -m n2v_repro.gpu_check --out results/gpu_check [--data .gpu_data] [--smoke]

`prepare` runs where a BSDS500 copy is (`--mirror`: a folder laid out `<split>/<id>.jpg`, or
a BSDS500 tree with data/images) and packs the jpgs the check needs; the check
itself runs on the GPU machine after the carried wheels are installed. It exits with 1 when
parity failed or a phase failed (not for what the time budget skipped), else 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from n2v_repro.backends.registry import STOCK_FRAMEWORKS as FRAMEWORKS


def prepare_main(argv: list[str]) -> None:
    from n2v_repro.gpu_check.pack import (
        CARRY_MIB,
        DEFAULT_BSD68_IDS,
        DEFAULT_MANIFEST,
        DEFAULT_PIXELS,
        folder_mib,
        prepare,
    )

    parser = argparse.ArgumentParser(
        prog="python -m n2v_repro.gpu_check prepare",
        description="Pack the training and BSD68 jpgs for the GPU check (a git-ignored folder).",
    )
    parser.add_argument(
        "--mirror", type=Path, required=True, help="BSDS500: <split>/<id>.jpg or its data/images"
    )
    parser.add_argument("--dest", type=Path, default=Path(".gpu_data"))
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--bsd68-ids", type=Path, default=DEFAULT_BSD68_IDS)
    parser.add_argument("--bsd68-pixels", type=Path, default=DEFAULT_PIXELS)
    parser.add_argument("--train-images", type=int, default=None, help="the first N only")
    parser.add_argument("--bsd68-images", type=int, default=None, help="the first N only")
    args = parser.parse_args(argv)
    info = prepare(
        args.mirror, args.dest, args.manifest, args.bsd68_ids, args.bsd68_pixels,
        args.train_images, args.bsd68_images,
    )  # fmt: skip
    print(
        f"packed {info['train_images']} training + {info['bsd68_images']} BSD68 jpgs into "
        f"{args.dest}: {info['mib']:.1f} MiB"
    )
    wheels = Path(".whl")
    if wheels.is_dir():
        total = info["mib"] + folder_mib(wheels)
        print(f"with the wheels in {wheels}: {total:.1f} MiB of the {CARRY_MIB} MiB a call carries")
        if total > CARRY_MIB:
            sys.exit(f"too much to carry: {total:.1f} MiB; drop --snakemake from the wheels")


def check_main(argv: list[str]) -> int:
    from n2v_repro.gpu_check.check import DEFAULT_CONFIGS, run_check

    parser = argparse.ArgumentParser(
        prog="python -m n2v_repro.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="gpu_check.json and .md go here")
    parser.add_argument("--data", type=Path, default=Path(".gpu_data"), help="from `prepare`")
    parser.add_argument("--work", type=Path, default=None, help="scratch (default: a temp dir)")
    parser.add_argument("--smoke", action="store_true", help="the CPU, tiny budget (tests)")
    parser.add_argument("--budget-s", type=float, default=None, help="the whole check")
    parser.add_argument("--train-seconds", type=float, default=None, help="per framework")
    parser.add_argument("--bench-seconds", type=float, default=1.0, help="timed part of a run")
    parser.add_argument(
        "--train-frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS),
        help="in this order, each only when the budget leaves it its minimum",
    )  # fmt: skip
    parser.add_argument(
        "--train-precision", choices=("fp32", "tf32", "bf16"), default=None,
        help="default: the recipe's train.precision",
    )  # fmt: skip
    parser.add_argument(
        "--config", type=Path, nargs="+", default=list(DEFAULT_CONFIGS),
        help="merged left to right: the recipe trained",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not (args.data / "bsds500.sha256").is_file():
        parser.error(
            f"--data {args.data}: no packed data; run `python -m n2v_repro.gpu_check prepare "
            f"--mirror <BSDS500> --dest {args.data}` first"
        )
    work = args.work or Path(tempfile.mkdtemp(prefix="n2v_gpu_check_"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run_check(
        out=args.out, pack=args.data, work=work, smoke=args.smoke,
        train_frameworks=tuple(args.train_frameworks), budget_s=args.budget_s,
        train_seconds=args.train_seconds, bench_seconds=args.bench_seconds,
        configs=tuple(args.config), train_precision=args.train_precision,
    )  # fmt: skip
    return 0 if succeeded(results) else 1


def succeeded(results: dict) -> bool:
    """Parity passed and nothing failed (a phase skipped for time is not a failure)."""
    phases = results["phases"]
    statuses = [r["status"] for r in phases.get("bench", {}).get("records", [])]
    statuses += [entry["status"] for entry in phases.get("train", {}).values()]
    statuses.append(phases.get("data", {}).get("status", "ok"))
    return bool(phases.get("parity", {}).get("passed")) and not any(
        status.startswith("failed") for status in statuses
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prepare"]:
        prepare_main(argv[1:])
    else:
        sys.exit(check_main(argv))


if __name__ == "__main__":
    main()
