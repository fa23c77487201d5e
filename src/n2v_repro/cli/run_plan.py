"""What `bash run.sh` will run and how long its training takes: `python -m n2v_repro.cli.run_plan`.

run.sh calls this before Snakemake. Without a GPU (no CUDA driver) and without `--full`, the
run is the CPU reproduction: `config/cpu.yaml` is put first among the config files (so that
files the user names, e.g. a mirror, still apply on top). With a GPU, or with `--full`, it is
the full reproduction of `config/config.yaml`. The estimate is the number of training patches
of each job over the training throughput of its framework and arch on this machine, measured
just before by a short calibration (`python -m n2v_repro.cli.bench`, a few seconds of training
steps per framework; Jittor compiles its kernels there the first time, which the run would do
anyway). Rates differ between CPU models, so a rate measured elsewhere would mislead. The
estimate covers the training steps only, and says so. `--measured FILE` takes the rates from
a bench JSON file instead.

    python -m n2v_repro.cli.run_plan --mode auto -- --configfile my-mirror.yaml

prints the plan on stderr and the Snakemake arguments, NUL-separated, on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from n2v_repro.backends.jittor_env import cuda_driver_available
from n2v_repro.config import REPO_ROOT, ConfigError, PipelineConfig, load_config
from n2v_repro.errors import UserError
from n2v_repro.pipeline.runs import our_runs
from n2v_repro.training.progress import format_duration

DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
CPU_CONFIG = REPO_ROOT / "config" / "cpu.yaml"
# Timed seconds of training steps per framework x arch x batch in the calibration, after
# CALIBRATION_WARMUP untimed steps (Jittor compiles its kernels there).
CALIBRATION_SECONDS = 3
CALIBRATION_WARMUP = 3
CONFIGFILE_FLAGS = ("--configfile", "--configfiles")
FULL_FLAG = "--full"
# The batch size of `python -m n2v_repro.cli.bench`'s default plan.
BENCH_BATCH = 16
CONFIG_FLAGS = ("--config", "-C")


@dataclass(frozen=True)
class TrainingJob:
    """One training run and its estimated duration (None without a measured rate)."""

    recipe: str
    framework: str
    arch: str
    sigma: int
    seed: int
    patches: int
    seconds: float | None


def _split_config_files(args: Sequence[str]) -> tuple[list[str], list[str], int | None]:
    """Separate the config files from the other arguments.

    Returns the other arguments, the files of every --configfile flag in order (a flag takes
    the words after it up to the next flag, as Snakemake's does), and the position among the
    other arguments of the first flag (None without one).
    """
    rest: list[str] = []
    files: list[str] = []
    first: int | None = None
    taking = False
    for arg in args:
        flag, equals, value = arg.partition("=")
        if arg in CONFIGFILE_FLAGS or (equals and flag in CONFIGFILE_FLAGS):
            first = len(rest) if first is None else first
            taking = not equals
            if equals:
                files.append(value)
        elif taking and not arg.startswith("-"):
            files.append(arg)
        else:
            taking = False
            rest.append(arg)
    return rest, files, first


def snakemake_arguments(user_args: Sequence[str], cpu_run: bool) -> list[str]:
    """Return the user's Snakemake arguments, with config/cpu.yaml first for a CPU run.

    Every --configfile flag's files become one --configfile flag at the first one's place:
    Snakemake keeps only the last of repeated flags, so `--configfile a.yaml --configfile
    b.yaml` would silently drop a.yaml. Snakemake merges the files left to right over the
    Snakefile's config/config.yaml, so config/cpu.yaml goes first: the user's files win.
    """
    rest, files, first = _split_config_files([arg for arg in user_args if arg != FULL_FLAG])
    if cpu_run:
        files = [_relative(CPU_CONFIG), *files]
    if not files:
        return rest
    place = len(rest) if first is None else first
    return [*rest[:place], "--configfile", *files, *rest[place:]]


def config_files(args: Sequence[str]) -> list[Path]:
    """Return the config files Snakemake merges, in order: config/config.yaml, then the user's."""
    return [DEFAULT_CONFIG, *(Path(file) for file in _split_config_files(args)[1])]


def read_rates(path: Path) -> tuple[dict[tuple[str, str, int], float], str]:
    """(framework, arch, batch size) -> training patches/s on the CPU, and that CPU's name."""
    if not path.exists():
        return {}, "no measurement"
    records = json.loads(path.read_text())
    rates = {
        (r["framework"], r["arch"], int(r["batch_size"])): float(r["patches_per_s"])
        for r in records
        if r.get("status") == "ok" and r.get("device") == "cpu"
    }
    machine = next((r["machine"] for r in records if r.get("machine")), "an unnamed CPU")
    return rates, machine


def training_jobs(
    config: PipelineConfig, rates: Mapping[tuple[str, str, int], float]
) -> list[TrainingJob]:
    """Every training run of `config` with its patch count and estimated seconds.

    The rate is the one measured at the recipe's batch size, else at batch 16.
    """
    jobs = []
    for recipe_name, framework, sigma, seed in our_runs(config):
        train = config.recipe(recipe_name).train
        patches = train.epochs * train.steps_per_epoch * train.batch_size
        rate = rates.get((framework, train.arch, train.batch_size)) or rates.get(
            (framework, train.arch, BENCH_BATCH)
        )
        seconds = patches / rate if rate else None
        jobs.append(TrainingJob(recipe_name, framework, train.arch, sigma, seed, patches, seconds))
    return jobs


def describe(
    config: PipelineConfig,
    jobs: Sequence[TrainingJob],
    machine: str,
    cpu_run: bool,
    on_gpu: bool,
    source: str = "a calibration just now",
) -> list[str]:
    """Return the lines run.sh prints before the run starts."""
    recipes = ", ".join(config.recipes)
    sigmas = ", ".join(str(s) for s in config.sigmas)
    frameworks = " and ".join(config.frameworks)
    what = (
        f"recipe {recipes}, sigma {sigmas}, {frameworks}, seed(s) "
        f"{', '.join(str(s) for s in config.seeds)}: {len(jobs)} training job(s)"
    )
    if cpu_run:
        lines = [
            f"no GPU found: running the CPU reproduction ({_relative(CPU_CONFIG)}: {what}).",
            f"The full reproduction (all sigmas and recipes of {_relative(DEFAULT_CONFIG)}, for a "
            f"GPU): bash run.sh {FULL_FLAG}",
        ]
    elif on_gpu:
        lines = [f"GPU found: running {what}."]
    else:
        lines = [f"running {what} on the CPU."]
    if config.reference_recipes:
        count = len(config.reference_recipes) * len(config.sigmas) * len(config.seeds)
        lines.append(
            f"Beside them: {count * len(config.references)} reference training job(s) "
            f"({', '.join(config.references)}, the same budget each, in environments built on "
            "first use), not in the estimate: their libraries are not calibrated."
        )
    if on_gpu:
        return lines
    known = [job.seconds for job in jobs if job.seconds is not None]
    if known and len(known) == len(jobs):
        groups: dict[tuple[str, str, int], list[TrainingJob]] = {}
        for job in jobs:
            groups.setdefault((job.framework, job.arch, job.patches), []).append(job)
        per_group = "; ".join(
            f"{framework} {arch}: {len(group)} x {patches:,} patches at "
            f"{patches / (group[0].seconds or 1):.1f} patches/s = "
            f"{format_duration(group[0].seconds or 0)} each"
            for (framework, arch, patches), group in groups.items()
        )
        lines.append(
            f"Estimated training time on {machine}: about {format_duration(sum(known))}, "
            f"one job after another ({per_group}); an estimate from the training rates of "
            f"{source}. Data preparation, evaluation and the report come on top."
        )
    else:
        lines.append(
            f"No measured CPU rate for every framework x arch of this run ({source}); the "
            "training jobs log their own ETA."
        )
    return lines


def calibrate(config: PipelineConfig, out: Path) -> Path:
    """Measure this machine's training rates for the run's frameworks x archs x batches.

    The bench writes its records to `out`; its own output goes to this process's stderr only
    on failure, since run.sh reads the Snakemake arguments from stdout.
    """
    archs = sorted({recipe.train.arch for recipe in config.run_recipes})
    batches = sorted({str(recipe.train.batch_size) for recipe in config.run_recipes})
    command = [
        sys.executable, "-m", "n2v_repro.cli.bench", "--device", "cpu",
        "--frameworks", *config.frameworks, "--archs", *archs, "--batch-sizes", *batches,
        "--seconds", str(CALIBRATION_SECONDS), "--warmup", str(CALIBRATION_WARMUP),
        "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        print("run.sh: the calibration failed: " + " / ".join(tail), file=sys.stderr)
    return out


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=["auto", "cpu", "full"],
        default="auto",
        help="auto: the CPU reproduction unless a GPU is found or --full is among the arguments",
    )
    parser.add_argument(
        "--measured", type=Path, default=None, help="bench JSON to take rates from (no calibration)"
    )
    parser.add_argument("snakemake_args", nargs="*", help="run.sh's arguments, after --")
    options = parser.parse_args(argv)
    user_args = options.snakemake_args
    on_gpu = cuda_driver_available()
    if options.mode == "auto":
        cpu_run = FULL_FLAG not in user_args and not on_gpu
    else:
        cpu_run = options.mode == "cpu"
    args = snakemake_arguments(user_args, cpu_run)
    try:
        config = PipelineConfig.from_mapping(load_config(*config_files(args)))
    except (ConfigError, OSError) as error:
        raise UserError(f"run.sh: {error}") from None
    if options.measured is not None:
        rates, machine = read_rates(options.measured)
        source = f"the benchmark in {_relative(options.measured)}"
    elif on_gpu:
        rates, machine, source = {}, "", "none"
    else:
        print(
            f"run.sh: calibrating: {CALIBRATION_SECONDS} s of training steps per framework on "
            "this CPU (Jittor compiles its kernels first, a few minutes the first time)",
            file=sys.stderr,
        )
        with tempfile.TemporaryDirectory() as scratch:
            rates, machine = read_rates(calibrate(config, Path(scratch) / "calibration.json"))
        source = f"a {CALIBRATION_SECONDS}-s calibration of each framework just now"
    jobs = training_jobs(config, rates)
    lines = describe(config, jobs, machine, cpu_run, on_gpu, source)
    if any(arg in CONFIG_FLAGS or arg.startswith("--config=") for arg in args):
        lines.append("(--config values apply on top of this; the plan above leaves them out)")
    for line in lines:
        print(f"run.sh: {line}", file=sys.stderr)
    sys.stdout.write("".join(f"{arg}\0" for arg in args))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:
        print(error, file=sys.stderr)
        sys.exit(2)
