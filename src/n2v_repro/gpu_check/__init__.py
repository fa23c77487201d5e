"""The one-command GPU check: `python -m n2v_repro.gpu_check --out DIR` (docs/gpu.md).

Run once on a bare GPU machine after the carried wheels are installed: parity of the two
frameworks on CUDA in strict fp32 for every arch, training throughput of each framework x
arch x batch size x precision, and the paper recipe's network trained for a fixed wall
budget and evaluated on all of BSD68. `prepare` (run where the dataset mirror is) packs the
images it needs; `--smoke` runs the same flow on the CPU with a tiny budget (the tests).

Modules: `pack` (the data: packed here, turned into the pipeline's training and test files
there), `worker` (one framework's parity or timed training, in its own process), `check`
(the phases within the time budget, the JSON and markdown results). This file and `worker`
import no numpy at import time: a Jittor worker puts its own numpy first on the path first.
"""
