"""Framework backends: the shared base (checks, Adam coefficients, weight conversion), the
PyTorch and Jittor backends with the same methods, Jittor's environment, and the registry."""

from n2v_repro.backends.registry import FRAMEWORKS, make_backend

__all__ = ["FRAMEWORKS", "make_backend"]
