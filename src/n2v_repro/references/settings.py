"""The pipeline's settings of a recipe as they are compared with a reference's.

Every reference's adapter reports the same keys for itself (`SETTINGS`), so the report puts
ours beside theirs row by row and marks each difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from n2v_repro.models.spec import N2V_WIDTHS

# (key, label) in the table's order.
SETTINGS = (
    ("depth", "U-Net depth"),
    ("features", "first-level features"),
    ("kernel", "convolution kernel"),
    ("batch_norm", "batch norm"),
    ("residual", "residual (output + input)"),
    ("init", "initialisation"),
    ("steps", "optimiser steps in all"),
    ("epochs", "epochs (validations)"),
    ("batch_size", "batch size"),
    ("patch_size", "patch size"),
    ("patch_sampling", "patch sampling"),
    ("augmentation", "augmentation"),
    ("normalisation", "normalisation"),
    ("masked_percent", "masked pixels (%)"),
    ("masking_window", "masking window"),
    ("replacement", "replacement value"),
    ("loss", "loss"),
    ("optimizer", "optimiser"),
    ("lr", "initial learning rate"),
    ("adam_eps", "Adam epsilon"),
    ("schedule", "learning-rate schedule"),
    ("validation", "validation data"),
    ("best_rule", "best weights"),
    ("prediction", "prediction"),
)
SETTING_KEYS = tuple(key for key, _ in SETTINGS)

SCHEDULES = {
    "cosine": "cosine decay over the fixed budget",
    "step": "step decay",
    "plateau": "ReduceLROnPlateau on the validation loss",
    "constant": "constant",
}


def our_settings(train: Mapping[str, Any], patch_size: int) -> dict[str, Any]:
    """Return the pipeline's value of every SETTINGS key for recipe `train` (plain mapping)."""
    masking, optimizer, schedule = train["masking"], train["optimizer"], train["schedule"]
    radius = int(masking["radius"])
    plateau = ""
    if schedule["kind"] == "plateau":
        plateau = f" (factor {schedule['factor']}, patience {schedule['patience']})"
    elif schedule["kind"] == "step":
        plateau = f" (x{schedule['factor']} every {schedule['step_epochs']} epochs)"
    return {
        "depth": 2,
        "features": N2V_WIDTHS[train["arch"]],
        "kernel": 3,
        "batch_norm": True,
        "residual": True,
        "init": train["init"],
        "steps": int(train["epochs"]) * int(train["steps_per_epoch"]),
        "epochs": int(train["epochs"]),
        "batch_size": int(train["batch_size"]),
        "patch_size": int(patch_size),
        "patch_sampling": "random crops of the training images, seeded",
        "augmentation": "random flip/rotation per patch" if train["augment"] else "none",
        "normalisation": "mean/std of the training pixels",
        "masked_percent": float(masking["percentage"]),
        "masking_window": f"{2 * radius + 1} x {2 * radius + 1}",
        "replacement": masking["kind"],
        "loss": "MSE on the masked pixels",
        "optimizer": f"Adam ({optimizer['semantics']} semantics)",
        "lr": float(optimizer["lr"]),
        "adam_eps": float(optimizer["eps"]),
        "schedule": SCHEDULES.get(schedule["kind"], schedule["kind"]) + plateau,
        "validation": "the recipe's validation tiles, masked once per seed",
        "best_rule": "lowest validation loss",
        "prediction": "whole image, reflect-padded to the stride",
    }


def comparison_rows(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per setting: ours, theirs, and whether they differ."""
    rows = []
    for key, label in SETTINGS:
        mine, other = ours.get(key), theirs.get(key)
        rows.append(
            {
                "setting": label,
                "ours": _text(mine),
                "theirs": _text(other),
                "differs": "differs" if _text(mine) != _text(other) else "",
            }
        )
    return rows


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)
