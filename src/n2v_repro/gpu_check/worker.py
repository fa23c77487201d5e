"""One framework's part of the GPU check in its own process: `python -m n2v_repro.gpu_check.worker`.

Usage: `python -m n2v_repro.gpu_check.worker TASK`.

TASK is a JSON file written by `gpu_check.check`: its `kind` (parity or train), the
framework and what to do. The worker first puts the framework's own package folder first on
the path (`use_framework_site`: Jittor's numpy < 2 on the GPU machine), before anything
imports numpy, then writes its results to the task's `result` file, after every arch or
stage, so a worker killed at its time limit leaves what it finished.

- parity: `parity.run_framework` for each arch on the inputs the parent wrote, strict fp32
  (the backends' default precision), the float64 reference on the torch side.
- train: the paper recipe's network trained for a wall budget (`train_for`: the training
  loop's steps, with the prefetching sampler, losses read every LOSS_READ_STEPS steps,
  validation and the learning-rate schedule after each complete epoch), then every BSD68
  image denoised with the last and the best weights and scored (PSNR/SSIM, data range 255).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
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


def run_parity(task: dict[str, Any]) -> dict[str, Any]:
    from n2v_repro.config import OptimizerConfig, from_plain
    from n2v_repro.parity import run_framework

    framework, folder = task["framework"], Path(task["dir"])
    result: dict[str, Any] = {"framework": framework, "archs": {}}
    result["facts"] = framework_facts(framework, task["device"])
    write_result(Path(task["result"]), result)
    for arch in task["archs"]:
        start = time.monotonic()
        try:
            run_framework(
                framework,
                arch,
                inputs_path=folder / "inputs" / f"{arch}.npz",
                output_path=folder / framework / f"{arch}.npz",
                steps=task["steps"],
                optimizer=from_plain(OptimizerConfig, task["optimizer"]),
                device=task["device"],
            )
            status = "ok"
        except Exception as error:  # the other archs are still worth running
            traceback.print_exc()
            status = f"failed: {type(error).__name__}: {error}"[:500]
        result["archs"][arch] = {"status": status, "seconds": time.monotonic() - start}
        print(f"parity {framework} {arch}: {status} in {time.monotonic() - start:.1f} s")
        write_result(Path(task["result"]), result)
    return result


# --- timed training -------------------------------------------------------------------------


def _window_mean(samples: list[Any], windows: list[tuple[float, float]]) -> float | None:
    """Mean NVML utilisation of the samples taken inside the training windows."""
    values = [
        s.gpu_util_percent
        for s in samples
        if s.gpu_util_percent is not None and any(a <= s.time_s <= b for a, b in windows)
    ]
    return sum(values) / len(values) if values else None


def train_for(
    framework: str, task: dict[str, Any], out_dir: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Any]:
    """Train for task["seconds"] of wall time; return (summary, last, best weights, backend).

    Epochs of the recipe's steps_per_epoch steps; a complete epoch is validated and steps the
    schedule; the wall budget (validation included) is checked where the losses are read,
    so an epoch can end early, unvalidated. The throughput counts the training steps only.
    """
    import math

    import numpy as np

    from n2v_repro.backends.registry import make_backend
    from n2v_repro.config import TrainConfig, from_plain
    from n2v_repro.models.initialisation import make_init_weights
    from n2v_repro.training.loop import LOSS_READ_STEPS, check_finite_losses, validate
    from n2v_repro.training.monitor import ResourceMonitor
    from n2v_repro.training.sampler import (
        PatchSampler,
        PrefetchingSampler,
        load_training_data,
        load_validation,
    )
    from n2v_repro.training.schedules import make_schedule

    cfg = from_plain(TrainConfig, task["train"])
    patch_dir, seed = Path(task["patch_dir"]), int(task["seed"])
    data = load_training_data(patch_dir)
    sampler = PatchSampler(data, task["patch_size"], cfg.batch_size, cfg.augment, cfg.masking, seed)
    valid = load_validation(
        patch_dir / "valid_tiles.npz", data.mean, data.std, cfg.masking, seed, cfg.valid_tiles
    )
    backend = make_backend(framework, cfg.arch, cfg.device, task.get("threads"), cfg.precision)
    backend.load_weights(make_init_weights(cfg.arch, seed, cfg.init))
    opt = cfg.optimizer
    backend.configure_optimizer(opt.lr, opt.betas, opt.eps, opt.semantics)
    schedule = make_schedule(cfg.schedule, opt.lr, cfg.epochs)
    history: list[dict[str, float]] = []
    windows: list[tuple[float, float]] = []
    best_loss, best = math.inf, None
    steps, train_time, step = cfg.steps_per_epoch, 0.0, 0
    on_gpu = backend.device == "cuda"
    monitor = ResourceMonitor(
        out_dir / "monitor.csv",
        device=backend.device,
        framework_memory=backend.peak_memory_mib if on_gpu else None,
    )
    start = time.monotonic()
    deadline = start + float(task["seconds"])
    with monitor, PrefetchingSampler(sampler) as batches:
        clock = time.monotonic()  # the monitor's time zero, to within microseconds
        for epoch in range(cfg.epochs):
            lr = schedule.lr
            backend.set_lr(lr)
            epoch_start, losses, done = time.monotonic(), [], 0
            for done in range(1, steps + 1):
                batch = batches.batch(step)
                backend.queue_train_step(batch.inputs, batch.targets, batch.masked)
                step += 1
                if done % LOSS_READ_STEPS == 0 or done == steps:
                    read = backend.read_losses()
                    check_finite_losses(read, epoch, done - len(read), steps, lr)
                    losses.extend(read.tolist())
                    if time.monotonic() >= deadline:
                        break
            backend.synchronize()
            epoch_end = time.monotonic()
            windows.append((epoch_start - clock, epoch_end - clock))
            train_time += epoch_end - epoch_start
            if done < steps:
                break  # the budget ended this epoch: no validation of a part
            valid_loss, valid_psnr, valid_ssim = validate(
                backend, valid, data.mean, data.std, cfg.batch_size
            )
            schedule.end_epoch(valid_loss)
            if valid_loss < best_loss:
                best_loss, best = valid_loss, backend.get_weights()
            history.append(
                {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train_loss": float(np.mean(losses)),
                    "valid_loss": valid_loss,
                    "valid_psnr": valid_psnr,
                    "valid_ssim": valid_ssim,
                    "epoch_time_s": epoch_end - epoch_start,
                    "wall_time_s": time.monotonic() - start,
                }
            )
            speed = steps * cfg.batch_size / (epoch_end - epoch_start)
            print(
                f"{framework} epoch {epoch + 1}: loss {history[-1]['train_loss']:.4f} valid "
                f"{valid_loss:.4f} PSNR {valid_psnr:.2f} dB, {speed:.0f} patches/s",
                flush=True,
            )
            if time.monotonic() >= deadline:
                break
    last = backend.get_weights()
    monitor_summary = monitor.summary()
    summary = {
        "framework": framework,
        "arch": cfg.arch,
        "device": backend.device,
        "precision": backend.precision,
        "batch_size": cfg.batch_size,
        "steps_per_epoch": steps,
        "budget_s": float(task["seconds"]),
        "wall_s": time.monotonic() - start,
        "train_s": train_time,
        "steps": step,
        "epochs_complete": len(history),
        "patches": step * cfg.batch_size,
        "patches_per_s": step * cfg.batch_size / train_time if train_time > 0 else None,
        "gpu_busy_percent": _window_mean(monitor.samples, windows),
        "peak_gpu_mem_mib": monitor_summary["peak_gpu_mem_mib"],
        "framework_peak_mib": backend.peak_memory_mib(),
        "best_valid_loss": best_loss if best is not None else None,
        "final_lr": schedule.lr,
        "valid_tiles": len(valid.noisy),
        "history": history,
    }
    return summary, last, best if best is not None else last, backend


def run_train(task: dict[str, Any]) -> dict[str, Any]:
    from n2v_repro.evaluation.predict import evaluate_model, load_test_images, summarise
    from n2v_repro.io.formats import read_train_stats, save_weights

    framework = task["framework"]
    out_dir = Path(task["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"framework": framework}
    result["facts"] = framework_facts(framework, task["train"]["device"])
    write_result(Path(task["result"]), result)
    summary, last, best, backend = train_for(framework, task, out_dir)
    save_weights(out_dir / "last.npz", last)
    save_weights(out_dir / "best.npz", best)
    result["train"] = summary
    write_result(Path(task["result"]), result)
    print(
        f"{framework}: {summary['steps']} steps, {summary['epochs_complete']} epochs in "
        f"{summary['wall_s']:.0f} s, {summary['patches_per_s'] or 0:.0f} patches/s",
        flush=True,
    )
    start = time.monotonic()
    data = task["data"]
    images = load_test_images(data["clean_bsd68"], data["noisy_bsd68"], data["split_csv"])
    mean, std = read_train_stats(Path(task["patch_dir"]) / "train_stats.json")
    evaluation = evaluate_model(backend, {"last": last, "best": best}, images, mean, std)
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
    elif task["kind"] == "train":
        run_train(task)
    else:
        sys.exit(f"unknown task kind {task['kind']!r}")


if __name__ == "__main__":
    main()
