"""Networks: the architecture spec, the PyTorch and Jittor networks built from it, and
framework-neutral initial weights. Imports neither framework at package level."""
