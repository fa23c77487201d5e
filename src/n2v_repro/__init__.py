"""Noise2Void on BSD68, reproduced in PyTorch and Jittor.

The package holds the pipeline's logic; the Snakemake scripts only call it. Framework code
lives in `backend_torch` and `backend_jittor`; everything else is framework-independent.
"""

__version__ = "0.1.0"
