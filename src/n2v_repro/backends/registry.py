"""Entry point to the framework backends (docs/backend_interface.md).

The backend modules are imported lazily, so the torch environment never imports Jittor and
the Jittor environment never imports torch.
"""

from __future__ import annotations

from typing import Any

from n2v_repro.framework_site import framework_package
from n2v_repro.models.spec import ARCHS, has_batch_norm

# What a run can train with: each framework stock, with its own layers and defaults as its
# users write them, and one opt-in variant, labelled wherever it appears: Jittor with the
# project's exact BatchNorm (PyTorch's semantics, computed in float64) instead of
# jittor.nn.BatchNorm. A variant is named `<framework>-<variant>` (framework_package).
FRAMEWORKS = ("torch", "jittor", "jittor-exactbn")
# The frameworks a configuration trains when it names none.
STOCK_FRAMEWORKS = ("torch", "jittor")
# Tables' and figures' names.
FRAMEWORK_TITLES = {"torch": "PyTorch", "jittor": "Jittor", "jittor-exactbn": "Jittor, exact BN"}
# The batch norm each framework's networks use: its own (stock) or the project's (exact).
BATCH_NORM = {"torch": "stock", "jittor": "stock", "jittor-exactbn": "exact"}


def batch_norm(framework: str, arch: str) -> str | None:
    """Return the batch norm a run of `arch` uses (stock, exact), None for an arch without."""
    return BATCH_NORM[framework] if has_batch_norm(arch) else None


def is_own_model(framework: str, arch: str) -> bool:
    """Say whether `framework` trains `arch` as a model of its own.

    The exact-BN variant of an arch without batch norm is the stock model, bit for bit, so a
    run plans it once.
    """
    return BATCH_NORM[framework] == "stock" or has_batch_norm(arch)


def make_backend(
    framework: str,
    arch: str,
    device: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
) -> Any:
    """Make a TorchBackend or JittorBackend for `arch` on `device` (auto, cpu or cuda).

    `framework` is one of FRAMEWORKS; `precision` (fp32, tf32, bf16) sets the CUDA
    arithmetic; the CPU computes in float32.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}"
        )
    if framework_package(framework) == "torch":
        from n2v_repro.backends.torch_backend import TorchBackend

        return TorchBackend(arch, device=device, threads=threads, precision=precision)
    from n2v_repro.backends.jittor_backend import JittorBackend

    return JittorBackend(
        arch, device=device, threads=threads, precision=precision,
        batch_norm=BATCH_NORM[framework],
    )  # fmt: skip
