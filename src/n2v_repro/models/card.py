"""`model.json`: what a set of trained weights needs to be used, written beside them.

Training writes it next to last.npz / best.npz; the denoise command reads it, so a user
gives only the weights file. Fields: the architecture, the z-score normalisation statistics
of the training data (grey levels of 8-bit images), the training patch size, the framework
that trained the weights (either framework loads them) and the seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from n2v_repro.errors import UserError
from n2v_repro.models.spec import ARCHS

MODEL_JSON = "model.json"
CARD_FORMAT = 1


class ModelCardError(UserError, ValueError):
    """model.json is missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class ModelCard:
    arch: str
    mean: float
    std: float
    patch_size: int
    framework: str
    seed: int

    def to_json(self) -> dict[str, Any]:
        fields = asdict(self)
        normalisation = {"kind": "zscore", "mean": fields.pop("mean"), "std": fields.pop("std")}
        return {"format": CARD_FORMAT, "normalisation": normalisation, **fields}


def card_path(weights: str | Path) -> Path:
    """Return the model.json that belongs to a weights file: the one in the same folder."""
    return Path(weights).parent / MODEL_JSON


def write_model_card(path: str | Path, card: ModelCard) -> None:
    from n2v_repro.io.atomic import write_json

    write_json(path, card.to_json())


def read_model_card(path: str | Path) -> ModelCard:
    """Parse and check model.json; every problem raises ModelCardError naming file and key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelCardError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelCardError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: expected a JSON object")
    try:
        norm = data["normalisation"]
        card = ModelCard(
            arch=str(data["arch"]),
            mean=float(norm["mean"]),
            std=float(norm["std"]),
            patch_size=int(data["patch_size"]),
            framework=str(data["framework"]),
            seed=int(data["seed"]),
        )
    except KeyError as error:
        raise ModelCardError(f"{path}: missing key {error.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise ModelCardError(f"{path}: bad value ({error})") from None
    if data.get("format") != CARD_FORMAT:
        raise ModelCardError(f"{path}: format {data.get('format')!r}, expected {CARD_FORMAT}")
    if card.arch not in ARCHS:
        raise ModelCardError(f"{path}: unknown arch {card.arch!r}; expected one of {ARCHS}")
    if not (math.isfinite(card.mean) and math.isfinite(card.std) and card.std > 0):
        raise ModelCardError(f"{path}: normalisation needs a finite mean and std > 0")
    return card
