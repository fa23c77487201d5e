"""CAREamics 0.3.5 (PyTorch Lightning) on the pipeline's data.

Runs in the reference's own environment (envs/ref-careamics.yaml). What
create_advanced_n2v_config lets one set follows the recipe: U-Net depth, width, batch norm
and residual; patch size, batch size, steps per epoch and the whole budget (Lightning's
max_steps, so an epoch of CAREamics' own patching that holds fewer batches than the recipe's
steps per epoch does not shorten training); masked percentage and the masking window
(roi_size = 2 radius + 1); the learning rate; the seed. The rest is CAREamics' own: torch's
Adam and initialisation, ReduceLROnPlateau with torch's defaults, its stratified patching,
flips and 90-degree rotations, N2VManipulate, its own mean/std. CAREamics defines no best
checkpoint for N2V (CAREamist refuses one), so its last weights are scored; it predicts with
tiles, as its documentation does for whole images. Data loading runs in the training
process (num_workers 0): on a 2-core machine worker processes only take cores from training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.io.formats import write_history
from n2v_repro.references.data import noisy_test_images, training_images, validation_tiles
from n2v_repro.references.timing import EpochClock, Images, timed_predictions

EXPERIMENT = "n2v"
STRIDE = 4
TILE_SIZE = (256, 256)
TILE_OVERLAP = (48, 48)


def _torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Train on the recipe's images; write the checkpoints folder and history.csv."""
    torch = _torch(job["threads"])
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config
    from lightning.pytorch.callbacks import Callback

    ours = job["ours"]
    images = training_images(job["inputs"]["train"], job["inputs"]["index"], STRIDE)
    valid = validation_tiles(job["inputs"]["valid"])
    steps_per_epoch = ours["steps"] // ours["epochs"]
    patch = ours["patch_size"]
    config = create_advanced_n2v_config(
        experiment_name=EXPERIMENT,
        data_type="array",
        axes="SYX",
        patch_size=[patch, patch],
        batch_size=ours["batch_size"],
        # At most this many epochs: max_steps ends training at the recipe's budget.
        num_epochs=ours["steps"],
        num_steps=steps_per_epoch,
        augmentations=None if job["augment"] else [],
        roi_size=2 * job["masking_radius"] + 1,
        masked_pixel_percentage=ours["masked_percent"],
        num_workers=0,
        trainer_params={"max_steps": ours["steps"]},
        model_params={
            "depth": ours["depth"],
            "num_channels_init": ours["features"],
            "use_batch_norm": ours["batch_norm"],
            "residual": ours["residual"],
        },
        optimizer="Adam",
        optimizer_params={"lr": ours["lr"]},
        seed=job["seed"],
    )
    clock = EpochClock(ours["batch_size"])

    class Clock(Callback):
        def __init__(self) -> None:
            self.step0 = 0

        def on_train_epoch_start(self, trainer, pl_module):
            self.step0 = trainer.global_step
            clock.epoch_started()

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                clock.validation_started()

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                clock.validation_ended()

        def on_train_epoch_end(self, trainer, pl_module):
            metrics = trainer.callback_metrics
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            clock.epoch_ended(
                trainer.global_step - self.step0,
                float(lr),
                float(metrics.get("train_loss_epoch", metrics.get("train_loss", np.nan))),
                float(metrics.get("val_loss", np.nan)),
            )

    careamist = CAREamist(
        config, work_dir=job["outputs"]["model"], callbacks=[Clock()], enable_progress_bar=False
    )
    careamist.train(train_data=images, val_data=valid)
    write_history(job["outputs"]["history"], clock.history_rows())
    algorithm, data = config.algorithm_config, config.data_config
    scheduler = dict(algorithm.lr_scheduler.parameters) or {"factor": 0.1, "patience": 10}
    theirs = {
        "depth": algorithm.model.depth,
        "features": algorithm.model.num_channels_init,
        "kernel": 3,
        "batch_norm": algorithm.model.use_batch_norm,
        "residual": algorithm.model.residual,
        "init": "kaiming_uniform (torch's default)",
        "steps": clock.steps,
        "epochs": len(clock.rows),
        "batch_size": data.batch_size,
        "patch_size": patch,
        "patch_sampling": f"{data.patching.name} patching (CAREamics)",
        "augmentation": ", ".join(a.name for a in data.augmentations) or "none",
        "normalisation": f"{data.normalization.name} of the training images (CAREamics)",
        "masked_percent": algorithm.n2v_config.masked_pixel_percentage,
        "masking_window": f"{algorithm.n2v_config.roi_size} x {algorithm.n2v_config.roi_size}",
        "replacement": f"{algorithm.n2v_config.strategy} (N2VManipulate)",
        "loss": "MSE on the masked pixels",
        "optimizer": "Adam (torch)",
        "lr": float(algorithm.optimizer.parameters["lr"]),
        "adam_eps": float(torch.optim.Adam([torch.zeros(1)]).defaults["eps"]),
        "schedule": "ReduceLROnPlateau on the validation loss (factor "
        f"{scheduler.get('factor', 0.1)}, patience {scheduler.get('patience', 10)})",
        "validation": "the recipe's validation tiles, masked by CAREamics each validation",
        "best_rule": "none: CAREamics scores its last weights for N2V",
        "prediction": f"tiles of {TILE_SIZE[0]} x {TILE_SIZE[1]}, overlap {TILE_OVERLAP[0]}",
    }
    return {"theirs": theirs, "steps": clock.steps, "images": int(images.shape[0])}


def _last_checkpoint(model_dir: str | Path) -> Path:
    found = sorted(Path(model_dir).glob(f"checkpoints/*/{EXPERIMENT}_last.ckpt"))
    if not found:
        raise FileNotFoundError(f"{model_dir}: no CAREamics checkpoint {EXPERIMENT}_last.ckpt")
    return found[-1]


def predict(job: dict[str, Any]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Predict every noisy BSD68 image with CAREamics' last weights, tiled."""
    torch = _torch(job["threads"])
    from careamics import CAREamist

    images = noisy_test_images(job["inputs"]["noisy"], job["inputs"]["split"])
    careamist = CAREamist(
        checkpoint_path=_last_checkpoint(job["inputs"]["model"]),
        work_dir=job["inputs"]["model"],
        enable_progress_bar=False,
    )

    def load(weights: str) -> None:
        if weights != "last":
            raise ValueError(f"CAREamics has no {weights!r} weights for N2V, only 'last'")

    def predict_all(arrays: Images) -> dict[str, np.ndarray]:
        inputs = list(arrays.values())
        outputs, _ = careamist.predict(
            inputs, data_type="array", axes="YX", tile_size=TILE_SIZE, tile_overlap=TILE_OVERLAP
        )
        return {
            image_id: np.asarray(out, dtype=np.float32).reshape(image.shape)
            for (image_id, image), out in zip(arrays.items(), outputs, strict=True)
        }

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return timed_predictions(job["weights"], images, load, predict_all, device)
