"""Run a reference's job in its own environment, from the pipeline's.

Rules train_reference and predict_reference: the job as JSON, the adapter in a subprocess of
the reference's venv, its output in the rule's log, its resources sampled into monitor.csv.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from n2v_repro.errors import UserError
from n2v_repro.io.atomic import write_json
from n2v_repro.io.formats import read_train_stats
from n2v_repro.references.env import check_env, env_python
from n2v_repro.references.registry import reference
from n2v_repro.references.settings import our_settings
from n2v_repro.training.monitor import ResourceMonitor


class ReferenceRunError(UserError, RuntimeError):
    """A reference's job failed in its environment."""


def run_job(
    name: str,
    prefix: str | Path,
    job: Mapping[str, Any],
    log_path: str | Path,
    monitor_csv: str | Path | None = None,
) -> dict[str, Any]:
    """Run `job` with the reference's interpreter; return what the job wrote to `result`."""
    versions = check_env(name, prefix)
    with tempfile.TemporaryDirectory(prefix=f"n2v-{name}-") as scratch:
        job = {
            **job,
            "reference": name,
            "error_file": f"{scratch}/error.txt",
            "outputs": {"result": f"{scratch}/result.json", **job["outputs"]},
        }
        job_path = Path(scratch) / "job.json"
        job_path.write_text(json.dumps(job, indent=2))
        environment = dict(os.environ)
        environment.update(
            OMP_NUM_THREADS=str(job["threads"]),
            # TensorFlow's start-up banners; its warnings and errors stay.
            TF_CPP_MIN_LOG_LEVEL="1",
            PYTHONNOUSERSITE="1",
        )
        command = [str(env_python(prefix)), "-m", "n2v_repro.references.worker", str(job_path)]
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment
            )
            monitor = ResourceMonitor(Path(monitor_csv), pid=process.pid) if monitor_csv else None
            if monitor is not None:
                monitor.start()
            try:
                status = process.wait()
            finally:
                if monitor is not None:
                    monitor.stop()
        if status != 0:
            error_file = Path(job["error_file"])
            if error_file.exists():
                raise ReferenceRunError(
                    f"{reference(name).title}: {error_file.read_text().strip()}"
                )
            raise ReferenceRunError(
                f"{reference(name).title} failed in its environment (exit status {status}); "
                f"its output and traceback are in {log_path}"
            )
        result = Path(job["outputs"]["result"])
        outcome = json.loads(result.read_text()) if result.exists() else {}
    return {**outcome, "versions": versions}


def train_reference(
    *,
    name: str,
    prefix: str | Path,
    recipe: str,
    train: Mapping[str, Any],
    patch_size: int,
    sigma: int,
    seed: int,
    inputs: Mapping[str, str],
    model_dir: str | Path,
    history_csv: str | Path,
    monitor_csv: str | Path,
    summary_json: str | Path,
    threads: int,
    log_path: str | Path,
) -> dict[str, Any]:
    """Train reference `name` on recipe `train`'s data; write its model, history, summary."""
    ours = our_settings(train, patch_size)
    job = {
        "action": "train",
        "seed": int(seed),
        "threads": int(threads),
        "ours": ours,
        "augment": bool(train["augment"]),
        "masking_kind": train["masking"]["kind"],
        "masking_radius": int(train["masking"]["radius"]),
        "inputs": {key: str(inputs[key]) for key in ("train", "index", "valid")},
        "outputs": {"model": str(model_dir), "history": str(history_csv)},
    }
    start = time.perf_counter()
    outcome = run_job(name, prefix, job, log_path, monitor_csv)
    mean, std = read_train_stats(inputs["stats"])
    summary = {
        "reference": name,
        "title": reference(name).title,
        "recipe": recipe,
        "framework": name,
        "arch": train["arch"],
        "sigma": int(sigma),
        "seed": int(seed),
        "versions": outcome["versions"],
        "settings": {"ours": ours, "theirs": outcome["theirs"]},
        "steps": outcome["steps"],
        "train_images": outcome["images"],
        # The pipeline's statistics of the same pixels, beside the reference's own.
        "pipeline_train_stats": {"mean": mean, "std": std},
        "job_seconds": time.perf_counter() - start,
    }
    write_json(summary_json, summary)
    return summary


def predict_reference(
    *,
    name: str,
    prefix: str | Path,
    model_dir: str | Path,
    noisy_npz: str | Path,
    split_csv: str | Path,
    seed: int,
    predictions_npz: str | Path,
    inference_json: str | Path,
    threads: int,
    log_path: str | Path,
    weights: Sequence[str] | None = None,
) -> None:
    """Predict the noisy BSD68 images with each weights the reference's users predict with."""
    job = {
        "action": "predict",
        "seed": int(seed),
        "threads": int(threads),
        "weights": list(weights or reference(name).weights),
        "inputs": {"model": str(model_dir), "noisy": str(noisy_npz), "split": str(split_csv)},
        "outputs": {"predictions": str(predictions_npz), "inference": str(inference_json)},
    }
    run_job(name, prefix, job, log_path)
