"""The report's table of bioimage.io packages.

One row per package: its validation status and how closely each weight format reproduced the
training framework's own test output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from n2v_repro.bmz.export import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE
from n2v_repro.io.atomic import atomic_open
from n2v_repro.report.html_pages import Column, render_table

FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
COLUMNS = (
    "recipe",
    "framework",
    "sigma",
    "seed",
    "weights",
    "status",
    "weight_formats",
    *(f"max_abs_diff_{name}" for name in FORMATS),
    "test_input",
    "bioimageio_core",
    "package",
)


def package_row(validation_json: str | Path) -> dict[str, Any]:
    """One table row from an export's validation summary."""
    result = json.loads(Path(validation_json).read_text())
    row = {key: result[key] for key in ("recipe", "framework", "sigma", "seed", "weights")}
    row |= {
        "status": result["status"],
        "weight_formats": " ".join(result["weight_formats"]),
        "test_input": result["test_input"].get("image_id", ""),
        "bioimageio_core": result.get("env", {}).get("bioimageio.core", ""),
        "package": str(Path(validation_json).parent / result["package"]),
    }
    for name in FORMATS:
        numbers = result.get("reproduction", {}).get(name)
        row[f"max_abs_diff_{name}"] = numbers["max_abs_diff"] if numbers else None
    return row


def _scientific(value: Any) -> str:
    return f"{float(value):.2e}"


def write_package_table(
    validations: Sequence[str | Path], *, csv_path: str | Path, html_path: str | Path
) -> list[dict[str, Any]]:
    """Write the CSV and HTML tables of the packages whose summaries are `validations`."""
    import csv

    rows = [package_row(path) for path in validations]
    with atomic_open(csv_path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    columns = [
        Column("recipe", "recipe"),
        Column("framework", "trained in"),
        Column("sigma", "sigma", numeric=True),
        Column("seed", "seed", numeric=True),
        Column("weights", "weights"),
        Column("status", "bioimageio test"),
        Column("weight_formats", "weight formats"),
        *(
            Column(f"max_abs_diff_{name}", f"max |Δ| {name}", _scientific, numeric=True)
            for name in FORMATS
        ),
        Column("test_input", "test image"),
        Column("package", "package"),
    ]
    notes = [
        "One bioimage.io model package (zip, model format 0.5) per run and weights, validated "
        "with bioimageio.core's test_model (`bioimageio test`): format, test tensors, and "
        "inference of every weight format at several sizes and batch sizes.",
        "max |Δ|: the largest difference, in grey levels, between the package's output with "
        "that weight format and the test output, which is the training framework's own "
        "prediction (CPU, float32) of a noisy training image (never BSD68). For a Jittor-trained "
        "model this is PyTorch (and ONNX) running Jittor's weights against Jittor: a second "
        "parity check, independent of the pipeline's own. The package's tolerance is "
        f"{ABSOLUTE_TOLERANCE} grey levels + {RELATIVE_TOLERANCE} x |output|, for every pixel.",
    ]
    html = render_table(
        "bioimage.io model packages",
        columns,
        rows,
        notes=notes,
        row_class=lambda row: None if row["status"] == "passed" else "n2v-failed",
    )
    with atomic_open(html_path) as handle:
        handle.write(html)
    return rows
