"""A reference's BSD68 predictions scored by the pipeline's own metric code.

Rule score_reference: the same images, the same PSNR/SSIM, the same per_image.csv and
summary.json as the pipeline's evaluations, with the reference's name as the framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from n2v_repro.evaluation.predict import (
    NOISY,
    EvaluationResult,
    _score_rows,
    load_test_images,
    write_scores,
)
from n2v_repro.io.formats import FormatError, arrays_under, load_npz, read_json_object


def score_reference(
    *,
    name: str,
    recipe: str,
    arch: str,
    sigma: int,
    seed: int,
    validation: str,
    weights: Sequence[str],
    clean_pngs: Sequence[str | Path],
    noisy_npz: str | Path,
    split_csv: str | Path,
    predictions_npz: str | Path,
    inference_json: str | Path,
    per_image_csv: str | Path,
    summary_json: str | Path,
    denoised_dir: str | Path,
) -> dict[str, Any]:
    """Score every weights of `predictions_npz` on every image; write the evaluation files."""
    images = load_test_images(clean_pngs, noisy_npz, split_csv)
    arrays = load_npz(predictions_npz)
    rows = _score_rows(images, {img.id: img.noisy for img in images}, NOISY)
    kept = {}
    for position, name_of_weights in enumerate(weights):
        predictions = arrays_under(arrays, name_of_weights)
        for img in images:
            pred = predictions.get(img.id)
            if pred is None or pred.shape != img.noisy.shape:
                found = None if pred is None else pred.shape
                raise FormatError(
                    f"{predictions_npz}: {name_of_weights}/{img.id} should be an image of "
                    f"{img.noisy.shape}, found {found}"
                )
        rows += _score_rows(images, predictions, name_of_weights)
        if position == 0:
            kept = predictions
    result = EvaluationResult(rows=rows, denoised=kept, inference=read_json_object(inference_json))
    return write_scores(
        result=result,
        images=images,
        run={"recipe": recipe, "framework": name, "arch": arch, "sigma": sigma, "seed": seed},
        validation=validation,
        tta=False,
        train_stats=None,
        per_image_csv=per_image_csv,
        summary_json=summary_json,
        denoised_dir=denoised_dir,
    )
