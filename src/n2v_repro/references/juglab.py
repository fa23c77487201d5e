"""juglab n2v 0.3.3 (the Noise2Void authors' TensorFlow/Keras code) on the pipeline's data.

Runs in the reference's own environment (envs/ref-juglab-n2v.yaml). What N2VConfig lets one
set follows the recipe: network depth, width, kernel, batch norm and residual; epochs, steps
per epoch, batch size, patch size; masked percentage, replacement and radius; learning rate;
the loss (MSE, as the authors' BSD68 notebook). The rest is n2v's own: Keras' Adam and
initialisation, ReduceLROnPlateau, its stratified masking code, N2V_DataWrapper's random
sub-patches, and as augmentation N2V_DataGenerator's eight rotations/flips of every image
(the authors' data preparation); best weights are its ModelCheckpoint's (lowest val_loss).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.io.formats import write_history
from n2v_repro.references.data import noisy_test_images, training_images, validation_tiles
from n2v_repro.references.timing import EpochClock, Images, timed_predictions

MODEL_NAME = "n2v"
STRIDE = 4  # 2 ** unet_n_depth


def _tensorflow(threads: int, seed: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    return tf


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Train on the recipe's images; write the model folder and history.csv."""
    tf = _tensorflow(job["threads"], job["seed"])
    from n2v.internals.N2V_DataGenerator import N2V_DataGenerator
    from n2v.models import N2V, N2VConfig

    ours = job["ours"]
    images = training_images(job["inputs"]["train"], job["inputs"]["index"], STRIDE)[..., None]
    if job["augment"]:
        if images.shape[1] != images.shape[2]:
            raise ValueError(f"n2v augments square images only, got {images.shape[1:3]}")
        images = N2V_DataGenerator().__augment_patches__(images)
    valid = validation_tiles(job["inputs"]["valid"])[..., None]
    patch = ours["patch_size"]
    config = N2VConfig(
        images,
        unet_n_depth=ours["depth"],
        unet_n_first=ours["features"],
        unet_kern_size=ours["kernel"],
        batch_norm=ours["batch_norm"],
        unet_residual=ours["residual"],
        train_epochs=ours["epochs"],
        train_steps_per_epoch=ours["steps"] // ours["epochs"],
        train_batch_size=ours["batch_size"],
        train_learning_rate=ours["lr"],
        train_loss="mse",
        n2v_perc_pix=ours["masked_percent"],
        n2v_patch_shape=(patch, patch),
        n2v_manipulator=job["masking_kind"],
        n2v_neighborhood_radius=job["masking_radius"],
        # Logging only: n2v's TensorBoard callback needs a writable log folder and time.
        train_tensorboard=False,
    )
    model = N2V(config, MODEL_NAME, basedir=job["outputs"]["model"])
    clock = EpochClock(ours["batch_size"])
    model.prepare_for_training()
    model.callbacks.append(_keras_clock(tf, clock, config.train_steps_per_epoch))
    model.train(images, valid)
    write_history(job["outputs"]["history"], clock.history_rows())
    radius = job["masking_radius"]
    theirs = {
        "depth": config.unet_n_depth,
        "features": config.unet_n_first,
        "kernel": config.unet_kern_size,
        "batch_norm": config.batch_norm,
        "residual": config.unet_residual,
        "init": "glorot_uniform (Keras' default)",
        "steps": clock.steps,
        "epochs": len(clock.rows),
        "batch_size": config.train_batch_size,
        "patch_size": patch,
        "patch_sampling": "a random sub-patch per image and pass (N2V_DataWrapper)",
        "augmentation": (
            "8 rotations/flips of every image (N2V_DataGenerator)" if job["augment"] else "none"
        ),
        "normalisation": "mean/std of the training images (N2VConfig)",
        "masked_percent": config.n2v_perc_pix,
        "masking_window": f"{2 * radius + 1} x {2 * radius + 1}",
        "replacement": config.n2v_manipulator,
        "loss": "MSE on the masked pixels",
        "optimizer": "Adam (Keras)",
        "lr": config.train_learning_rate,
        "adam_eps": 1e-7,
        "schedule": "ReduceLROnPlateau on the validation loss (factor "
        f"{config.train_reduce_lr['factor']}, patience {config.train_reduce_lr['patience']})",
        "validation": "the recipe's validation tiles, masked once (n2v's manipulate_val_data)",
        "best_rule": "lowest validation loss",
        "prediction": "whole image, padded to the stride (PadAndCropResizer)",
    }
    return {"theirs": theirs, "steps": clock.steps, "images": int(images.shape[0])}


def _keras_clock(tf, clock: EpochClock, steps: int):  # noqa: ANN001 - tf is a module
    """Return a Keras callback feeding `clock` (made here, once Keras is imported)."""

    class Clock(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.epoch_started()

        def on_test_begin(self, logs=None):
            clock.validation_started()

        def on_test_end(self, logs=None):
            clock.validation_ended()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))
            clock.epoch_ended(
                steps, lr, float(logs.get("loss", np.nan)), float(logs.get("val_loss", np.nan))
            )

    return Clock()


def predict(job: dict[str, Any]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Predict every noisy BSD68 image with each of job["weights"] (last, best)."""
    _tensorflow(job["threads"], job["seed"])
    from n2v.models import N2V

    images = noisy_test_images(job["inputs"]["noisy"], job["inputs"]["split"])
    model = N2V(None, MODEL_NAME, basedir=job["inputs"]["model"])
    folder = Path(job["inputs"]["model"]) / MODEL_NAME

    def load(weights: str) -> None:
        model.keras_model.load_weights(str(folder / f"weights_{weights}.h5"))

    def predict_all(arrays: Images) -> dict[str, np.ndarray]:
        return {
            image_id: np.asarray(model.predict(image, axes="YX"), dtype=np.float32)
            for image_id, image in arrays.items()
        }

    # tensorflow-cpu: the CPU whatever the machine has.
    return timed_predictions(job["weights"], images, load, predict_all, "cpu")
