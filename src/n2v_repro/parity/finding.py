"""How far stock Jittor is from PyTorch, and why: the batch-norm finding of the parity step.

Not a pass/fail: a measurement. On the parity batch, PyTorch float32 (T) and stock Jittor
(J) differ by J - T, which telescopes through PyTorch float32 runs with jittor.nn.BatchNorm's
changes added one at a time (parity.batch_norm.EMULATIONS: E0 its semantics composed of
tensor ops, E1 + biased running variance, E2 + one-pass float32 variance, E3 + the folded
affine form): J - T = (E0 - T) + (E1 - E0) + (E2 - E1) + (E3 - E2) + (J - E3). Each term's
size, relative to T's, is one cause's share; the last is Jittor's own float32 arithmetic
(reduction order, conv kernels). Per layer call (train-mode output), batch-norm statistic
(its update), eval-mode output and layer gradients; the summary keeps each kind's largest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from n2v_repro.io.atomic import atomic_open
from n2v_repro.io.formats import arrays_under
from n2v_repro.models.spec import biases_before_batch_norm
from n2v_repro.report.html_pages import Column, digits, render_table

# (term, header): the differences of T, E0..E3 and J in order (NOTE says what each isolates).
TERMS = (
    ("pytorch_kernel", "PyTorch's kernel"),
    ("biased_running_var", "biased running variance"),
    ("one_pass_variance", "one-pass variance"),
    ("folded_affine", "folded affine form"),
    ("sequential_sums", "sequential sums"),
    ("jittor_arithmetic", "rest of Jittor's arithmetic"),
)
# The emulations' names (parity.batch_norm.EMULATIONS), E0..E3.
EMULATION_ORDER = (
    "composed",
    "biased_running_var",
    "one_pass_variance",
    "folded_affine",
    "sequential_sums",
)
KINDS = ("forward", "running_mean", "running_var", "eval_output", "gradient")


def _quantities(arch: str, result: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """One run's arrays by kind and name (gradients per layer, as the gate groups them)."""
    buffers = arrays_under(result, "buffer")
    left_out = set(biases_before_batch_norm(arch))
    grads: dict[str, list[np.ndarray]] = {}
    for name, value in arrays_under(result, "grad").items():
        if name not in left_out:
            grads.setdefault(name.rsplit(".", 1)[0], []).append(np.ravel(value))
    return {
        "forward": arrays_under(result, "layer"),
        "running_mean": {k: v for k, v in buffers.items() if k.endswith("running_mean")},
        "running_var": {k: v for k, v in buffers.items() if k.endswith("running_var")},
        "eval_output": {"output": result["eval_output"]},
        "gradient": {layer: np.concatenate(parts) for layer, parts in grads.items()},
    }


def _size(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> float:
    """||b - a|| / ||scale|| in float64."""
    diff = np.asarray(b, np.float64).ravel() - np.asarray(a, np.float64).ravel()
    norm = float(np.linalg.norm(np.asarray(scale, np.float64)))
    return float(np.linalg.norm(diff)) / norm if norm > 0 else 0.0


def batch_norm_finding(
    arch: str,
    torch_result: Mapping[str, np.ndarray],
    jittor_result: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Measure J - T and each term of its telescoping sum, per quantity, and summarise."""
    emulations = [arrays_under(reference, f"emulation/{name}") for name in EMULATION_ORDER]
    chain = [_quantities(arch, r) for r in (torch_result, *emulations, jittor_result)]
    per_layer: dict[str, dict[str, dict[str, float]]] = {}
    summary: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        rows = {}
        for name, torch_value in chain[0][kind].items():
            steps = [run[kind][name] for run in chain]
            row = {"total": _size(steps[0], steps[-1], torch_value)}
            for (term, _), a, b in zip(TERMS, steps[:-1], steps[1:], strict=True):
                row[term] = _size(a, b, torch_value)
            rows[name] = row
        per_layer[kind] = rows
        worst = max(rows, key=lambda n: rows[n]["total"])
        summary[kind] = {"layer": worst, **rows[worst]}
    return {"summary": summary, "per_layer": per_layer}


TITLE = "Stock Jittor's batch norm against PyTorch"
KIND_TITLES = {
    "forward": "layer output (train mode)",
    "running_mean": "running mean (update)",
    "running_var": "running variance (update)",
    "eval_output": "network output (eval mode)",
    "gradient": "layer gradients",
}
NOTE = (
    "Stock Jittor (jittor.nn.BatchNorm) against PyTorch float32 (T) on the parity batch: a "
    "measured finding, not a pass/fail (the gate judges each framework against float64 of "
    "its own semantics). total = ||J - T|| / ||T||. J - T is the sum of the six columns "
    "after it, each the change made by adding one of stock Jittor's ways to PyTorch float32 "
    "(parity.batch_norm): PyTorch's batch-norm kernel against the same formulas in tensor "
    "ops; the running variance keeping the biased batch variance (semantics); the batch "
    "variance as E[x^2] - E[x]^2 in float32; normalising as x * w + (b - mean * w); the "
    "batch norm's sums taken one element after another, as Jittor's CPU reduce does; and "
    "the rest of Jittor's float32 arithmetic (convolutions, other sums). Each is relative "
    "to ||T||, so the sizes apportion the total (the norms of the terms need not add up to "
    "the norm of the sum). Gradients include the units a change moved across a ReLU kink "
    "or a max-pool tie. One row per quantity: the layer where the total is largest; every "
    "layer's terms are in parity.json."
)


def finding_rows(records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per arch with stock Jittor's batch norm x quantity: its largest layer's terms."""
    return [
        {
            "arch": r["arch"],
            "quantity": KIND_TITLES[kind],
            **r["batch_norm_finding"]["summary"][kind],
        }
        for r in records
        if r.get("batch_norm_finding")
        for kind in KINDS
    ]


COLUMNS = [
    Column("arch", "arch"),
    Column("quantity", "quantity"),
    Column("layer", "layer"),
    Column("total", "total: Jittor − PyTorch", digits(".1e"), True),
    *[Column(term, text, digits(".1e"), True) for term, text in TERMS],
]


def write_finding_html(path: Any, records: list[Mapping[str, Any]]) -> None:
    rows = finding_rows(records)
    notes = [NOTE] if rows else ["No arch of this run has batch norm: nothing to apportion."]
    with atomic_open(path) as handle:
        handle.write(render_table(TITLE, COLUMNS, rows, notes))
