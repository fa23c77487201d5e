"""Training throughput per framework x arch x batch x precision: `python -m n2v_repro.cli.bench`.

Each framework runs in its own subprocess (clean timings; the torch and Jittor processes
never share a runtime; a Jittor worker gets `N2V_SITE_JITTOR` first on its path). Every run
trains from the same initial weights on the same random N2V-masked batches (masks sent as
bools, as the training loop does): `--warmup` untimed steps (Jittor compiles its kernels and
cuDNN picks its algorithms there), then the timed steps, queued without reading the loss
back (`queue_train_step`) and closed by one `read_losses` and a device synchronisation, as
in training. With `--seconds` the number of timed steps comes from a short synchronised
calibration, so that the timed part lasts about that long (`--steps` is then the minimum).
On CUDA the GPU's busy percentage (NVML) is sampled during the timed steps. Jittor has no
bfloat16: bf16 runs are planned for torch only.

    python -m n2v_repro.cli.bench --archs n2n_unet --steps 10 --warmup 3 --json bench.json
    python -m n2v_repro.cli.bench --device cuda --batch-sizes 16 128 --precisions fp32 tf32 bf16 \
        --seconds 2 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from n2v_repro.backends.base import PRECISIONS, speed_setting
from n2v_repro.backends.registry import FRAMEWORKS, STOCK_FRAMEWORKS
from n2v_repro.config import OptimizerConfig
from n2v_repro.framework_site import framework_env, framework_package
from n2v_repro.io.machine import machine_name
from n2v_repro.models.spec import ARCHS

log = logging.getLogger(__name__)

PATCH = 64
DISTINCT_BATCHES = 4
MASKING = {"kind": "uniform_withCP", "percentage": 0.198, "radius": 2}
ADAM = OptimizerConfig(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, semantics="torch")
# (framework, precision) pairs that do not exist: Jittor 1.3.11 has no bfloat16 autocast.
UNSUPPORTED = {("jittor", "bf16")}
# Synchronised steps that estimate the time of one step when --seconds is given.
CALIBRATION_STEPS = 3
MAX_TIMED_STEPS = 2000
# NVML's utilisation counter covers the last 1/6 s to 1 s; sampled this often.
GPU_SAMPLE_S = 0.1
OK = "ok"
SKIPPED_BUDGET = "skipped: time budget"


@dataclass(frozen=True)
class BenchPlan:
    """What to time: every arch x batch size x precision a framework supports."""

    archs: tuple[str, ...] = ARCHS
    batch_sizes: tuple[int, ...] = (16,)
    precisions: tuple[str, ...] = ("fp32",)
    steps: int = 20
    warmup: int = 3
    seconds: float | None = None
    device: str = "auto"
    threads: int | None = None
    seed: int = 123

    def runs(self, framework: str) -> list[tuple[str, int, str]]:
        """(arch, batch size, precision) of every run of `framework`, in order."""
        return [
            (arch, batch_size, precision)
            for arch in self.archs
            for batch_size in self.batch_sizes
            for precision in self.precisions
            if (framework_package(framework), precision) not in UNSUPPORTED
        ]


def make_batches(batch_size: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """Make a few fixed masked batches of random normal patches, cycled through by the runs.

    Each is (inputs, targets, mask), (B, 1, 64, 64); the mask is bool, as the loop sends it.
    """
    from n2v_repro.training.masking import mask_patches

    rng = np.random.default_rng([seed, 0xBE7C])
    batches = []
    for _ in range(DISTINCT_BATCHES):
        patches = rng.standard_normal((batch_size, PATCH, PATCH)).astype(np.float32)
        inputs, targets, mask = mask_patches(patches, rng, **MASKING)
        batches.append((inputs[:, None], targets[:, None], mask[:, None] != 0))
    return batches


def framework_version(framework: str) -> str:
    module = __import__(framework_package(framework))
    return str(module.__version__)


def _queue_steps(backend: Any, batches: list[tuple[np.ndarray, ...]], steps: int) -> np.ndarray:
    for i in range(steps):
        backend.queue_train_step(*batches[i % len(batches)])
    losses = backend.read_losses()
    backend.synchronize()
    return losses


@contextlib.contextmanager
def _gpu_busy(device: str) -> Iterator[dict[str, float | None]]:
    """Sample NVML utilisation while the block runs; yields a dict filled in at its end."""
    result: dict[str, float | None] = {"gpu_busy_percent": None}
    if device != "cuda":
        yield result
        return
    from n2v_repro.training.monitor import ResourceMonitor

    with tempfile.TemporaryDirectory() as tmp:
        monitor = ResourceMonitor(Path(tmp) / "monitor.csv", GPU_SAMPLE_S, device="cuda")
        with monitor:
            yield result
        result["gpu_busy_percent"] = monitor.summary()["mean_gpu_util_percent"]


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
    precision: str = "fp32",
    seconds: float | None = None,
) -> dict[str, Any]:
    """Time the training steps of one framework x arch x batch size x precision here."""
    from n2v_repro.backends.registry import make_backend
    from n2v_repro.models.initialisation import make_init_weights

    started = time.perf_counter()
    backend = make_backend(framework, arch, device=device, threads=threads, precision=precision)
    backend.load_weights(make_init_weights(arch, seed))
    backend.configure_optimizer(ADAM)
    batches = make_batches(batch_size, seed)
    _queue_steps(backend, batches, warmup)
    warmup_s = time.perf_counter() - started
    timed_steps = steps
    if seconds is not None:
        calibration = time.perf_counter()
        _queue_steps(backend, batches, CALIBRATION_STEPS)
        per_step = (time.perf_counter() - calibration) / CALIBRATION_STEPS
        timed_steps = max(steps, min(MAX_TIMED_STEPS, math.ceil(seconds / max(per_step, 1e-6))))
    backend.reset_peak_memory()
    with _gpu_busy(backend.device) as busy:
        start = time.perf_counter()
        losses = _queue_steps(backend, batches, timed_steps)
        elapsed = time.perf_counter() - start
    return {
        "framework": framework,
        "arch": arch,
        "device": backend.device,
        "batch_size": batch_size,
        "precision": backend.precision,
        "requested_precision": precision,
        "speed_levers": list(backend.speed_levers),
        "batch_norm": backend.batch_norm,
        "status": OK,
        "steps": timed_steps,
        "warmup": warmup,
        "warmup_seconds": warmup_s,
        "threads": threads,
        "seconds": elapsed,
        "patches_per_s": timed_steps * batch_size / elapsed,
        "peak_memory_mib": backend.peak_memory_mib(),
        "gpu_busy_percent": busy["gpu_busy_percent"],
        "last_loss": float(losses[-1]),
        "machine": machine_name(),
        "versions": {
            framework: framework_version(framework),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def unrun(framework: str, arch: str, batch_size: int, precision: str, status: str) -> dict:
    """Record a planned run that did not run (skipped or failed), with why in `status`."""
    return {
        "framework": framework,
        "arch": arch,
        "batch_size": batch_size,
        "requested_precision": precision,
        "status": status,
    }


def run_worker(framework: str, plan: BenchPlan, out: Path, budget_s: float | None) -> None:
    """Run `plan` for `framework` here, appending one JSON line per run to `out`.

    A run that raises is recorded as failed and the next one goes on; once `budget_s` has
    passed, the runs not started are recorded as skipped. Lines are flushed as they come, so
    a worker killed by its parent leaves the runs it finished.
    """
    start = time.monotonic()
    with open(out, "a") as handle:
        for arch, batch_size, precision in plan.runs(framework):
            if budget_s is not None and time.monotonic() - start >= budget_s:
                record = unrun(framework, arch, batch_size, precision, SKIPPED_BUDGET)
            else:
                try:
                    record = run_one(
                        framework, arch, steps=plan.steps, warmup=plan.warmup,
                        batch_size=batch_size, device=plan.device, threads=plan.threads,
                        seed=plan.seed, precision=precision, seconds=plan.seconds,
                    )  # fmt: skip
                except Exception as error:  # one failing run must not hide the others
                    log.exception(
                        "%s %s batch %d %s failed", framework, arch, batch_size, precision
                    )
                    message = f"failed: {type(error).__name__}: {error}"
                    record = unrun(framework, arch, batch_size, precision, message[:500])
            _write_line(handle, record)


def _write_line(handle: IO[str], record: dict[str, Any]) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read the complete JSON lines of a worker's output (a killed worker may leave half a line)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def worker_command(framework: str, plan: BenchPlan, out: Path, budget_s: float | None) -> list:
    command = [
        sys.executable, "-m", "n2v_repro.cli.bench", "--worker",
        "--frameworks", framework, "--archs", *plan.archs,
        "--batch-sizes", *map(str, plan.batch_sizes), "--precisions", *plan.precisions,
        "--steps", str(plan.steps), "--warmup", str(plan.warmup),
        "--device", plan.device, "--seed", str(plan.seed), "--json", str(out),
    ]  # fmt: skip
    if plan.seconds is not None:
        command += ["--seconds", str(plan.seconds)]
    if plan.threads:
        command += ["--threads", str(plan.threads)]
    if budget_s is not None:
        command += ["--budget-s", str(budget_s)]
    return command


def start_process(command: list[str], env: dict[str, str], log: IO[str]) -> subprocess.Popen:
    """Start `command` in its own process group (so that its children can be killed with it)."""
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def finish_process(process: subprocess.Popen, timeout_s: float | None) -> int | None:
    """Wait for `process`; after `timeout_s` kill its whole group and return None."""
    try:
        return process.wait(timeout=None if timeout_s is None else max(0.0, timeout_s))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def run_process(
    command: list[str], env: dict[str, str], timeout_s: float | None, log_path: Path | None
) -> tuple[int | None, str]:
    """Run `command` in its own process group; kill the whole group after `timeout_s`.

    Returns (exit status, or None when killed at the timeout; the output's last 4000
    characters). The output goes to `log_path` when given (Jittor's compilers included).
    """
    with contextlib.ExitStack() as stack:
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            output = stack.enter_context(open(log_path, "w"))
        else:
            output = stack.enter_context(tempfile.TemporaryFile("w+"))
        status = finish_process(start_process(command, env, output), timeout_s)
        output.flush()
        text = Path(log_path).read_text() if log_path is not None else _reread(output)
    return status, text[-4000:]


def _reread(handle: IO[str]) -> str:
    handle.seek(0)
    return handle.read()


def run_in_subprocess(
    framework: str,
    plan: BenchPlan,
    budget_s: float | None = None,
    grace_s: float = 10.0,
    log_path: Path | None = None,
) -> list[dict[str, Any]]:
    """Run `plan` for `framework` in a worker process; one record per planned run.

    With `budget_s` the worker starts no run after that many seconds, and is killed
    `grace_s` later if a run is still going; runs it did not finish are recorded as
    skipped (time budget). A worker that dies records its remaining runs as failed.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.jsonl"
        env = framework_env(framework)
        if plan.threads:
            # Set before the worker's first import so OpenMP/MKL pools start at this size.
            env["OMP_NUM_THREADS"] = str(plan.threads)
        timeout = None if budget_s is None else budget_s + grace_s
        status, tail = run_process(
            worker_command(framework, plan, out, budget_s), env, timeout, log_path
        )
        done = read_records(out)
    if status not in (0, None):
        log.error("%s benchmark worker failed (exit %s):\n%s", framework, status, tail)
    seen = {(r["arch"], r["batch_size"], r["requested_precision"]) for r in done}
    missing = SKIPPED_BUDGET if status is None else f"failed: worker exit {status}"
    return done + [
        unrun(framework, arch, batch_size, precision, missing)
        for arch, batch_size, precision in plan.runs(framework)
        if (arch, batch_size, precision) not in seen
    ]


def ratios(records: list[dict[str, Any]]) -> dict[tuple[str, int, str], float]:
    """Jittor / PyTorch patches per second per (arch, batch size, precision) where both ran.

    The precision is the one asked for (on the CPU every run computes in fp32).
    """
    speed = {
        (r["framework"], r["arch"], r["batch_size"], r["requested_precision"]): r["patches_per_s"]
        for r in records
        if r.get("status", OK) == OK
    }
    return {
        key[1:]: speed[("jittor", *key[1:])] / value
        for key, value in speed.items()
        if key[0] == "torch" and ("jittor", *key[1:]) in speed
    }


def describe(record: dict[str, Any]) -> str:
    """One line for a record: its throughput, or why it has none."""
    precision = record["requested_precision"]
    if record.get("precision", precision) != precision:
        precision += f" (runs {record['precision']})"
    name = (
        f"{record['framework']:>6} {record['arch']:>8} batch {record['batch_size']:>3} "
        f"{precision:>4}"
    )
    if record.get("status", OK) != OK:
        return f"{name}: {record['status']}"
    memory = record["peak_memory_mib"]
    busy = record["gpu_busy_percent"]
    return (
        f"{name} {record['device']}: {record['patches_per_s']:9.1f} patches/s "
        f"({record['steps']} steps in {record['seconds']:.2f} s"
        + (f", peak {memory:.0f} MiB" if memory is not None else "")
        + (f", GPU busy {busy:.0f}%" if busy is not None else "")
        + ")"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m n2v_repro.cli.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--frameworks", nargs="+", choices=FRAMEWORKS, default=list(STOCK_FRAMEWORKS)
    )
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--batch-sizes", "--batch-size", nargs="+", type=int, default=[16], dest="batch_sizes"
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=["fp32"],
        help="CUDA arithmetic (fp32 strict, tf32, bf16 torch only); the CPU computes fp32",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="aim the timed part at this long (per run)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per framework")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="per framework: start no run after this"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        parser.error("--steps and --batch-sizes must be >= 1, --warmup >= 0")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.worker and args.json is None:
        parser.error("--worker needs --json")
    return args


def plan_of(args: argparse.Namespace) -> BenchPlan:
    return BenchPlan(
        archs=tuple(args.archs),
        batch_sizes=tuple(args.batch_sizes),
        precisions=tuple(args.precisions),
        steps=args.steps,
        warmup=args.warmup,
        seconds=args.seconds,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    plan = plan_of(args)
    if args.worker:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        for framework in args.frameworks:
            run_worker(framework, plan, args.json, args.budget_s)
        return read_records(args.json)
    records = []
    for framework in args.frameworks:
        for record in run_in_subprocess(framework, plan, args.budget_s):
            records.append(record)
            print(describe(record), flush=True)
    levers = {lever for record in records for lever in record.get("speed_levers", [])}
    setting = speed_setting(levers)
    for (arch, batch_size, precision), ratio in ratios(records).items():
        print(f"jittor/torch {arch} batch {batch_size} {precision} ({setting}): {ratio:.3f}")
    if args.json is not None:
        from n2v_repro.io.atomic import write_json

        write_json(args.json, records)
    return records


if __name__ == "__main__":
    main()
