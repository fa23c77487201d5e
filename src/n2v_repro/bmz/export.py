"""Write one trained model as a bioimage.io model package (zip) and validate it.

The package (bioimage.io model format 0.5, `bioimageio.spec`) holds:

- weights as `pytorch_state_dict` (with `arch.py`, the self-contained network source of
  `arch_source`), `torchscript` (traced) and `onnx` where the export runs and reproduces
  the PyTorch output;
- the test tensors of `test_tensors` (a noisy training image, never BSD68, and the training
  framework's own prediction: for a Jittor-trained model the package's PyTorch weights are
  checked against Jittor's output);
- pre-processing `fixed_zero_mean_unit_variance` with the training statistics and
  post-processing `scale_linear` back to grey levels: the pipeline's normalisation;
- a cover (input | output), a README naming the recipe, framework, sigma, seed, training
  data and the pipeline's BSD68 PSNR, the licence and the citations.

Validation is `bioimageio.core.test_model`, the validator behind `bioimageio test`; its
summary is written beside the package, and a failure raises `BmzValidationError` with the
validator's own messages. bioimage.io is imported only inside the functions (the package is
installed only where the export rules run).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from n2v_repro.bmz.arch_source import ARCH_CALLABLE, write_arch_source
from n2v_repro.bmz.test_tensors import read_test_tensors
from n2v_repro.errors import UserError
from n2v_repro.io.atomic import atomic_path, write_json
from n2v_repro.io.formats import load_weights, read_eval_summary, read_train_stats
from n2v_repro.models.spec import ARCH_STRIDE
from n2v_repro.report.references import METHOD_PAPER_CITATION, method_paper_psnr

log = logging.getLogger(__name__)

LICENSE = "MIT"  # the project's licence (pyproject.toml): code and trained weights
ONNX_OPSET = 17
ONNX_NOTE_CHARS = 160
# How far a reproduced output may be from the package's test output, in grey levels (the
# output's unit) and relative to it. One hundredth of an 8-bit quantisation step, far below
# anything PSNR can see (0.01 grey levels everywhere moves PSNR by < 1e-4 dB at 27 dB), and
# above float32 rounding in either framework (parity: ~1e-3 grey levels). ONNX and
# TorchScript are held to the same bound against the training framework's output.
ABSOLUTE_TOLERANCE = 1e-2
RELATIVE_TOLERANCE = 1e-4
# No pixel may exceed the tolerance: a single one off means a different network.
MISMATCHED_PER_MILLION = 0
COVER_SCALE = 4
INPUT_ID = "noisy"
OUTPUT_ID = "denoised"
NOISE2VOID_CITATION = {
    "text": "Krull, Buchholz and Jug: Noise2Void - Learning Denoising from Single Noisy "
    "Images. CVPR 2019",
    "doi": "10.1109/CVPR.2019.00223",
}
BSDS_CITATION = {
    "text": "Martin, Fowlkes, Tal and Malik: A Database of Human Segmented Natural Images and "
    "its Application to Evaluating Segmentation Algorithms and Measuring Ecological "
    "Statistics. ICCV 2001 (BSDS; training and test images)",
    "doi": "10.1109/ICCV.2001.937655",
}
TRAIN_SET_TEXT = {
    "bsd400": "BSD400: the 400 BSDS500 train + test images, grey, whole (481 x 321)",
    "train400": "Train400 (DnCNN): 400 grey 180 x 180 crops of the BSD400 images",
}
# What the network learnt from (the recipe's train.method; n2v where a config has no method
# key): the README's first sentence and the citation of the method.
METHODS = {
    "n2v": (
        "Noise2Void network (Krull, Buchholz and Jug, CVPR 2019), trained self-supervised on "
        "the noisy images alone (blind-spot masking),",
        NOISE2VOID_CITATION,
    ),
    "n2v2": (
        "N2V2 network (Hoeck et al., ECCV Workshops 2022; Noise2Void without its checkerboard "
        "artefacts), trained self-supervised on the noisy images alone,",
        {
            "text": "Hoeck, Buchholz, Dibrov, Jug: N2V2 - Fixing Noise2Void Checkerboard "
            "Artifacts with Modified Sampling Strategies and a Tweaked Network Architecture. "
            "ECCV Workshops 2022",
            "doi": "10.1007/978-3-031-25069-9_33",
        },
    ),
    "n2n": (
        "Noise2Noise network (Lehtinen et al., ICML 2018), trained on pairs of independent "
        "noisy realisations of the training images,",
        {
            "text": "Lehtinen, Munkberg, Hasselgren, Laine, Karras, Aittala, Aila: Noise2Noise: "
            "Learning Image Restoration without Clean Data. ICML 2018",
            "url": "https://proceedings.mlr.press/v80/lehtinen18a.html",
        },
    ),
    "n2c": (
        "supervised denoising network (noisy input, clean target; the paper's N2C baseline),",
        NOISE2VOID_CITATION,
    ),
}
WEIGHTS_TEXT = {
    "last": "the last epoch's weights",
    "best": "the weights of the lowest validation loss",
}


class BmzExportError(UserError, RuntimeError):
    """An input of the export is missing or inconsistent (the message names the file)."""


class BmzValidationError(UserError, RuntimeError):
    """`bioimageio test` did not pass; the message holds the validator's failures."""


@dataclass(frozen=True)
class RunInfo:
    """What the package says about the model it holds."""

    recipe: str
    framework: str
    sigma: int
    seed: int
    weights: str
    arch: str
    train_set: str
    validation: str
    authors: tuple[Mapping[str, str], ...]
    method: str = "n2v"

    @property
    def name(self) -> str:
        # bioimage.io names: letters, digits, spaces and a few marks; no slash.
        return (
            f"N2V BSD68 {self.recipe} {self.framework} sigma{self.sigma} seed{self.seed} "
            f"{self.weights}"
        )

    @property
    def stem(self) -> str:
        return (
            f"n2v_{self.recipe}_{self.framework}_sigma{self.sigma}_seed{self.seed}_{self.weights}"
        )


# --- weights --------------------------------------------------------------------------------


def _load_arch_module(path: Path) -> Any:
    """Import the generated arch.py from its file, as bioimage.io does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bmz_arch_{os.getpid()}", path)
    if spec is None or spec.loader is None:
        raise BmzExportError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_torch_model(arch_file: Path, arch: str, weights: Mapping[str, np.ndarray]) -> Any:
    """Build the network of the package's arch.py with `weights`, in eval mode."""
    import torch

    model = getattr(_load_arch_module(arch_file), ARCH_CALLABLE)(arch=arch)
    state = {name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked is not part of the framework-neutral weights.
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise BmzExportError(
            f"weights do not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval()


def write_state_dict(model: Any, path: Path) -> None:
    import torch

    torch.save(model.state_dict(), path)


def write_torchscript(model: Any, example: np.ndarray, path: Path) -> None:
    """Trace the network: every arch is a fixed graph of convs (no data-dependent control)."""
    import torch

    with torch.no_grad():
        traced = torch.jit.trace(model, torch.from_numpy(example), check_trace=False)
    traced.save(str(path))


def write_onnx(model: Any, example: np.ndarray, path: Path) -> str | None:
    """Export to ONNX with free batch and spatial sizes; return why not, or None if it did.

    The TorchScript-based exporter (dynamo=False) handles every arch here in one pass and
    gives a single self-contained file; the output must match PyTorch's on the test input
    (onnxruntime), else the entry is left out.
    """
    import torch

    try:
        import onnxruntime
    except ImportError as error:
        return f"onnxruntime is not installed ({error})"
    axes = {0: "batch", 2: "y", 3: "x"}
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (torch.from_numpy(example),),
                str(path),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": axes, "output": axes},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
            expected = model(torch.from_numpy(example)).numpy()
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": example})
    except Exception as error:  # noqa: BLE001 - any exporter failure means "no onnx entry"
        path.unlink(missing_ok=True)
        first_line = str(error).splitlines()[0] if str(error) else ""
        # The exporter's messages run to whole graphs: the README and log get its gist.
        return f"{type(error).__name__}: {first_line[:ONNX_NOTE_CHARS]}"
    difference = float(np.max(np.abs(got - expected)))
    # In normalised units; 1e-4 is ~0.006 grey levels at the BSD400 std of ~60.
    if not np.isfinite(difference) or difference > 1e-4:
        path.unlink(missing_ok=True)
        return f"onnxruntime's output differs from PyTorch's by {difference:.3g} (normalised)"
    return None


# --- documentation and cover ----------------------------------------------------------------


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_cover(noisy: np.ndarray, denoised: np.ndarray, path: Path) -> None:
    """Input | output side by side (2:1, as bioimage.io asks), enlarged without smoothing."""
    pair = np.concatenate([_to_uint8(noisy), _to_uint8(denoised)], axis=1)
    image = Image.fromarray(pair)
    image = image.resize(
        (pair.shape[1] * COVER_SCALE, pair.shape[0] * COVER_SCALE), Image.Resampling.NEAREST
    )
    image.save(path)


def bsd68_rows(summary: Mapping[str, Any], weights: str) -> list[dict[str, Any]]:
    """Return the evaluation's BSD68 rows of these weights: test set, images, PSNR and SSIM."""
    rows = []
    for test_set, by_weights in summary.get("test_sets", {}).items():
        if weights in by_weights:
            row = by_weights[weights]
            rows.append(
                {
                    "test_set": test_set,
                    "n": int(row["n"]),
                    "psnr_mean": float(row["psnr_mean"]),
                    "psnr_std": float(row["psnr_std"]),
                    "ssim_mean": float(row["ssim_mean"]),
                    "ssim_std": float(row["ssim_std"]),
                }
            )
    return rows


TEST_SET_TEXT = {
    "bsd68": "all BSD68 images",
    "bsd68_test": "the BSD68 test half (the images the port's BSD68 split did not validate on)",
}


def citations_of(method: str) -> list[dict[str, str]]:
    """Return the method's paper, Noise2Void's (the experiment reproduced) and the data's."""
    entries = [METHODS.get(method, METHODS["n2v"])[1], NOISE2VOID_CITATION, BSDS_CITATION]
    return [dict(entry) for entry in {entry["text"]: entry for entry in entries}.values()]


def use_snippet(package: str) -> str:
    """Return the README's lines that denoise a (y, x) `image` with the package.

    bioimageio.core's predict takes y and x only on the input's step and pads only by a halo,
    so the lines reflect-pad as `evaluation.predict.reflect_pad` does, and crop back.
    """
    return f"""import numpy as np
from bioimageio.core import load_model_description, predict

model = load_model_description("{package}")
step = model.inputs[0].axes[2].size.step  # y and x must be multiples of it
h, w = image.shape
ph, pw = -h % step, -w % step  # padding, split as the pipeline splits it
padded = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
output = predict(model=model, inputs={{"{INPUT_ID}": padded[None, None]}}).members["{OUTPUT_ID}"]
denoised = np.asarray(output.data)[0, 0, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
"""


def readme_use_lines(readme: str, package: str | Path) -> str:
    """Return a README's one python block (`use_snippet`'s lines), pointed at `package`."""
    (block,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    return re.sub(r'"n2v_\w+\.zip"', repr(str(package)), block)


def readme_text(
    info: RunInfo,
    *,
    mean: float,
    std: float,
    n_train_images: int | None,
    rows: Sequence[Mapping[str, Any]],
    origin: Mapping[str, str],
    weight_formats: Sequence[str],
    onnx_note: str | None,
) -> str:
    """Return the package's README.md."""
    results = "\n".join(
        f"| {TEST_SET_TEXT.get(r['test_set'], r['test_set'])} | {r['n']} | "
        f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | {r['ssim_mean']:.4f} ± {r['ssim_std']:.4f} |"
        for r in rows
    )
    if not rows:
        results = "| (no BSD68 row for these weights in the evaluation) | | | |"
    images = f"this run trained on {n_train_images} of them" if n_train_images else "as configured"
    validation = (
        "held-out noisy training images (no BSD68 image chose the weights)"
        if info.validation == "heldout_train"
        else "the validation half of BSD68 (the original port's protocol)"
    )
    onnx = f"\nNo ONNX weights: {onnx_note}\n" if onnx_note else ""
    title = f"{info.arch}, recipe `{info.recipe}`, {info.framework}, sigma {info.sigma}"
    trained = (
        f"{info.framework} (the weights are framework-neutral; this package runs them in PyTorch)"
    )
    data = (
        f"{TRAIN_SET_TEXT.get(info.train_set, info.train_set)} ({images}), with one fixed "
        f"realisation of Gaussian noise (sigma {info.sigma}), unclipped"
    )
    stride = ARCH_STRIDE[info.arch]
    run = f"{info.recipe}/{info.framework}/sigma{info.sigma}/seed{info.seed}"
    evaluation = f"results/{run}/eval/summary.json"
    source = f"{origin.get('kind', 'noisy training image')}, image {origin.get('image_id', '?')}"
    citations = "\n".join(
        f"- {entry['text']}, " + (f"doi:{entry['doi']}" if "doi" in entry else entry["url"])
        for entry in citations_of(info.method)
    )
    what, _ = METHODS.get(info.method, METHODS["n2v"])
    paper_psnr = method_paper_psnr(info.method, "bsd68", info.sigma)
    paper = (
        f"The Noise2Void paper ({METHOD_PAPER_CITATION}) reports {paper_psnr:.2f} dB for "
        f"{info.method.upper()} on all of BSD68 at sigma {info.sigma}, with its own recipe."
        if paper_psnr is not None
        else f"The Noise2Void paper has no BSD68 number for {info.method.upper()} at sigma "
        f"{info.sigma}."
    )
    return f"""# {info.method.upper()} denoiser: {title}

A {what} to remove additive Gaussian noise of standard deviation {info.sigma} grey levels
from 8-bit grey images. Exported by the n2v_repro pipeline, which reproduces the Noise2Void
paper's BSD68 experiment (Krull, Buchholz and Jug, CVPR 2019) in PyTorch and Jittor.

| | |
| --- | --- |
| recipe | `{info.recipe}` (the pipeline's config/config.yaml, recipe_book) |
| method | `{info.method}` |
| network | `{info.arch}` (arch.py, `build_model(arch="{info.arch}")`) |
| trained with | {trained} |
| noise sigma | {info.sigma} (grey levels of 8-bit images) |
| training seed | {info.seed} |
| weights | {info.weights}: {WEIGHTS_TEXT.get(info.weights, info.weights)} |
| training data | {data} |
| validation | {validation} |
| normalisation | z-score with the training set's mean {mean:.4f} and std {std:.4f}, and back |
| weight formats | {", ".join(weight_formats)} |
{onnx}
## Input and output

One grey image, axes (batch, channel, y, x), float32 grey levels (0-255 for 8-bit images),
y and x multiples of {stride} (the network's stride). The package normalises the input with
the training statistics (`fixed_zero_mean_unit_variance`) and maps the output back to grey
levels (`scale_linear`); the output is not clipped. No halo is declared: the pipeline scored
whole images, and tiles (`blocksize_parameter`) would meet without overlap.

## Validation

BSD68 (the test set: none of its images was used for training) with the same noise, whole
images, PSNR against the clean 8-bit image (data range 255), from the pipeline's evaluation
of these weights ({evaluation}):

| test set | images | PSNR (dB), mean ± std over images | SSIM |
| --- | --- | --- | --- |
{results}

{paper}

The package's test input: {source}. Its test output is {info.framework}'s own prediction
of it (CPU, float32); `bioimageio test` reproduces it with every weight format of this
package within {ABSOLUTE_TOLERANCE} grey levels + {RELATIVE_TOLERANCE} x |output|, at every pixel.

## Use

With `bioimageio.core` 0.11 (`pip install bioimageio.core==0.11.0 "pydantic<2.14" torch`;
with pydantic 2.14 it cannot open a package), on a float32 (y, x) image of any size (a BSD68
image is 321 x 481). `predict` refuses y or x off the step of {stride} (it pads only by a
declared halo), so these lines pad as the pipeline's evaluation did (reflect, the odd pixel
at the bottom and right) and crop back: the result is the pipeline's prediction.

```python
{use_snippet(info.stem + ".zip")}```

## Licence and data

The weights and code are under the {LICENSE} licence. The test image and the cover are
derived from the Berkeley Segmentation Dataset (BSDS500), which its authors provide for
non-commercial research and educational purposes.

## Citation

{citations}
"""


# --- the description ------------------------------------------------------------------------


def model_description(
    info: RunInfo,
    folder: Path,
    *,
    mean: float,
    std: float,
    files: Mapping[str, str],
    weight_formats: Sequence[str],
) -> Any:
    """Return the bioimage.io ModelDescr (format 0.5) of the files in `folder`."""
    import torch
    from bioimageio.spec.model import v0_5

    stride = ARCH_STRIDE[info.arch]
    size = v0_5.ParameterizedSize(min=stride, step=stride)

    def input_axes() -> list[Any]:
        return [
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[v0_5.Identifier("gray")]),
            v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=size),
            v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=size),
        ]

    def output_axes() -> list[Any]:
        def ref(axis: str) -> Any:
            return v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis))

        return [
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[v0_5.Identifier("gray")]),
            v0_5.SpaceOutputAxis(id=v0_5.AxisId("y"), size=ref("y")),
            v0_5.SpaceOutputAxis(id=v0_5.AxisId("x"), size=ref("x")),
        ]

    inputs = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID),
        description=f"noisy grey image (grey levels, 8-bit range), sigma {info.sigma} noise",
        axes=input_axes(),
        test_tensor=v0_5.FileDescr(source=folder / files["test_input"]),
        sample_tensor=v0_5.FileDescr(source=folder / files["sample_input"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
            v0_5.FixedZeroMeanUnitVarianceDescr(
                kwargs=v0_5.FixedZeroMeanUnitVarianceKwargs(mean=mean, std=std)
            ),
        ],
    )
    outputs = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(OUTPUT_ID),
        description="denoised grey image (grey levels, unclipped)",
        axes=output_axes(),
        test_tensor=v0_5.FileDescr(source=folder / files["test_output"]),
        sample_tensor=v0_5.FileDescr(source=folder / files["sample_output"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=[
            v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(gain=std, offset=mean)),
            v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
        ],
    )
    pytorch_version = v0_5.Version(torch.__version__.split("+")[0])
    entries: dict[str, Any] = {
        "pytorch_state_dict": v0_5.PytorchStateDictWeightsDescr(
            source=folder / files["state_dict"],
            architecture=v0_5.ArchitectureFromFileDescr(
                source=folder / files["arch"],
                callable=v0_5.Identifier(ARCH_CALLABLE),
                kwargs={"arch": info.arch},
            ),
            pytorch_version=pytorch_version,
            comment=f"trained in {info.framework}; framework-neutral weights loaded into PyTorch",
        ),
        "torchscript": v0_5.TorchscriptWeightsDescr(
            source=folder / files["torchscript"],
            pytorch_version=pytorch_version,
            parent="pytorch_state_dict",
            comment="torch.jit.trace of the pytorch_state_dict network",
        ),
    }
    if "onnx" in weight_formats:
        entries["onnx"] = v0_5.OnnxWeightsDescr(
            source=folder / files["onnx"],
            opset_version=ONNX_OPSET,
            parent="pytorch_state_dict",
            comment="torch.onnx.export of the pytorch_state_dict network",
        )
    tolerance = v0_5.ReproducibilityTolerance(
        absolute_tolerance=ABSOLUTE_TOLERANCE,
        relative_tolerance=RELATIVE_TOLERANCE,
        mismatched_elements_per_million=MISMATCHED_PER_MILLION,
    )
    return v0_5.ModelDescr(
        name=info.name,
        description=(
            f"{info.method.upper()} ({info.arch}) for Gaussian noise sigma {info.sigma} on "
            f"8-bit grey images; BSD68 reproduction, recipe {info.recipe}, trained in "
            f"{info.framework} (seed {info.seed}, {info.weights} weights)."
        ),
        authors=[v0_5.Author(**dict(author)) for author in info.authors],
        cite=[v0_5.CiteEntry(**entry) for entry in citations_of(info.method)],
        license=v0_5.LicenseId(LICENSE),
        documentation=v0_5.FileDescr(source=folder / files["readme"]),
        covers=[v0_5.FileDescr(source=folder / files["cover"])],
        tags=list(
            dict.fromkeys(
                ["noise2void", "denoising", "2d", "natural-images", "bsd68", info.method]
                + (["self-supervised"] if info.method in ("n2v", "n2v2", "n2n") else [])
                + ["pytorch", info.framework]
            )
        ),
        inputs=[inputs],
        outputs=[outputs],
        weights=v0_5.WeightsDescr(**entries),
        config=v0_5.Config(bioimageio=v0_5.BioimageioConfig(reproducibility_tolerance=[tolerance])),
    )


# --- validation -----------------------------------------------------------------------------


def _failures(summary: Any) -> list[str]:
    """One line per failed check of a ValidationSummary: its name, location and message."""
    lines = []
    for detail in summary.details:
        if detail.status == "passed":
            continue
        for error in detail.errors or [None]:
            if error is None:
                lines.append(f"{detail.name}: {detail.status}")
            else:
                location = ".".join(str(part) for part in error.loc) if error.loc else ""
                message = " ".join(str(error.msg).split())
                lines.append(f"{detail.name}: {location + ': ' if location else ''}{message}")
    return lines


def validate_package(package: str | Path) -> dict[str, Any]:
    """Run `bioimageio test` on the package; return its status, checks and failures."""
    from bioimageio.core import test_model

    summary = test_model(str(package))
    return {
        "status": summary.status,
        "format_version": str(summary.format_version),
        "checks": [{"name": detail.name, "status": detail.status} for detail in summary.details],
        "failures": _failures(summary),
        "warnings": [
            f"{detail.name}: {' '.join(str(w.msg).split())}"
            for detail in summary.details
            for w in detail.warnings
        ],
        "env": {package_name: version for package_name, version in _versions().items()},
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("bioimageio.core", "bioimageio.spec", "torch", "onnxruntime", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def reproduction(
    package: str | Path, test_input: np.ndarray, expected: np.ndarray
) -> dict[str, dict[str, float]]:
    """Each weight format's package output on the test input against the expected output.

    The numbers behind `bioimageio test`'s pass: for a Jittor-trained package, PyTorch (and
    ONNX) running the package vs Jittor's own prediction.
    """
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    descr = load_model_description(str(package))
    numbers = {}
    for weight_format, entry in descr.weights:
        if entry is None:
            continue
        pipeline = create_prediction_pipeline(descr, weight_format=weight_format, devices=["cpu"])
        sample = predict(model=pipeline, inputs={INPUT_ID: test_input})
        got = np.asarray(sample.members[OUTPUT_ID].data, dtype=np.float64)
        difference = np.abs(got - expected.astype(np.float64))
        numbers[weight_format] = {
            "max_abs_diff": float(difference.max()),
            "mean_abs_diff": float(difference.mean()),
            "max_rel_diff": float((difference / np.maximum(np.abs(expected), 1e-12)).max()),
        }
    return numbers


# --- the whole export -----------------------------------------------------------------------


def export_package(
    *,
    info: RunInfo,
    weights_npz: str | Path,
    tensors_npz: str | Path,
    stats_json: str | Path,
    eval_summary: str | Path,
    package: str | Path,
    validation_json: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Write the package zip and its validation summary; raise if validation fails.

    The zip is written under a temporary name and renamed only after it passed, so a failed
    validation leaves no package; the summary is written either way, and logged (in the
    pipeline, Snakemake removes a failed job's outputs; its log keeps the summary).
    """
    import torch
    from bioimageio.spec import save_bioimageio_package

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    package, validation_json = Path(package), Path(validation_json)
    weights = load_weights(weights_npz)
    test_input, expected, origin = read_test_tensors(tensors_npz, info.weights)
    mean, std = read_train_stats(stats_json)
    stats = json.loads(Path(stats_json).read_text())
    summary = read_eval_summary(eval_summary)
    for key, value in (("arch", info.arch), ("framework", info.framework)):
        if summary.get(key) != value:
            raise BmzExportError(f"{eval_summary}: {key} is {summary.get(key)!r}, not {value!r}")
    files = {
        "arch": "arch.py",
        "state_dict": "weights.pt",
        "torchscript": "weights_torchscript.pt",
        "onnx": "weights.onnx",
        "test_input": "test_input.npy",
        "test_output": "test_output.npy",
        "sample_input": "sample_input.tif",
        "sample_output": "sample_output.tif",
        "cover": "cover.png",
        "readme": "README.md",
    }
    with tempfile.TemporaryDirectory(prefix="bmz-") as tmp:
        folder = Path(tmp)
        write_arch_source(folder / files["arch"])
        model = build_torch_model(folder / files["arch"], info.arch, weights)
        write_state_dict(model, folder / files["state_dict"])
        # The networks see normalised input: trace and export on the normalised test image.
        example = ((test_input - np.float32(mean)) / np.float32(std)).astype(np.float32)
        write_torchscript(model, example, folder / files["torchscript"])
        onnx_note = write_onnx(model, example, folder / files["onnx"])
        if onnx_note:
            log.warning("no ONNX weights for %s: %s", info.stem, onnx_note)
        formats = ["pytorch_state_dict", "torchscript"] + ([] if onnx_note else ["onnx"])
        np.save(folder / files["test_input"], test_input)
        np.save(folder / files["test_output"], expected)
        # The same pair as float32 TIFFs: bioimage.io's sample tensors, for people and viewers.
        Image.fromarray(test_input[0, 0]).save(folder / files["sample_input"])
        Image.fromarray(expected[0, 0]).save(folder / files["sample_output"])
        write_cover(test_input[0, 0], expected[0, 0], folder / files["cover"])
        (folder / files["readme"]).write_text(
            readme_text(
                info,
                mean=mean,
                std=std,
                n_train_images=stats.get("n_images"),
                rows=bsd68_rows(summary, info.weights),
                origin=origin,
                weight_formats=formats,
                onnx_note=onnx_note,
            )
        )
        descr = model_description(
            info,
            folder,
            mean=mean,
            std=std,
            files=files,
            weight_formats=formats,
        )
        package.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(package, suffix=".tmp.zip") as tmp_zip:
            seconds = {"write": time.perf_counter() - start}
            save_bioimageio_package(descr, output_path=tmp_zip)
            seconds["package"] = time.perf_counter() - start - sum(seconds.values())
            result = validate_package(tmp_zip)
            seconds["bioimageio_test"] = time.perf_counter() - start - sum(seconds.values())
            result["reproduction"] = reproduction(tmp_zip, test_input, expected)
            seconds["reproduction"] = time.perf_counter() - start - sum(seconds.values())
            result |= {
                "seconds": seconds,
                "package": package.name,
                "recipe": info.recipe,
                "framework": info.framework,
                "sigma": info.sigma,
                "seed": info.seed,
                "weights": info.weights,
                "weight_formats": formats,
                "onnx_note": onnx_note,
                "tolerance": {
                    "absolute": ABSOLUTE_TOLERANCE,
                    "relative": RELATIVE_TOLERANCE,
                    "mismatched_per_million": MISMATCHED_PER_MILLION,
                },
                "test_input": origin,
            }
            write_json(validation_json, result)
            # In the job's log too: Snakemake deletes a failed job's outputs, this JSON included.
            log.info("bioimageio test of %s:\n%s", package.name, json.dumps(result, indent=1))
            if result["status"] != "passed":
                raise BmzValidationError(
                    f"bioimageio test failed for {package}: " + "; ".join(result["failures"])
                )
    return result
