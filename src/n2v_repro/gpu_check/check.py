"""The GPU check's phases within one time budget, and its results (JSON and markdown).

Phases, each given what is left of `Limits.budget_s` up to its own cap, a framework's work
always in its own process (`worker`, `bench`):

1. parity on the device in strict fp32 for every arch, the torch and Jittor workers at
   once (Jittor compiles meanwhile), while this process makes the training data (`pack`),
   then the float64 reference on the CPU in a torch worker (`parity.run_reference`);
2. throughput (`bench`): each framework x arch x batch size x precision, timed after
   warm-up between device synchronisations, with peak memory and NVML busy percentage;
3. the paper recipe (config/config.yaml + config/paper.yaml, sigma 25) trained for a wall
   budget per framework, torch first, then evaluated on every BSD68 image.

Time for the later phases is reserved before an earlier one starts; whatever cannot run in
what is left is recorded as "skipped: time budget", never run over. The JSON is rewritten
after every phase, so a check killed from outside keeps what finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from n2v_repro.backends.registry import STOCK_FRAMEWORKS as FRAMEWORKS
from n2v_repro.cli import bench
from n2v_repro.config import REPO_ROOT, PipelineConfig, TrainConfig, load_config, plain
from n2v_repro.framework_site import framework_env
from n2v_repro.models.spec import ARCHS

log = logging.getLogger(__name__)

# The recipe the check trains: the paper's (config/config.yaml's recipe_book).
PAPER_RECIPE = "paper"
DEFAULT_CONFIGS = (REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "paper.yaml")
SIGMA = 25
SKIPPED = bench.SKIPPED_BUDGET
RESULTS_JSON = "gpu_check.json"
RESULTS_MD = "gpu_check.md"
WORKER_LOG = "gpu_check_workers.log"
# The paper's network first: if time runs out, its figures are the ones that exist.
ARCH_ORDER = ("n2v_unet", *(arch for arch in ARCHS if arch != "n2v_unet"))


@dataclass(frozen=True)
class Limits:
    """Seconds: the whole check, each phase's cap, and what a framework's worker needs."""

    budget_s: float
    parity_s: float
    bench_s: dict[str, float]
    train_s: float
    min_train_s: float
    # Starting a worker (imports, Jittor's compile of its kernels) and evaluating BSD68.
    startup_s: dict[str, float]
    eval_s: dict[str, float]


FULL = Limits(
    budget_s=540.0,
    parity_s=150.0,
    bench_s={"torch": 75.0, "jittor": 90.0},
    train_s=300.0,
    min_train_s=60.0,
    startup_s={"torch": 15.0, "jittor": 60.0},
    eval_s={"torch": 40.0, "jittor": 90.0},
)
SMOKE = Limits(
    budget_s=240.0,
    parity_s=90.0,
    bench_s={"torch": 30.0, "jittor": 60.0},
    train_s=3.0,
    min_train_s=1.0,
    startup_s={"torch": 15.0, "jittor": 40.0},
    eval_s={"torch": 20.0, "jittor": 60.0},
)


@dataclass(frozen=True)
class CheckPlan:
    """What the check runs."""

    device: str
    archs: tuple[str, ...]
    bench: bench.BenchPlan
    parity_batch: int
    parity_steps: int
    tolerance: float
    train: TrainConfig
    train_frameworks: tuple[str, ...]
    seed: int
    patch_size: int
    n_valid: int
    sigma: int = SIGMA
    threads: int | None = None


def make_plan(
    config: PipelineConfig,
    smoke: bool,
    train_frameworks: tuple[str, ...],
    bench_seconds: float,
    train_precision: str | None = None,
) -> CheckPlan:
    """Plan the full check on CUDA, or the smoke check: the same flow on the CPU, tiny.

    The recipe trains at its own precision unless `train_precision` is given.
    """
    paper = config.recipe(PAPER_RECIPE).train
    if train_precision is not None:
        paper = dataclasses.replace(paper, precision=train_precision)
    if smoke:
        train = dataclasses.replace(
            # Generated images, not BSDS500: whole images (no Train400 crops), one held out.
            paper, arch="n2n_unet", init="torch_default", train_set="bsd400",
            validation=dataclasses.replace(paper.validation, heldout_images=1),
            batch_size=4, steps_per_epoch=3, valid_tiles=4, device="cpu", epochs=1000,
        )  # fmt: skip
        return CheckPlan(
            device="cpu",
            archs=("n2n_unet",),
            bench=bench.BenchPlan(
                archs=("n2n_unet",),
                batch_sizes=(2,),
                precisions=("fp32",),
                steps=2,
                warmup=1,
                device="cpu",
                threads=2,
                seed=config.seed,
            ),  # fmt: skip
            parity_batch=1,
            parity_steps=2,
            tolerance=config.parity.tolerance,
            train=train,
            train_frameworks=train_frameworks,
            seed=config.seed,
            patch_size=config.data.patch_size,
            n_valid=config.data.n_valid,
            threads=2,
        )
    return CheckPlan(
        device="cuda",
        archs=ARCH_ORDER,
        bench=bench.BenchPlan(
            archs=ARCH_ORDER,
            batch_sizes=(16, 128),
            precisions=("fp32", "tf32", "bf16"),
            steps=5,
            warmup=3,
            seconds=bench_seconds,
            device="cuda",
            seed=config.seed,
        ),  # fmt: skip
        parity_batch=config.parity.batch_size,
        parity_steps=config.parity.steps,
        tolerance=config.parity.tolerance,
        train=dataclasses.replace(paper, device="cuda"),
        train_frameworks=train_frameworks,
        seed=config.seed,
        patch_size=config.data.patch_size,
        n_valid=config.data.n_valid,
    )


@dataclass
class Clock:
    """Seconds since the check began and what is left of its budget."""

    budget_s: float
    start: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


class Check:
    """One run of the check: its plan, clock, folders and the results so far."""

    def __init__(self, plan: CheckPlan, limits: Limits, out: Path, work: Path, pack: Path) -> None:
        self.plan, self.limits, self.out, self.work, self.pack = plan, limits, out, work, pack
        self.clock = Clock(limits.budget_s)
        self.logs: list[Path] = []
        self.results: dict[str, Any] = {
            "format": 1,
            "smoke": plan.device == "cpu",
            "machine": machine_facts(),
            "frameworks": {},
            "settings": {
                "budget_s": limits.budget_s,
                "device": plan.device,
                "archs": list(plan.archs),
                "sigma": plan.sigma,
                "seed": plan.seed,
                "parity": {
                    "batch_size": plan.parity_batch,
                    "steps": plan.parity_steps,
                    "tolerance": plan.tolerance,
                    "precision": "fp32",
                },
                "bench": dataclasses.asdict(plan.bench),
                "train": plain(plan.train),
                "train_frameworks": list(plan.train_frameworks),
            },
            "phases": {},
        }

    # --- bookkeeping --------------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[{self.clock.elapsed():6.1f} s] {message}", flush=True)

    def save(self) -> None:
        """Write the JSON, the markdown and the workers' logs as they are now."""
        self.results["elapsed_s"] = round(self.clock.elapsed(), 1)
        self.out.mkdir(parents=True, exist_ok=True)
        _replace(self.out / RESULTS_JSON, json.dumps(self.results, indent=1, default=str) + "\n")
        _replace(self.out / RESULTS_MD, render_markdown(self.results))
        parts = []
        for path in self.logs:
            if path.exists():
                parts.append(f"===== {path.name}\n{path.read_text(errors='replace')}")
        _replace(self.out / WORKER_LOG, "\n".join(parts))

    def facts(self, framework: str, facts: dict[str, Any] | None) -> None:
        if facts:
            self.results["frameworks"].setdefault(framework, facts)

    def start_worker(
        self, framework: str, name: str, task: dict[str, Any]
    ) -> tuple[subprocess.Popen, IO[str], Path]:
        """Start `python -m n2v_repro.gpu_check.worker` on `task`; its output to a log."""
        folder = self.work / "tasks"
        folder.mkdir(parents=True, exist_ok=True)
        task_path, result = folder / f"{name}.json", folder / f"{name}_result.json"
        result.unlink(missing_ok=True)
        task = {**task, "framework": framework, "result": str(result)}
        task_path.write_text(json.dumps(task, indent=1))
        log_path = self.work / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.logs.append(log_path)
        handle = open(log_path, "w")  # noqa: SIM115 - closed by finish_worker
        env = framework_env(framework)
        if self.plan.threads:
            env["OMP_NUM_THREADS"] = str(self.plan.threads)
        command = [sys.executable, "-m", "n2v_repro.gpu_check.worker", str(task_path)]
        return bench.start_process(command, env, handle), handle, result

    def finish_worker(
        self, process: subprocess.Popen, handle: IO[str], result: Path, timeout_s: float
    ) -> tuple[str, dict[str, Any]]:
        """Wait at most `timeout_s`; return (status, the worker's result so far)."""
        status = bench.finish_process(process, timeout_s)
        handle.close()
        found = json.loads(result.read_text()) if result.exists() else {}
        if status is None:
            return SKIPPED, found
        return ("ok" if status == 0 else f"failed: exit {status} (see {WORKER_LOG})"), found

    # --- phase 1: parity, and the data meanwhile ----------------------------------------

    def parity_and_data(self, config: PipelineConfig) -> Any:
        from n2v_repro.parity import write_parity_inputs

        phase: dict[str, Any] = {"archs": list(self.plan.archs)}
        self.results["phases"]["parity"] = phase
        folder = self.work / "parity"
        for arch in self.plan.archs:
            write_parity_inputs(
                folder / "inputs" / f"{arch}.npz",
                arch,
                self.plan.seed,
                self.plan.parity_batch,
                config.train.masking,
            )
        task = {
            "kind": "parity",
            "archs": list(self.plan.archs),
            "dir": str(folder),
            "steps": self.plan.parity_steps,
            "optimizer": plain(config.train.optimizer),
            "device": self.plan.device,
        }
        deadline = self.clock.elapsed() + min(self.limits.parity_s, self._left_for_phase())
        self.say(f"parity ({self.plan.device}, strict fp32): {', '.join(self.plan.archs)}")
        workers = {fw: self.start_worker(fw, f"parity_{fw}", task) for fw in FRAMEWORKS}
        data = self.make_data(config)
        outcome = {}
        for framework, (process, handle, result) in workers.items():
            timeout = deadline - self.clock.elapsed()
            status, found = self.finish_worker(process, handle, result, timeout)
            self.facts(framework, found.get("facts"))
            outcome[framework] = {"status": status, "archs": found.get("archs", {})}
            self.say(f"parity {framework} worker: {status}")
        phase["workers"] = outcome
        both = [arch for arch in self.plan.archs if self._ran(outcome, arch, FRAMEWORKS)]
        if both:
            # PyTorch in float64 on the CPU, after both: it needs their kink units.
            reference_task = {"kind": "parity_reference", "archs": both, "dir": str(folder)}
            if self.plan.threads:
                reference_task["threads"] = self.plan.threads
            worker = self.start_worker("torch", "parity_reference", reference_task)
            status, found = self.finish_worker(*worker, deadline - self.clock.elapsed())
            outcome["reference"] = {"status": status, "archs": found.get("archs", {})}
            self.say(f"parity float64 reference worker: {status}")
        self.compare_parity(folder, outcome)
        self.save()
        return data

    def _left_for_phase(self) -> float:
        """Return what the check can spend now and still train torch for its minimum."""
        torch_needs = (
            self.limits.startup_s["torch"] + self.limits.min_train_s + self.limits.eval_s["torch"]
        )
        return max(
            0.0, self.clock.left() - (torch_needs if "torch" in self.plan.train_frameworks else 0.0)
        )

    def make_data(self, config: PipelineConfig) -> Any:
        from n2v_repro.gpu_check.pack import make_data

        try:
            data = make_data(
                self.pack,
                self.work / "data",
                self.plan.sigma,
                self.plan.seed,
                self.plan.n_valid,
                self.plan.patch_size,
                workers=max(1, min(8, os.cpu_count() or 1)),
                recipe=self.plan.train,
                crops_file=REPO_ROOT / config.data.train400_crops,
            )
        except Exception as error:  # the parity and bench phases do not need it
            log.exception("data preparation failed")
            self.results["phases"]["data"] = {"status": f"failed: {error}"}
            self.say(f"data: failed: {error}")
            return None
        self.results["phases"]["data"] = {
            "status": "ok",
            "train_images": data.train_images,
            "bsd68_images": data.bsd68_images,
            "n_valid": data.n_valid,
            "seconds": data.seconds,
        }
        self.say(
            f"data: {data.train_images} training + {data.bsd68_images} BSD68 images, sigma "
            f"{self.plan.sigma}, made in {data.seconds:.1f} s"
        )
        return data

    @staticmethod
    def _ran(outcome: dict[str, Any], arch: str, workers: Sequence[str]) -> bool:
        return all(
            outcome.get(w, {}).get("archs", {}).get(arch, {}).get("status") == "ok" for w in workers
        )

    def compare_parity(self, folder: Path, outcome: dict[str, Any]) -> None:
        from n2v_repro.parity import compare_frameworks

        phase = self.results["phases"]["parity"]
        steps = (*FRAMEWORKS, "reference")
        both = [arch for arch in self.plan.archs if self._ran(outcome, arch, steps)]

        def status(step: str, arch: str) -> str:
            ran = outcome.get(step, {"status": "not run", "archs": {}})
            return ran["archs"].get(arch, {}).get("status", ran["status"])

        phase["not_compared"] = {
            arch: {
                step: status(step, arch)
                for step in steps
                if step != "reference" or self._ran(outcome, arch, FRAMEWORKS)
            }
            for arch in self.plan.archs
            if arch not in both
        }
        records = []
        if both:
            records = compare_frameworks(
                both,
                {fw: [str(folder / fw / f"{arch}.npz") for arch in both] for fw in FRAMEWORKS},
                [str(folder / "reference" / f"{arch}.npz") for arch in both],
                folder / "parity.json",
                folder / "parity.csv",
                self.plan.tolerance,
            )
        phase["records"] = records
        phase["passed"] = (
            bool(records) and not phase["not_compared"] and all(r["passed"] for r in records)
        )
        for record in records:
            self.say(
                f"parity {record['arch']}: "
                + ", ".join(
                    f"{check} {record[f'{check}_error_jittor']:.2e} (threshold "
                    f"{record[f'{check}_threshold']:.1e})"
                    for check in ("forward", "grad", "adam")
                )
                + (": passed" if record["passed"] else f": FAILED: {record['failure']}")
            )
        for arch, why in phase["not_compared"].items():
            self.say(f"parity {arch}: not compared ({why})")

    # --- phase 2: throughput ------------------------------------------------------------

    def throughput(self) -> None:
        phase: dict[str, Any] = {"records": []}
        self.results["phases"]["bench"] = phase
        grace = 10.0
        for framework in FRAMEWORKS:
            budget = min(self.limits.bench_s[framework], self._left_for_phase()) - grace
            runs = self.plan.bench.runs(framework)
            if budget <= 0:
                records = [
                    bench.unrun(framework, arch, batch, precision, SKIPPED)
                    for arch, batch, precision in runs
                ]
            else:
                self.say(f"throughput {framework}: {len(runs)} runs in at most {budget:.0f} s")
                log_path = self.work / "logs" / f"bench_{framework}.log"
                self.logs.append(log_path)
                records = bench.run_in_subprocess(
                    framework, self.plan.bench, budget_s=budget, grace_s=grace, log_path=log_path
                )
            for record in records:
                self.say(bench.describe(record))
            phase["records"].extend(records)
            self.save()
        phase["ratios"] = [
            {"arch": arch, "batch_size": batch, "precision": precision, "jittor_over_torch": r}
            for (arch, batch, precision), r in bench.ratios(phase["records"]).items()
        ]

    # --- phase 3: the paper recipe, timed -----------------------------------------------

    def timed_training(self, data: Any) -> None:
        phase: dict[str, Any] = {}
        self.results["phases"]["train"] = phase
        for framework in self.plan.train_frameworks:
            if data is None:
                phase[framework] = {"status": "skipped: no data (see phases.data)"}
                continue
            if (framework, self.plan.train.precision) in bench.UNSUPPORTED:
                phase[framework] = {"status": f"skipped: no {self.plan.train.precision} in it"}
                continue
            reserve = self.limits.startup_s[framework] + self.limits.eval_s[framework]
            seconds = min(self.limits.train_s, self.clock.left() - reserve)
            if seconds < self.limits.min_train_s:
                phase[framework] = {"status": SKIPPED}
                self.say(f"train {framework}: {SKIPPED} ({self.clock.left():.0f} s left)")
                continue
            self.say(
                f"train {framework}: {self.plan.train.arch}, batch {self.plan.train.batch_size}, "
                f"{self.plan.train.precision}, for {seconds:.0f} s, then BSD68"
            )
            task = {
                "kind": "train",
                "train": plain(self.plan.train),
                "seconds": seconds,
                "patch_dir": str(data.patch_dir),
                "patch_size": self.plan.patch_size,
                "seed": self.plan.seed,
                "threads": self.plan.threads,
                "out_dir": str(self.work / "train" / framework),
                "data": data.plain(),
            }
            process, handle, result = self.start_worker(framework, f"train_{framework}", task)
            status, found = self.finish_worker(process, handle, result, seconds + reserve)
            self.facts(framework, found.get("facts"))
            if status == "ok" or "eval" in found:
                status = "ok"
            elif status == SKIPPED and "train" in found:
                status = "evaluation " + SKIPPED
            phase[framework] = {
                "status": status,
                **{k: found[k] for k in ("train", "eval") if k in found},
            }
            self.say(f"train {framework}: {status}" + _train_line(phase[framework]))
            self.save()


def _train_line(entry: dict[str, Any]) -> str:
    parts = []
    train = entry.get("train")
    if train:
        parts.append(
            f"{train['steps']} steps ({train['epochs_complete']} epochs) in "
            f"{train['wall_s']:.0f} s, {train['patches_per_s'] or 0:.0f} patches/s"
        )
    bsd68 = entry.get("eval", {}).get("test_sets", {}).get("bsd68", {})
    for weights in ("last", "best"):
        if weights in bsd68:
            parts.append(
                f"BSD68 {weights}: {bsd68[weights]['psnr_mean']:.2f} dB, "
                f"SSIM {bsd68[weights]['ssim_mean']:.4f}"
            )
    return "; " + "; ".join(parts) if parts else ""


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- machine facts --------------------------------------------------------------------------


def _command_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def machine_facts() -> dict[str, Any]:
    """Date, host, CPU, GPU and driver (NVML), nvcc and the checkout's commit, where known."""
    facts: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    nvcc = _command_line(["nvcc", "--version"])
    facts["nvcc"] = nvcc.splitlines()[-1] if nvcc else None
    facts["commit"] = _command_line(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"])
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(handle)
            driver = pynvml.nvmlSystemGetDriverVersion()
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            facts["gpu"] = name.decode() if isinstance(name, bytes) else name
            facts["driver"] = driver.decode() if isinstance(driver, bytes) else driver
            facts["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
            facts["gpu_memory_mib"] = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20
            facts["gpu_count"] = pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception as error:  # no NVML, no driver: a CPU machine
        facts["gpu"] = None
        facts["nvml"] = f"unavailable: {type(error).__name__}: {error}"
    return facts


# --- markdown -------------------------------------------------------------------------------


def _num(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_markdown(results: dict[str, Any]) -> str:
    """Render the results as markdown: machine, parity, throughput, timed training."""
    machine, frameworks = results["machine"], results["frameworks"]
    torch_facts, jittor_facts = frameworks.get("torch", {}), frameworks.get("jittor", {})
    lines = [
        f"## GPU check, {machine['date']}"
        + (" (smoke run on the CPU)" if results["smoke"] else ""),
        "",
        f"- Machine: {machine.get('gpu') or 'no GPU'}"
        + (
            f" ({machine['gpu_memory_mib'] / 1024:.0f} GiB)"
            if machine.get("gpu_memory_mib")
            else ""
        )
        + f", driver {machine.get('driver', '—')} (CUDA {machine.get('cuda_driver', '—')}), "
        f"{machine['cpus']} CPUs, Python {machine['python']}, nvcc: {machine.get('nvcc') or '—'}",
        f"- torch {torch_facts.get('torch', '—')} (CUDA {torch_facts.get('cuda', '—')}, cuDNN "
        f"{torch_facts.get('cudnn', '—')}, numpy {torch_facts.get('numpy', '—')}); Jittor "
        f"{jittor_facts.get('jittor', '—')} on {jittor_facts.get('device', '—')} (numpy "
        f"{jittor_facts.get('numpy', '—')}; {_jittor_flags(jittor_facts.get('env', {}))})",
        f"- Commit {machine.get('commit') or '—'}; the check took "
        f"{results.get('elapsed_s', 0):.0f} s of its {results['settings']['budget_s']:.0f} s",
        "",
    ]
    for framework, facts in frameworks.items():
        if "error" in facts:
            lines[-1:-1] = [f"- {framework} could not start: {facts['error']}"]
    phases = results["phases"]
    parity = phases.get("parity")
    if parity is not None:
        settings = results["settings"]["parity"]
        lines += [
            f"### Parity ({results['settings']['device']}, strict fp32, batch "
            f"{settings['batch_size']}, {settings['steps']} Adam steps, tolerance "
            f"{settings['tolerance']:g})",
            "",
            "Each framework against float64, per layer (parity.DEFINITION): the layer named, "
            "Jittor's measure, PyTorch float32's, and Jittor's threshold.",
            "",
            "| arch | forward: layer | Jittor | PyTorch | threshold | gradient: layer | "
            "Jittor | PyTorch | threshold | Adam: layer | Jittor | PyTorch | threshold | "
            "kink units (PyTorch / Jittor) | result |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in parity.get("records", []):
            cells = [r["arch"]]
            for check in ("forward", "grad", "adam"):
                cells.append(f"{r.get(f'{check}_layer', '—')}")
                cells += [
                    _num(r.get(f"{check}_{key}"), ".2e")
                    for key in ("error_jittor", "error_torch", "threshold")
                ]
            cells.append(f"{r.get('kink_flips_torch', '—')} / {r.get('kink_flips_jittor', '—')}")
            cells.append("passed" if r["passed"] else f"**FAILED**: {r['failure']}")
            lines.append("| " + " | ".join(cells) + " |")
        for arch, why in parity.get("not_compared", {}).items():
            lines.append(f"| {arch} | not compared: {why} |" + "|" * 12 + " **FAILED** |")
        lines.append("")
    if "bench" in phases:
        lines += _bench_markdown(phases["bench"])
    if "train" in phases:
        lines += _train_markdown(results["settings"]["train"], phases["train"])
    if "data" in phases and phases["data"].get("status") != "ok":
        lines += [f"Data: {phases['data']['status']}", ""]
    return "\n".join(lines) + "\n"


def _jittor_flags(env: dict[str, Any]) -> str:
    """List the Jittor switches that were set, e.g. `conv_opt=1, use_cutt=0`."""
    flags = [f"{key}={value}" for key, value in env.items() if value not in (None, "")]
    return ", ".join(flags) or "no switches set"


def _bench_markdown(phase: dict[str, Any]) -> list[str]:
    lines = [
        "### Training throughput (patches/s, steady state after warm-up)",
        "",
        "| arch | batch | precision | torch | Jittor | Jittor / torch | torch peak MiB | "
        "Jittor peak MiB | torch GPU busy % | Jittor GPU busy % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple, dict[str, dict]] = {}
    for r in phase["records"]:
        key = (r["arch"], r["batch_size"], r["requested_precision"])
        rows.setdefault(key, {})[r["framework"]] = r
    ratios = {(x["arch"], x["batch_size"], x["precision"]): x for x in phase.get("ratios", [])}

    def cell(record: dict | None, key: str, spec: str) -> str:
        if record is None:
            return "n/a"
        if record["status"] != "ok":
            return record["status"]
        return _num(record.get(key), spec)

    for (arch, batch, precision), by_fw in rows.items():
        torch_r, jittor_r = by_fw.get("torch"), by_fw.get("jittor")
        ratio = ratios.get((arch, batch, precision))
        lines.append(
            f"| {arch} | {batch} | {precision} | {cell(torch_r, 'patches_per_s', '.0f')} | "
            f"{cell(jittor_r, 'patches_per_s', '.0f')} | "
            f"{_num(ratio and ratio['jittor_over_torch'], '.2f')} | "
            f"{cell(torch_r, 'peak_memory_mib', '.0f')} | "
            f"{cell(jittor_r, 'peak_memory_mib', '.0f')} | "
            f"{cell(torch_r, 'gpu_busy_percent', '.0f')} | "
            f"{cell(jittor_r, 'gpu_busy_percent', '.0f')} |"
        )
    return [*lines, ""]


def _train_markdown(settings: dict[str, Any], phase: dict[str, Any]) -> list[str]:
    opt, schedule = settings["optimizer"], settings["schedule"]
    lines = [
        f"### Paper recipe for a wall budget ({settings['arch']}, batch {settings['batch_size']}, "
        f"{settings['steps_per_epoch']} steps per epoch, Adam lr {opt['lr']:g} eps {opt['eps']:g}, "
        f"{schedule['kind']} schedule; sigma {SIGMA}; BSD68: all images, data range 255)",
        "",
        "| framework | status | precision | budget s | train s | steps | epochs | patches/s | "
        "GPU busy % (run) | peak MiB | PSNR last | SSIM last | PSNR best | SSIM best | images |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for framework, entry in phase.items():
        train = entry.get("train", {})
        evaluation = entry.get("eval", {})
        bsd68 = evaluation.get("test_sets", {}).get("bsd68", {})
        last, best = bsd68.get("last", {}), bsd68.get("best", {})
        lines.append(
            f"| {framework} | {entry['status']} | {train.get('precision', '—')} | "
            f"{_num(train.get('budget_s'), '.0f')} | {_num(train.get('train_s'), '.0f')} | "
            f"{train.get('steps', '—')} | {train.get('epochs_complete', '—')} | "
            f"{_num(train.get('patches_per_s'), '.0f')} | "
            f"{_num(train.get('gpu_busy_percent'), '.0f')} | "
            f"{_num(train.get('framework_peak_mib'), '.0f')} | "
            f"{_num(last.get('psnr_mean'), '.2f')} | {_num(last.get('ssim_mean'), '.4f')} | "
            f"{_num(best.get('psnr_mean'), '.2f')} | {_num(best.get('ssim_mean'), '.4f')} | "
            f"{evaluation.get('images', '—')} |"
        )
    return [*lines, ""]


# --- the whole check ------------------------------------------------------------------------


def run_check(
    out: Path,
    pack: Path,
    work: Path,
    smoke: bool = False,
    train_frameworks: tuple[str, ...] = FRAMEWORKS,
    budget_s: float | None = None,
    train_seconds: float | None = None,
    bench_seconds: float = 1.0,
    configs: tuple[Path, ...] = DEFAULT_CONFIGS,
    train_precision: str | None = None,
) -> dict[str, Any]:
    """Run every phase within the budget; write out/gpu_check.{json,md}; return the results."""
    config = PipelineConfig.from_mapping(load_config(*configs))
    limits = SMOKE if smoke else FULL
    if budget_s is not None:
        limits = dataclasses.replace(limits, budget_s=budget_s)
    if train_seconds is not None:
        limits = dataclasses.replace(limits, train_s=train_seconds)
    plan = make_plan(config, smoke, train_frameworks, bench_seconds, train_precision)
    check = Check(plan, limits, out, work, pack)
    check.say(
        f"GPU check{' (smoke, CPU)' if smoke else ''}: budget {limits.budget_s:.0f} s, "
        f"GPU {check.results['machine'].get('gpu')}; results in {out}"
    )
    check.save()
    data = check.parity_and_data(config)
    check.throughput()
    check.timed_training(data)
    check.save()
    check.say(f"done; {out / RESULTS_JSON}, {out / RESULTS_MD}")
    return check.results
