"""Short training runs that compare CPU-recipe candidates by BSD68 PSNR after N patches.

    python tools/cpu_tuning.py --perc 3.0 --lr 4e-4 --batch 16 --steps 1500 --every 250 \
        --out docs/measured/cpu-tuning/F.jsonl

Uses the pipeline's own data (resources/ of a run of config/cpu.yaml: the Train400 sigma-25
patches with 4 held-out images, the noisy BSD68), the pipeline's initial weights
(results/init/n2v_unet32_glorot_uniform_seed123.npz), sampler, masking and backend. Every
`--every` steps it prints one JSON line: steps, patches, training minutes, throughput, and
the PSNR on `--images` BSD68 images spread over the set (a proxy for the test PSNR, used to
compare candidates only; the recipe's result is the pipeline's evaluation on all 68) and on
the held-out validation tiles. The lines written at the time are the measurement; the runs in
docs/measured/cpu-tuning/ shared the 2-core machine with other work, so their patches/s are
not the quiet-machine rate (`python -m n2v_repro.bench` measures that).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from n2v_repro.backends.registry import make_backend  # noqa: E402
from n2v_repro.config import MaskingConfig  # noqa: E402
from n2v_repro.evaluation.metrics import psnr  # noqa: E402
from n2v_repro.evaluation.predict import predict_image  # noqa: E402
from n2v_repro.io.formats import load_noisy_set, load_weights, read_gray_png  # noqa: E402
from n2v_repro.training.sampler import (  # noqa: E402
    PatchSampler,
    load_training_data,
    load_validation,
)

PATCH_DIR = REPO / "resources/patches/train400_heldout4/sigma25"
BSD68_NOISY = REPO / "resources/noisy/sigma25/bsd68.npz"
BSD68_CLEAN = REPO / "resources/gray/bsd68"
INIT = REPO / "results/init/n2v_unet32_glorot_uniform_seed123.npz"
SEED = 123


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default="torch")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--perc", type=float, default=0.198, help="masked pixels (%)")
    parser.add_argument("--steps", type=int, required=True, help="also the cosine horizon")
    parser.add_argument("--sched", choices=["const", "cosine"], default="const")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per --every")
    options = parser.parse_args()

    data = load_training_data(PATCH_DIR)
    masking = MaskingConfig("uniform_withCP", options.perc, 2)
    sampler = PatchSampler(data, 64, options.batch, True, masking, SEED)
    paper_masking = MaskingConfig("uniform_withCP", 0.198, 2)
    valid = load_validation(PATCH_DIR / "valid_tiles.npz", data.mean, data.std, paper_masking, SEED)
    noisy = load_noisy_set(BSD68_NOISY)
    ids = sorted(noisy)[:: max(1, len(noisy) // options.images)][: options.images]
    clean = {i: read_gray_png(BSD68_CLEAN / f"{i}.png") for i in ids}
    backend = make_backend(options.framework, "n2v_unet32", device="cpu", threads=options.threads)
    backend.load_weights(load_weights(INIT))
    backend.configure_optimizer(options.lr, (0.9, 0.999), 1e-7, "jittor")

    def proxy_psnr() -> tuple[float, float]:
        bsd = [
            psnr(clean[i], predict_image(backend, noisy[i].astype(np.float32), data.mean, data.std))
            for i in ids
        ]
        tiles = [
            psnr(c, predict_image(backend, n, data.mean, data.std))
            for c, n in zip(valid.clean, valid.noisy, strict=True)
        ]
        return float(np.mean(bsd)), float(np.mean(tiles))

    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()}
    train_s, step = 0.0, 0
    options.out.parent.mkdir(parents=True, exist_ok=True)
    with open(options.out, "w") as out:
        while step < options.steps:
            start = time.perf_counter()
            for _ in range(min(options.every, options.steps - step)):
                if options.sched == "cosine":
                    fraction = step / options.steps
                    backend.set_lr(options.lr * 0.5 * (1 + math.cos(math.pi * fraction)))
                batch = sampler.batch(step)
                backend.queue_train_step(batch.inputs, batch.targets, batch.masked)
                step += 1
                if step % 50 == 0:
                    backend.read_losses()
            backend.read_losses()
            train_s += time.perf_counter() - start
            bsd, tiles = proxy_psnr()
            row = {
                "step": step,
                "patches": step * options.batch,
                "train_min": train_s / 60,
                "patches_per_s": step * options.batch / train_s,
                "bsd68_proxy_psnr": bsd,
                "heldout_tiles_psnr": tiles,
                "settings": settings,
            }
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
