"""One framework's part of the GPU check in its own process: `python -m n2v_repro.gpu_check.worker`.

Usage: `python -m n2v_repro.gpu_check.worker TASK`.

TASK is a JSON file written by `gpu_check.check`: its `kind` (parity, parity_reference or
train), the framework and what to do. The worker first puts the framework's own package
folder first on the path (`use_framework_site`: Jittor's numpy < 2 on the GPU machine),
before anything imports numpy, then writes its results to the task's `result` file, after
every arch or stage, so a worker killed at its time limit leaves what it finished.

- parity: `parity.run_framework` for each arch on the inputs the parent wrote, strict fp32
  (the backends' default precision).
- parity_reference (torch, after both frameworks' parity): `parity.run_reference`, the
  float64 reference on the CPU, for each arch.
- train: the paper recipe trained by the pipeline's own loop (`training.loop.train`, without
  a checkpoint) for a wall budget: no epoch is begun that would end past it. Then every
  BSD68 image is denoised with the last and the best weights and scored (PSNR/SSIM, data
  range 255).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from n2v_repro.framework_site import use_framework_site


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Replace the result file in one rename, so the parent never reads half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, path)


def framework_facts(framework: str, device: str) -> dict[str, Any]:
    """Return the versions and the device as this framework sees it; record a failure.

    (The runs that follow then fail one by one, each with its own message.)
    """
    try:
        return _framework_facts(framework, device)
    except Exception as error:
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {error}"[:1000]}


def _framework_facts(framework: str, device: str) -> dict[str, Any]:
    import numpy as np

    facts: dict[str, Any] = {"numpy": np.__version__, "python": sys.version.split()[0]}
    if framework == "torch":
        import torch

        facts["torch"] = torch.__version__
        facts["cuda"] = torch.version.cuda
        if device == "cuda" and torch.cuda.is_available():
            facts["cudnn"] = torch.backends.cudnn.version()
            facts["gpu"] = torch.cuda.get_device_name(0)
            major, minor = torch.cuda.get_device_capability(0)
            facts["capability"] = f"sm_{major}{minor}"
    else:
        from n2v_repro.backends.jittor_backend import import_jittor

        jt, resolved = import_jittor(device)
        facts["jittor"] = jt.__version__
        facts["device"] = resolved
        keys = ("nvcc_path", "conv_opt", "use_cutt", "use_cutlass", "use_mkl")
        facts["env"] = {key: os.environ.get(key) for key in keys}
    return facts


# --- parity ---------------------------------------------------------------------------------


def _each_arch(
    task: dict[str, Any], result: dict[str, Any], label: str, run_one: Callable[[str], None]
) -> dict[str, Any]:
    """Run `run_one(arch)` for every arch of the task, recording each one's status and time."""
    write_result(Path(task["result"]), result)
    for arch in task["archs"]:
        start = time.monotonic()
        try:
            run_one(arch)
            status = "ok"
        except Exception as error:  # the other archs are still worth running
            traceback.print_exc()
            status = f"failed: {type(error).__name__}: {error}"[:500]
        result["archs"][arch] = {"status": status, "seconds": time.monotonic() - start}
        print(f"{label} {arch}: {status} in {time.monotonic() - start:.1f} s")
        write_result(Path(task["result"]), result)
    return result


def run_parity(task: dict[str, Any]) -> dict[str, Any]:
    from n2v_repro.config import OptimizerConfig, from_plain
    from n2v_repro.parity import run_framework

    framework, folder = task["framework"], Path(task["dir"])
    result: dict[str, Any] = {"framework": framework, "archs": {}}
    result["facts"] = framework_facts(framework, task["device"])
    optimizer = from_plain(OptimizerConfig, task["optimizer"])

    def one(arch: str) -> None:
        run_framework(
            framework,
            arch,
            inputs_path=folder / "inputs" / f"{arch}.npz",
            output_path=folder / framework / f"{arch}.npz",
            steps=task["steps"],
            optimizer=optimizer,
            device=task["device"],
        )

    return _each_arch(task, result, f"parity {framework}", one)


def run_parity_reference(task: dict[str, Any]) -> dict[str, Any]:
    from n2v_repro.backends.registry import STOCK_FRAMEWORKS as FRAMEWORKS
    from n2v_repro.parity import run_reference

    folder = Path(task["dir"])

    def one(arch: str) -> None:
        run_reference(
            arch,
            folder / "inputs" / f"{arch}.npz",
            {framework: folder / framework / f"{arch}.npz" for framework in FRAMEWORKS},
            folder / "reference" / f"{arch}.npz",
            threads=task.get("threads"),
        )

    return _each_arch(task, {"framework": "torch", "archs": {}}, "parity reference", one)


# --- timed training -------------------------------------------------------------------------


def run_train(task: dict[str, Any]) -> dict[str, Any]:
    """Train with the pipeline's loop for task["seconds"], then evaluate on every BSD68 image."""
    from n2v_repro.config import TrainConfig, from_plain
    from n2v_repro.evaluation.predict import evaluate_model, load_test_images, summarise
    from n2v_repro.io.formats import read_train_stats, save_weights
    from n2v_repro.models.initialisation import make_init_weights
    from n2v_repro.training.job import TrainJob
    from n2v_repro.training.loop import train

    framework, cfg = task["framework"], from_plain(TrainConfig, task["train"])
    out_dir, seed = Path(task["out_dir"]), int(task["seed"])
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"framework": framework}
    result["facts"] = framework_facts(framework, cfg.device)
    write_result(Path(task["result"]), result)
    save_weights(out_dir / "init.npz", make_init_weights(cfg.arch, seed, cfg.init))
    job = TrainJob(
        framework=framework,
        patch_dir=Path(task["patch_dir"]),
        init_weights=out_dir / "init.npz",
        out_dir=out_dir,
        checkpoint=None,
        train=cfg,
        patch_size=task["patch_size"],
        seed=seed,
        threads=task.get("threads"),
    )
    run = train(job, budget_s=float(task["seconds"]))
    summary = json.loads((out_dir / "train_summary.json").read_text())
    result["train"] = {
        "precision": summary["precision"],
        "batch_size": cfg.batch_size,
        "steps_per_epoch": cfg.steps_per_epoch,
        "budget_s": float(task["seconds"]),
        "wall_s": summary["total_time_s"],
        "train_s": summary["train_time_s"],
        "steps": summary["epochs"] * cfg.steps_per_epoch,
        "epochs_complete": summary["epochs"],
        "patches": summary["patches"],
        "patches_per_s": summary["train_patches_per_s"],
        "steady_patches_per_s": summary["steady_patches_per_s"],
        # The whole run's mean, validation included (the bench phase times steps alone).
        "gpu_busy_percent": summary["mean_gpu_util_percent"],
        "framework_peak_mib": summary["framework_peak_memory_mib"],
        "best_valid_loss": summary["best_valid_loss"],
        "history": run.state.history,
    }
    write_result(Path(task["result"]), result)
    print(
        f"{framework}: {result['train']['steps']} steps, {summary['epochs']} epochs in "
        f"{summary['total_time_s']:.0f} s, {summary['train_patches_per_s'] or 0:.0f} patches/s",
        flush=True,
    )
    start = time.monotonic()
    data = task["data"]
    images = load_test_images(data["clean_bsd68"], data["noisy_bsd68"], data["split_csv"])
    mean, std = read_train_stats(job.patch_dir / "train_stats.json")
    weights = {"last": run.state.weights, "best": run.state.best_weights}
    evaluation = evaluate_model(run.backend, weights, images, mean, std)
    result["eval"] = {
        "images": len(images),
        "test_sets": summarise(evaluation.rows),
        "inference": evaluation.inference,
        "seconds": time.monotonic() - start,
        "per_image": [r for r in evaluation.rows if r["weights"] != "noisy"],
    }
    write_result(Path(task["result"]), result)
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m n2v_repro.gpu_check.worker TASK.json")
    task = json.loads(Path(argv[0]).read_text())
    use_framework_site(task["framework"])  # before anything imports numpy
    if task["kind"] == "parity":
        run_parity(task)
    elif task["kind"] == "parity_reference":
        run_parity_reference(task)
    elif task["kind"] == "train":
        run_train(task)
    else:
        sys.exit(f"unknown task kind {task['kind']!r}")


if __name__ == "__main__":
    main()
