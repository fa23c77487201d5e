"""Framework backends: the shared base, the PyTorch and Jittor backends, and the registry.

The base holds checks, Adam's bookkeeping and weight conversion; each backend holds only its
tensor calls, with the same methods; jittor_env prepares Jittor before its import.
"""

from n2v_repro.backends.registry import FRAMEWORKS, make_backend

__all__ = ["FRAMEWORKS", "make_backend"]
