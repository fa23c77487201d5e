"""Entry point to the framework backends (docs/backend_interface.md).

The backend modules are imported lazily, so the torch environment never imports Jittor and
the Jittor environment never imports torch.
"""

from __future__ import annotations

from typing import Any

from n2v_repro.models.spec import ARCHS

FRAMEWORKS = ("torch", "jittor")


def make_backend(
    framework: str,
    arch: str,
    device: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
) -> Any:
    """Make a TorchBackend or JittorBackend for `arch` on `device` (auto, cpu or cuda).

    `precision` (fp32, tf32, bf16) sets the CUDA arithmetic; the CPU computes in float32.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if framework == "torch":
        from n2v_repro.backends.torch_backend import TorchBackend

        return TorchBackend(arch, device=device, threads=threads, precision=precision)
    if framework == "jittor":
        from n2v_repro.backends.jittor_backend import JittorBackend

        return JittorBackend(arch, device=device, threads=threads, precision=precision)
    raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
