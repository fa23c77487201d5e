"""One framework on the GPU in a few steps: import, a convolution against float64, training steps.

Run by tools/gpu_check.sh on the GPU machine, once per framework, each with its own path:

    PYTHONPATH=$N2V_SITE_JITTOR:$N2V_SITE_COMMON:src python3 tools/gpu_smoke.py jittor
    PYTHONPATH=$N2V_SITE_COMMON:src python3 tools/gpu_smoke.py torch

Prints one line per stage with its time and a final JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

STAGES: dict[str, object] = {}


def stage(name: str, value: object, started: float) -> None:
    STAGES[name] = value
    STAGES[f"{name}_s"] = round(time.perf_counter() - started, 3)
    print(f"[{STAGES[f'{name}_s']:8.2f} s] {name}: {value}", flush=True)


def conv_reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation with zero padding 1 in float64, NCHW."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return np.einsum("bchwij,ocij->bohw", windows, w.astype(np.float64))


def main(framework: str, device: str, batch_size: int, steps: int) -> None:
    from n2v_repro.backends.registry import make_backend
    from n2v_repro.models.initialisation import make_init_weights

    STAGES.update(framework=framework, numpy=np.__version__, python=sys.version.split()[0])
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 64, 64)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    reference = conv_reference(x, w)
    if framework == "jittor":
        from n2v_repro.backends.jittor_backend import import_jittor

        keys = ("nvcc_path", "conv_opt", "use_cutt", "use_cutlass", "use_mkl", "use_mpi")
        jt, resolved = import_jittor(device)
        stage("import", {k: os.environ.get(k) for k in keys} | {"device": resolved}, started)
        started = time.perf_counter()
        out = jt.nn.conv2d(jt.array(x), jt.array(w), padding=1).numpy()
        jt.sync_all(True)
    else:
        import torch

        stage("import", {"torch": torch.__version__, "cuda": torch.cuda.is_available()}, started)
        started = time.perf_counter()
        conv = torch.nn.functional.conv2d
        out = conv(torch.from_numpy(x).to(device), torch.from_numpy(w).to(device), padding=1)
        out = out.cpu().numpy()
    error = float(np.linalg.norm(out - reference) / np.linalg.norm(reference))
    stage("conv_rel_error", error, started)

    started = time.perf_counter()
    backend = make_backend(framework, "n2v_unet", device=device)
    backend.load_weights(make_init_weights("n2v_unet", 1))
    backend.configure_optimizer(4e-4, (0.9, 0.999), 1e-7, "torch")
    stage("backend", backend.device, started)
    batch = rng.standard_normal((batch_size, 1, 64, 64)).astype(np.float32)
    mask = (rng.random(batch.shape) < 0.002).astype(np.float32)
    losses = []
    for step in range(steps):
        started = time.perf_counter()
        losses.append(backend.train_step(batch + 0.1 * mask, batch, mask))
        backend.synchronize()
        stage(f"step{step}", round(losses[-1], 6), started)
    STAGES["peak_memory_mib"] = backend.peak_memory_mib()
    print(json.dumps(STAGES), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=("torch", "jittor"))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    main(args.framework, args.device, args.batch, args.steps)
