"""oneDNN's convolution choices in three default Jittor CPU training steps of an arch.

    DNNL_VERBOSE=1 python tools/onednn_trace.py n2v_unet32 | grep convolution > trace.txt

The backend is the pipeline's, as `training.loop` builds it (stock: Jittor's own ops); each
`dnnl_verbose,exec,...,convolution` line names the kernel and algorithm oneDNN ran.
"""

from __future__ import annotations

import sys

import numpy as np

from n2v_repro.backends.registry import make_backend
from n2v_repro.config import OptimizerConfig
from n2v_repro.models.initialisation import make_init_weights

arch = sys.argv[1] if len(sys.argv) > 1 else "n2v_unet32"
backend = make_backend("jittor", arch, device="cpu", threads=2)
backend.load_weights(make_init_weights(arch, 123, "glorot_uniform"))
backend.configure_optimizer(OptimizerConfig(4e-4, (0.9, 0.999), 1e-7, "keras"))
patches = np.random.default_rng(0).standard_normal((16, 1, 64, 64)).astype(np.float32)
masked = np.zeros(patches.shape, bool)
masked[:, :, ::8, ::8] = True
for _ in range(3):
    backend.queue_train_step(patches, patches, masked)
print("losses", backend.read_losses())
