"""Framework parity: the same weights and batch through PyTorch and Jittor, compared.

Three steps, each its own process (the two frameworks never share one), exchanging files:
`write_parity_inputs`, then `run_framework` in each framework, then `compare_frameworks`,
which writes the errors of every arch (parity.json/.csv and an HTML table for the report)
whether or not they pass. `check_parity` is the gate: it raises ParityError when forward
outputs or gradients disagree beyond the tolerance, so a failure stops its own rule while
training, evaluation and the report still complete. DEFINITION says what is compared and
why the gradient threshold can exceed the tolerance.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.config import MaskingConfig, OptimizerConfig
from n2v_repro.errors import UserError
from n2v_repro.io.atomic import atomic_open, save_npz
from n2v_repro.io.formats import (
    arrays_under,
    load_npz,
    read_parity_json,
    write_parity_csv,
    write_parity_json,
)
from n2v_repro.models.initialisation import make_init_weights
from n2v_repro.models.spec import biases_before_batch_norm, is_buffer

log = logging.getLogger(__name__)

# Written into parity.json beside the numbers, so the file explains itself.
DEFINITION = """Framework parity: the same weights and batch through PyTorch and Jittor, compared.

Three steps, each its own process (the two frameworks never share one), exchanging files:

1. `write_parity_inputs`: initial weights and one fixed masked batch, per arch.
2. `run_framework`: in one framework, the eval-mode forward output, the train-mode loss and
   gradients, and the weights after K Adam steps with each semantics; on the PyTorch side
   also the gradients in float64 (the reference for the gradient check).
3. `compare_frameworks`: relative errors, written to parity.json / parity.csv; an arch
   fails (`passed` false) when the forward output or the gradients disagree beyond the
   tolerance, and the gate `check_parity` then raises ParityError.

Relative error of a against reference b (PyTorch): max|a - b| / max|b|, per array; for the
gradients and the weights, the maximum over parameters (the worst one is named).

Conv biases directly before batch norm are left out of the gradient comparison: their exact
gradient is zero, so the computed one is rounding noise.

Gradient conditioning: a unit whose pre-activation sits at a ReLU kink passes its gradient
or not depending on the last bits of the forward pass; with a sparse blind-spot loss one
such unit can move a parameter's largest gradient entry by percents. n2v_unet (batch norm
centres every pre-activation on the kink at initialisation) is badly conditioned: PyTorch's
own float32 gradients differ from the same computation in float64 by ~5e-3, so no float32
implementation can meet 1e-4 against another. The torch side therefore also computes the
gradients in float64 (the reference), and the gradient check passes when Jittor's error
against PyTorch is within max(tolerance, FLOAT32_SPREAD x PyTorch's float32 error against
float64): two float32 implementations, each within e of the exact gradient, can differ by
2e. For a well-conditioned network (n2n_unet: ~1e-6 against float64) that is the tolerance
itself. All three errors are reported.
"""

PATCH = 64
FLOAT32_SPREAD = 2.0
SEMANTICS = ("torch", "keras")


class ParityError(UserError, RuntimeError):
    """The frameworks disagree beyond the configured tolerance."""


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b|; 0 when both are all zero."""
    scale = float(np.abs(b).max())
    diff = float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def worst(errors: Mapping[str, float]) -> tuple[float, str]:
    name = max(errors, key=errors.__getitem__)
    return errors[name], name


# --- 1. inputs -----------------------------------------------------------------------------


def make_batch(batch_size: int, seed: int, masking: MaskingConfig) -> dict[str, np.ndarray]:
    """One N2V-masked batch of random normal 64x64 patches, (B, 1, 64, 64) each."""
    from n2v_repro.training.masking import mask_patches

    rng = np.random.default_rng([seed, 0x9A7])
    patches = rng.standard_normal((batch_size, PATCH, PATCH)).astype(np.float32)
    inputs, targets, mask = mask_patches(
        patches, rng, masking.kind, masking.percentage, masking.radius
    )
    return {"inputs": inputs[:, None], "targets": targets[:, None], "mask": mask[:, None]}


def write_parity_inputs(
    path: str | Path,
    arch: str,
    seed: int,
    batch_size: int,
    masking: MaskingConfig,
    init: str = "torch_default",
) -> None:
    """Write the initial weights (`init` scheme, as the recipe trains them) and one batch."""
    weights = make_init_weights(arch, seed, init)
    arrays = {f"weights/{k}": v for k, v in weights.items()}
    arrays |= make_batch(batch_size, seed, masking)
    save_npz(path, arrays)


# --- 2. one framework ----------------------------------------------------------------------


def run_framework(
    framework: str,
    arch: str,
    inputs_path: str | Path,
    output_path: str | Path,
    steps: int,
    optimizer: OptimizerConfig,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    from n2v_repro.backends.registry import make_backend

    arrays = load_npz(inputs_path)
    weights = arrays_under(arrays, "weights")
    batch = (arrays["inputs"], arrays["targets"], arrays["mask"])
    backend = make_backend(framework, arch, device=device, threads=threads)
    backend.load_weights(weights)
    out: dict[str, np.ndarray] = {"forward": backend.predict(batch[0])}
    loss, grads = backend.loss_and_grads(*batch)
    out["loss"] = np.array(loss)
    out |= {f"grad/{k}": v for k, v in grads.items()}
    if framework == "torch":
        from n2v_repro.backends.torch_backend import float64_loss_and_grads

        _, grads64 = float64_loss_and_grads(arch, weights, *batch)
        out |= {f"grad64/{k}": v for k, v in grads64.items()}
    for semantics in SEMANTICS:
        backend.load_weights(weights)
        backend.configure_optimizer(dataclasses.replace(optimizer, semantics=semantics))
        losses = [backend.train_step(*batch) for _ in range(steps)]
        out[f"losses_{semantics}"] = np.array(losses)
        out |= {f"after_{semantics}/{k}": v for k, v in backend.get_weights().items()}
        log.info("%s %s %s-semantics losses: %s", framework, arch, semantics, losses)
    out["steps"] = np.array(steps)
    save_npz(output_path, out)


# --- 3. comparison -------------------------------------------------------------------------


def _grad_errors(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], skip: set[str]
) -> dict[str, float]:
    return {k: rel_error(a[k], b[k]) for k in b if k not in skip}


def compare_arch(
    arch: str, torch_path: str | Path, jittor_path: str | Path, tolerance: float
) -> dict[str, Any]:
    """One record of errors (Jittor against PyTorch) for `arch`."""
    ref, got = load_npz(torch_path), load_npz(jittor_path)
    skip = set(biases_before_batch_norm(arch))
    ref_grads = arrays_under(ref, "grad")
    grad_error, grad_name = worst(_grad_errors(arrays_under(got, "grad"), ref_grads, skip))
    exact = arrays_under(ref, "grad64")
    torch_vs_exact, _ = worst(_grad_errors(ref_grads, exact, skip))
    jittor_vs_exact, _ = worst(_grad_errors(arrays_under(got, "grad"), exact, skip))
    threshold = max(tolerance, FLOAT32_SPREAD * torch_vs_exact)
    record: dict[str, Any] = {
        "arch": arch,
        "forward_rel_error": rel_error(got["forward"], ref["forward"]),
        "loss_rel_error": rel_error(got["loss"], ref["loss"]),
        "grad_rel_error": grad_error,
        "grad_worst_param": grad_name,
        "grad_rel_error_torch_vs_float64": torch_vs_exact,
        "grad_rel_error_jittor_vs_float64": jittor_vs_exact,
        "grad_threshold": threshold,
        "steps": int(ref["steps"]),
    }
    ref_after = arrays_under(ref, "after_torch")
    for semantics in SEMANTICS:
        # Both columns compare against PyTorch with torch semantics: the keras column shows
        # what the other epsilon placement (Keras', Jittor's own Adam) does to the training.
        errors = {
            k: rel_error(v, ref_after[k])
            for k, v in arrays_under(got, f"after_{semantics}").items()
            if k not in skip and not is_buffer(k)
        }
        value, name = worst(errors)
        record[f"params_rel_error_{semantics}_semantics"] = value
        record[f"params_worst_param_{semantics}_semantics"] = name
    record["passed"] = bool(
        record["forward_rel_error"] <= tolerance and record["grad_rel_error"] <= threshold
    )
    return record


def compare_frameworks(
    archs: list[str],
    torch_paths: list[str],
    jittor_paths: list[str],
    json_path: str | Path,
    csv_path: str | Path,
    tolerance: float,
    html_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Write parity.json/.csv (and the HTML table) for every arch, passed or not.

    Failing archs are logged; `check_parity` turns them into an error.
    """
    records = [
        compare_arch(arch, t, j, tolerance)
        for arch, t, j in zip(archs, torch_paths, jittor_paths, strict=True)
    ]
    write_parity_json(json_path, tolerance, DEFINITION, records)
    write_parity_csv(csv_path, records)
    if html_path is not None:
        write_parity_html(html_path, records, tolerance)
    for r in records:
        log.info("parity %s", r)
    message = failure_message(records, tolerance)
    if message is not None:
        log.error("%s", message)
    return records


def failure_message(records: list[dict[str, Any]], tolerance: float) -> str | None:
    """Describe every failing arch (its worst errors against their thresholds); None if none."""
    failed = [r for r in records if not r["passed"]]
    if not failed:
        return None
    lines = [
        f"{r['arch']}: forward {r['forward_rel_error']:.3g} (tolerance {tolerance:g}), "
        f"gradient {r['grad_rel_error']:.3g} at {r['grad_worst_param']} "
        f"(threshold {r['grad_threshold']:.3g})"
        for r in failed
    ]
    return "PyTorch and Jittor disagree:\n  " + "\n  ".join(lines)


def check_parity(json_path: str | Path, passed_path: str | Path) -> list[str]:
    """Gate on parity.json: raise ParityError naming every failing arch.

    When every arch passed, write `passed_path` (one line per arch) and return the archs.
    """
    report = read_parity_json(json_path)
    message = failure_message(report["archs"], float(report["tolerance"]))
    if message is not None:
        raise ParityError(f"{message}\n(errors of every arch: {json_path})")
    archs = [r["arch"] for r in report["archs"]]
    with atomic_open(passed_path) as handle:
        handle.write("".join(f"{arch} passed\n" for arch in archs))
    return archs


# --- 4. the report's table -----------------------------------------------------------------


def parity_table_html(records: list[dict[str, Any]], tolerance: float) -> str:
    """One row per arch; a failing arch's row is red and says FAILED."""
    from n2v_repro.report.html_pages import Column, render_table

    def scientific(value: Any) -> str:
        return f"{float(value):.2e}"

    columns = [
        Column("arch", "arch"),
        Column("status", "status"),
        Column("forward_rel_error", "forward", scientific, numeric=True),
        Column("loss_rel_error", "loss", scientific, numeric=True),
        Column("grad_rel_error", "gradient", scientific, numeric=True),
        Column("grad_threshold", "gradient threshold", scientific, numeric=True),
        Column("grad_worst_param", "worst gradient"),
        Column("grad_rel_error_torch_vs_float64", "PyTorch vs float64", scientific, True),
        Column("params_rel_error_torch_semantics", "params after steps", scientific, True),
    ]
    rows = [{**r, "status": "passed" if r["passed"] else "FAILED"} for r in records]
    notes = [
        f"Relative errors of Jittor against PyTorch (max|a - b| / max|b|). An arch passes when "
        f"the forward error is at most the tolerance {tolerance:g} and the gradient error at "
        "most its threshold (the tolerance, or twice PyTorch's own float32 error against "
        "float64 when that is larger)."
    ]
    return render_table(
        "Framework parity",
        columns,
        rows,
        notes,
        row_class=lambda row: None if row["passed"] else "n2v-failed",
    )


def write_parity_html(path: str | Path, records: list[dict[str, Any]], tolerance: float) -> None:
    with atomic_open(path) as handle:
        handle.write(parity_table_html(records, tolerance))
