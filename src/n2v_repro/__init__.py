"""Noise2Void on BSD68, reproduced in PyTorch and Jittor.

Layers, bottom to top: `io`, `config`, `data`, `models` -> `backends` -> `training` ->
`evaluation` -> `report`; `bench` is a command-line entry point over backends and training.
"""

__version__ = "0.1.0"
