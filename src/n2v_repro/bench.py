"""Training throughput of each framework x arch: `python -m n2v_repro.bench`.

Each framework runs in its own subprocess (clean timings; the torch and Jittor processes
never share a runtime). Every run trains from the same initial weights on the same random
N2V-masked batches: `--warmup` untimed steps (Jittor compiles its kernels there), then
`--steps` timed steps between two device synchronisations.

    python -m n2v_repro.bench --archs n2n_unet --steps 10 --warmup 3 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.backends.registry import FRAMEWORKS
from n2v_repro.models.spec import ARCHS

log = logging.getLogger(__name__)

PATCH = 64
DISTINCT_BATCHES = 4
MASKING = {"kind": "uniform_withCP", "percentage": 0.198, "radius": 2}
ADAM = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "semantics": "torch"}


def make_batches(batch_size: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """Make a few fixed masked batches of random normal patches, cycled through by the runs."""
    from n2v_repro.training.masking import mask_patches

    rng = np.random.default_rng([seed, 0xBE7C])
    batches = []
    for _ in range(DISTINCT_BATCHES):
        patches = rng.standard_normal((batch_size, PATCH, PATCH)).astype(np.float32)
        arrays = mask_patches(patches, rng, **MASKING)
        batches.append(tuple(a[:, None] for a in arrays))
    return batches


def framework_version(framework: str) -> str:
    module = __import__("torch" if framework == "torch" else "jittor")
    return str(module.__version__)


def run_one(
    framework: str,
    arch: str,
    *,
    steps: int,
    warmup: int,
    batch_size: int,
    device: str,
    threads: int | None,
    seed: int,
) -> dict[str, Any]:
    """Time `steps` training steps of one framework x arch in this process."""
    from n2v_repro.backends.registry import make_backend
    from n2v_repro.models.initialisation import make_init_weights

    backend = make_backend(framework, arch, device=device, threads=threads)
    backend.load_weights(make_init_weights(arch, seed))
    backend.configure_optimizer(**ADAM)
    batches = make_batches(batch_size, seed)
    for i in range(warmup):
        backend.train_step(*batches[i % len(batches)])
    backend.synchronize()
    backend.reset_peak_memory()
    start = time.perf_counter()
    loss = float("nan")
    for i in range(steps):
        loss = backend.train_step(*batches[i % len(batches)])
    backend.synchronize()
    seconds = time.perf_counter() - start
    return {
        "framework": framework,
        "arch": arch,
        "device": backend.device,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
        "seconds": seconds,
        "patches_per_s": steps * batch_size / seconds,
        "peak_memory_mib": backend.peak_memory_mib(),
        "last_loss": loss,
        "versions": {
            framework: framework_version(framework),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def run_in_subprocess(framework: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        command = [
            sys.executable, "-m", "n2v_repro.bench", "--worker",
            "--frameworks", framework, "--archs", *args.archs,
            "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch-size", str(args.batch_size), "--device", args.device,
            "--seed", str(args.seed), "--json", str(out),
        ]  # fmt: skip
        if args.threads:
            command += ["--threads", str(args.threads)]
        env = dict(os.environ)
        if args.threads:
            # Set before the worker's first import so OpenMP/MKL pools start at this size.
            env["OMP_NUM_THREADS"] = str(args.threads)
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"{framework} benchmark failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
            )
        return json.loads(out.read_text())


def ratios(records: list[dict[str, Any]]) -> dict[str, float]:
    """Jittor / PyTorch patches per second, per arch where both ran."""
    speed = {(r["framework"], r["arch"]): r["patches_per_s"] for r in records}
    return {
        arch: speed[("jittor", arch)] / speed[("torch", arch)]
        for (framework, arch) in speed
        if framework == "torch" and ("jittor", arch) in speed
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m n2v_repro.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per framework")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker:
        records = [
            run_one(framework, arch, steps=args.steps, warmup=args.warmup,
                    batch_size=args.batch_size, device=args.device, threads=args.threads,
                    seed=args.seed)
            for framework in args.frameworks
            for arch in args.archs
        ]  # fmt: skip
        args.json.write_text(json.dumps(records))
        return records
    records = []
    for framework in args.frameworks:
        for record in run_in_subprocess(framework, args):
            records.append(record)
            print(
                f"{record['framework']:>6} {record['arch']:>8} {record['device']}: "
                f"{record['patches_per_s']:8.2f} patches/s "
                f"({record['steps']} steps x {record['batch_size']} in {record['seconds']:.1f} s)",
                flush=True,
            )
    for arch, ratio in ratios(records).items():
        print(f"jittor/torch {arch}: {ratio:.3f}")
    if args.json is not None:
        from n2v_repro.io.atomic import write_json

        write_json(args.json, records)
    return records


if __name__ == "__main__":
    main()
