"""Reference implementations of Noise2Void run on the pipeline's own data.

The authors' juglab `n2v` (TensorFlow/Keras) and CAREamics (PyTorch Lightning) each train on
the training images and validation tiles that `patchify` wrote for a recipe, with the
recipe's budget where the library lets one set it and the library's own ways elsewhere;
each predicts the pipeline's noisy BSD68 arrays, and the pipeline's metric code scores them.

Layers: `registry` (what each reference is, importable everywhere), `env` (builds each
reference's own environment), `launch` (runs a job in it), `worker` with `juglab` and
`careamics_lib` (run inside that environment only), `scoring` (back in the pipeline's
environment), `settings` (ours beside theirs).
"""
