"""Denoise a user's own grey images with trained weights (`python -m n2v_repro.cli.denoise`).

The arch and the normalisation come from the `model.json` that training writes beside the
weights (models/card.py). Images are 8- or 16-bit grey PNG or TIFF (colour is converted to
grey with the pipeline's rgb2gray weights; JPEG is read too). The network was trained on
8-bit grey levels, so a 16-bit image is scaled to 0-255 for the network and back; the
output keeps the input's bit depth and format (a JPEG input gives a PNG).

An image no larger than `tile` is predicted whole, exactly as the pipeline's evaluation
(predict.predict_image). A larger one is cut into tile x tile blocks, each predicted with
`overlap` pixels of context on every side, which are then dropped.

`--add-noise SIGMA` adds the pipeline's Gaussian noise (data/noise.py: one stream per
(seed, sigma, file stem)), so with the training seed a BSD68 PNG gets exactly the pipeline's
noisy version. PSNR/SSIM (8-bit data range, unclipped prediction, as the evaluation) are
reported against `--clean`, or against the input itself when noise was added.

Nothing is written until every image is denoised: outputs go to a staging folder beside the
output folder and are moved in at the end; on any error the staging folder is removed.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from n2v_repro.data.gray import rgb_to_gray
from n2v_repro.data.noise import add_gaussian_noise
from n2v_repro.data.transforms import check_stats, denormalise, normalise
from n2v_repro.errors import UserError
from n2v_repro.evaluation.metrics import psnr, ssim
from n2v_repro.evaluation.predict import Predictor, predict_image, read_train_stats, reflect_pad
from n2v_repro.io.formats import FormatError, UnusableWeightsError, load_weights
from n2v_repro.models.card import ModelCardError, card_path, read_model_card
from n2v_repro.models.spec import ARCHS, parameter_shapes

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MAX_8BIT, MAX_16BIT = 255.0, 65535.0
METRICS_CSV = "metrics.csv"
METRIC_COLUMNS = ("image", "noisy_psnr", "noisy_ssim", "psnr", "ssim")


class DenoiseError(UserError, RuntimeError):
    """A user's mistake: the message names the file or option."""


# --- model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    arch: str
    mean: float
    std: float
    weights: dict[str, np.ndarray]
    trained_with: str | None  # framework, from model.json
    seed: int | None  # the training seed: the pipeline's noise seed


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """io.formats.load_weights, its errors worded for the command's user."""
    if not path.is_file():
        raise DenoiseError(f"weights file {path} not found")
    try:
        return load_weights(path)
    except UnusableWeightsError as error:
        raise DenoiseError(f"{error}: use weights of a run that trained normally") from None
    except (OSError, FormatError) as error:
        raise DenoiseError(
            f"{path} is not a weights file (an .npz written by training, e.g. "
            f"results/cpu/torch/sigma25/seed123/model/best.npz): "
            f"{str(error).removeprefix(f'{path}: ')}"
        ) from None


def fitting_archs(weights: dict[str, np.ndarray]) -> list[str]:
    """List the archs whose parameter names and shapes these weights have."""
    shapes = {name: tuple(array.shape) for name, array in weights.items()}
    return [arch for arch in ARCHS if parameter_shapes(arch) == shapes]


def check_fit(arch: str, weights: dict[str, np.ndarray], path: Path, source: str) -> None:
    from n2v_repro.backends.base import check_weights

    try:
        check_weights(arch, weights)
    except ValueError as error:
        fits = fitting_archs(weights)
        hint = f"; they are {fits[0]} weights" if fits else ""
        detail = str(error)
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise DenoiseError(
            f"arch mismatch: {path} does not fit {arch} ({source}){hint}. {detail}"
        ) from None


def load_model(
    weights_path: str | Path, arch: str | None = None, stats_path: str | Path | None = None
) -> Model:
    """Weights plus the arch and normalisation from the model.json beside them.

    Without a model.json (weights trained before it existed) `arch` and `stats_path` (the
    pipeline's train_stats.json) must be given; with one, a given `arch` must agree with it.
    """
    path = Path(weights_path)
    weights = read_weights(path)
    card_file = card_path(path)
    if card_file.exists():
        try:
            card = read_model_card(card_file)
        except ModelCardError as error:
            raise DenoiseError(str(error)) from None
        if arch is not None and arch != card.arch:
            raise DenoiseError(
                f"arch mismatch: --arch {arch}, but {card_file} says these weights are "
                f"{card.arch}; leave --arch out to use {card.arch}"
            )
        mean, std = card.mean, card.std
        if stats_path is not None:
            mean, std = _read_stats(Path(stats_path))
        check_fit(card.arch, weights, path, f"from {card_file}")
        return Model(card.arch, mean, std, weights, card.framework, card.seed)
    if arch is None or stats_path is None:
        raise DenoiseError(
            f"no {card_file.name} beside {path} (training writes it with the arch and the "
            f"normalisation); for older weights give --arch and --stats "
            f"(resources/patches/<data tag>/sigma<S>/train_stats.json, e.g. "
            f"resources/patches/train400_heldout4/sigma25/train_stats.json)"
        )
    if arch not in ARCHS:
        raise DenoiseError(f"--arch {arch}: unknown; expected one of {', '.join(ARCHS)}")
    mean, std = _read_stats(Path(stats_path))
    check_fit(arch, weights, path, "--arch")
    return Model(arch, mean, std, weights, None, None)


def _read_stats(path: Path) -> tuple[float, float]:
    try:
        return check_stats(*read_train_stats(path))
    except FileNotFoundError:
        raise DenoiseError(f"--stats {path} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DenoiseError(f"--stats {path}: not a train_stats.json ({error})") from None


# --- images ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserImage:
    path: Path
    pixels: np.ndarray  # float32 (H, W), in 8-bit grey levels (0-255)
    bit_depth: int  # 8 or 16
    was_colour: bool


def find_images(source: str | Path) -> list[Path]:
    """One image file, or the image files of a folder (not recursive), sorted by name."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _is_image_name(p))
        if not files:
            raise DenoiseError(f"no {'/'.join(IMAGE_SUFFIXES)} images in folder {path}")
        return files
    if path.is_file():
        return [path]
    raise DenoiseError(f"input {path} not found")


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path) -> UserImage:
    """Decode the whole image now, so that a truncated file fails before any output."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise DenoiseError(f"{path}: multi-page images are not supported")
            image.load()
            mode = image.mode
            if mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
                mode = image.mode
            array = np.asarray(image)
    except DenoiseError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise DenoiseError(f"cannot read image {path}: {error}") from None
    was_colour = False
    if mode in ("L", "LA"):
        gray, depth = (array[..., 0] if mode == "LA" else array), 8
    elif mode in ("RGB", "RGBA"):
        gray, depth, was_colour = rgb_to_gray(np.ascontiguousarray(array[..., :3])), 8, True
    elif mode.startswith("I;16") or (mode == "I" and _fits_16_bits(array)):
        gray, depth = array.astype(np.uint16), 16
    else:
        raise DenoiseError(
            f"{path}: image mode {mode} is not supported; use 8- or 16-bit grey (or RGB)"
        )
    if min(gray.shape) < 2:
        raise DenoiseError(f"{path}: image of {gray.shape[1]}x{gray.shape[0]} is too small")
    scale = 1.0 if depth == 8 else MAX_8BIT / MAX_16BIT
    pixels = (gray.astype(np.float64) * scale).astype(np.float32)
    return UserImage(path, pixels, depth, was_colour)


def read_images(paths: Sequence[Path]) -> list[UserImage]:
    """Decode every image; one error naming each image that cannot be used."""
    images, problems = [], []
    for path in paths:
        try:
            images.append(read_image(path))
        except DenoiseError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise DenoiseError(problems[0])
    if problems:
        raise DenoiseError(
            f"{len(problems)} of {len(paths)} images unusable: " + "; ".join(problems)
        )
    return images


def _fits_16_bits(array: np.ndarray) -> bool:
    # Some readers give 16-bit PNGs as 32-bit "I"; anything beyond 16 bits is not ours.
    return array.size > 0 and int(array.min()) >= 0 and int(array.max()) <= MAX_16BIT


def from_units(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """8-bit grey levels -> the image's own integer type, clipped and rounded (for saving)."""
    if bit_depth == 8:
        return np.clip(np.rint(values), 0, MAX_8BIT).astype(np.uint8)
    scaled = np.asarray(values, np.float64) * (MAX_16BIT / MAX_8BIT)
    return np.clip(np.rint(scaled), 0, MAX_16BIT).astype(np.uint16)


def output_name(path: Path, tag: str = "") -> str:
    suffix = path.suffix.lower()
    suffix = ".png" if suffix in (".jpg", ".jpeg") else path.suffix
    return f"{path.stem}{tag}{suffix}"


def write_image(path: Path, values: np.ndarray) -> None:
    Image.fromarray(values).save(path)


# --- prediction -----------------------------------------------------------------------------


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def predict_tiled(
    backend: Predictor, noisy: np.ndarray, mean: float, std: float, tile: int, overlap: int
) -> np.ndarray:
    """Denoise (H, W) grey levels; whole when it fits in one tile, else block by block."""
    height, width = noisy.shape
    if height <= tile and width <= tile:
        return predict_image(backend, noisy, mean, std)
    # Block origins on multiples of the stride keep the pooling grid of each block aligned
    # with the whole image's, so the blocks agree with a whole-image prediction more closely.
    tile = _round_up(tile, backend.stride)
    overlap = _round_up(overlap, backend.stride)
    normalised = normalise(noisy, mean, std)
    out = np.empty((height, width), np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(height, bottom + overlap), min(width, right + overlap)
            block = normalised[y0:y1, x0:x1]
            padded, crop = reflect_pad(block, backend.stride)
            pred = backend.predict(np.ascontiguousarray(padded[None, None]))[0, 0][crop]
            out[top:bottom, left:right] = pred[top - y0 : bottom - y0, left - x0 : right - x0]
    return denormalise(out, mean, std)


# --- the command ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiseOptions:
    weights: Path
    input: Path
    output: Path
    framework: str | None = None  # None: the framework that trained the weights (or torch)
    device: str = "auto"
    threads: int | None = None
    arch: str | None = None
    stats: Path | None = None
    tile: int = 512
    overlap: int = 64
    add_noise: int | None = None
    seed: int | None = None  # None: the training seed from model.json (or 0)
    clean: Path | None = None


@dataclass
class Result:
    image: str
    outputs: list[str]
    metrics: dict[str, float] | None


def _check_options(options: DenoiseOptions) -> None:
    if options.tile < 16:
        raise DenoiseError(f"--tile {options.tile}: must be at least 16")
    if options.overlap < 0:
        raise DenoiseError(f"--overlap {options.overlap}: must be >= 0")
    if options.add_noise is not None and options.add_noise <= 0:
        raise DenoiseError(f"--add-noise {options.add_noise}: sigma must be positive")
    if options.seed is not None and options.seed < 0:
        raise DenoiseError(f"--seed {options.seed}: must be >= 0")
    if options.output.exists() and not options.output.is_dir():
        raise DenoiseError(f"--output {options.output} exists and is not a folder")


def _clean_references(images: Sequence[Path], clean: Path | None) -> dict[Path, Path]:
    """Match each input with its clean image.

    That is `clean` itself for one input file, else the file of the `clean` folder with the
    same name, or failing that the same stem (a.jpg <- a.png).
    """
    if clean is None:
        return {}
    if clean.is_file():
        if len(images) != 1:
            raise DenoiseError(f"--clean {clean} is one file, but the input has {len(images)}")
        return {images[0]: clean}
    if not clean.is_dir():
        raise DenoiseError(f"--clean {clean} not found")
    candidates = [p for p in sorted(clean.iterdir()) if p.is_file() and _is_image_name(p)]
    by_name = {p.name: p for p in candidates}
    by_stem: dict[str, Path] = {}
    for path in candidates:
        by_stem.setdefault(path.stem, path)
    references = {p: by_name.get(p.name) or by_stem.get(p.stem) for p in images}
    missing = [p.name for p, ref in references.items() if ref is None]
    if missing:
        raise DenoiseError(f"--clean {clean} has no image for {', '.join(missing[:10])}")
    return {p: ref for p, ref in references.items() if ref is not None}


def _plan_outputs(images: Sequence[Path], options: DenoiseOptions) -> dict[Path, list[str]]:
    names: dict[Path, list[str]] = {}
    seen: dict[str, Path] = {}
    inputs = {p.resolve() for p in images}
    for path in images:
        outs = [output_name(path)]
        if options.add_noise is not None:
            outs.append(output_name(path, "_noisy"))
        for name in outs:
            if name in seen:
                raise DenoiseError(f"{path.name} and {seen[name].name} would both write {name}")
            if (options.output / name).resolve() in inputs:
                raise DenoiseError(f"--output {options.output}: {name} would overwrite an input")
            seen[name] = path
        names[path] = outs
    return names


def make_predictor(model: Model, options: DenoiseOptions) -> Predictor:
    framework = options.framework or model.trained_with or "torch"
    from n2v_repro.backends.registry import FRAMEWORKS, make_backend

    if framework not in FRAMEWORKS:
        raise DenoiseError(f"--framework {framework}: expected one of {', '.join(FRAMEWORKS)}")
    try:
        backend = make_backend(framework, model.arch, options.device, options.threads)
    except ModuleNotFoundError as error:
        raise DenoiseError(
            f"{framework} is not installed in this environment ({error}); "
            f"use --framework with the other one"
        ) from None
    except RuntimeError as error:  # e.g. --device cuda without CUDA
        raise DenoiseError(f"{framework} on --device {options.device}: {error}") from None
    backend.load_weights(model.weights)
    return backend


class _Staging:
    """Outputs are written here and moved into the output folder only when all succeeded.

    The staging folder is made on the output's own file system (inside an existing output
    folder, else beside it), so the final moves are renames, never copies across devices.
    """

    def __init__(self, final: Path):
        self.final = final
        missing = [p for p in final.parents if not p.exists()]
        self.created_parents = missing  # deepest first: removed on failure if still empty
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            where = final if final.is_dir() else final.parent
            self.folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.denoise-", dir=where))
        except (FileExistsError, NotADirectoryError):
            files = [p for p in reversed(final.parents) if p.exists() and not p.is_dir()]
            blocking = files[0] if files else final.parent
            raise DenoiseError(f"--output {final}: {blocking} is a file, not a folder") from None
        except OSError as error:
            raise DenoiseError(f"--output {final}: cannot write there ({error.strerror})") from None

    def commit(self) -> None:
        if not self.final.exists():
            umask = os.umask(0)
            os.umask(umask)
            self.folder.chmod(0o777 & ~umask)  # mkdtemp makes it private
            os.replace(self.folder, self.final)
            return
        for path in sorted(self.folder.iterdir()):
            os.replace(path, self.final / path.name)
        self.folder.rmdir()

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        for parent in self.created_parents:
            try:
                parent.rmdir()
            except OSError:
                break


def run_denoise(
    options: DenoiseOptions,
    backend: Predictor | None = None,
    report: Callable[[str], Any] = print,
) -> list[Result]:
    """Check everything, denoise every image, then move the outputs into `options.output`."""
    _check_options(options)
    model = load_model(options.weights, options.arch, options.stats)
    paths = find_images(options.input)
    names = _plan_outputs(paths, options)
    references = _clean_references(paths, options.clean)
    images = read_images(paths)  # all decoded before anything is written
    clean_images = {p: read_image(c) for p, c in references.items()}
    for image in images:
        if image.was_colour:
            log.warning("%s is colour: denoising its grey version", image.path)
        ref = clean_images.get(image.path)
        if ref is not None and ref.pixels.shape != image.pixels.shape:
            raise DenoiseError(
                f"--clean {ref.path}: {ref.pixels.shape[1]}x{ref.pixels.shape[0]}, but "
                f"{image.path} is {image.pixels.shape[1]}x{image.pixels.shape[0]}"
            )
    seed = options.seed if options.seed is not None else (model.seed or 0)
    if backend is None:
        backend = make_predictor(model, options)
    else:
        backend.load_weights(model.weights)

    staging = _Staging(options.output)
    results: list[Result] = []
    try:
        for image in images:
            outputs = names[image.path]
            reference = clean_images.get(image.path)
            result = _denoise_one(
                image, model, options, seed, backend, staging.folder, outputs, reference
            )
            results.append(result)
            report(_describe(result))
        measured = [r for r in results if r.metrics is not None]
        if measured:
            _write_metrics(staging.folder / METRICS_CSV, measured)
            report(_describe_mean(measured))
        staging.commit()
    except BaseException:
        staging.discard()
        raise
    return results


def _denoise_one(
    image: UserImage,
    model: Model,
    options: DenoiseOptions,
    seed: int,
    backend: Predictor,
    folder: Path,
    names: list[str],
    reference: UserImage | None,
) -> Result:
    noisy = image.pixels
    if options.add_noise is not None:
        noisy = add_gaussian_noise(image.pixels, options.add_noise, seed, image.path.stem)
        reference = reference or image
    pred = predict_tiled(backend, noisy, model.mean, model.std, options.tile, options.overlap)
    if not np.isfinite(pred).all():
        raise DenoiseError(
            f"{image.path}: the network's output holds NaN or infinite values with "
            f"{options.weights}; nothing was written"
        )
    write_image(folder / names[0], from_units(pred, image.bit_depth))
    if options.add_noise is not None:
        write_image(folder / names[1], from_units(noisy, image.bit_depth))
    metrics = None
    if reference is not None:
        metrics = {
            "noisy_psnr": psnr(reference.pixels, noisy),
            "noisy_ssim": ssim(reference.pixels, noisy),
            "psnr": psnr(reference.pixels, pred),
            "ssim": ssim(reference.pixels, pred),
        }
    return Result(image.path.name, names, metrics)


def _describe(result: Result) -> str:
    text = f"{result.image} -> {', '.join(result.outputs)}"
    if result.metrics is not None:
        m = result.metrics
        text += (
            f"  noisy PSNR {m['noisy_psnr']:.2f} dB SSIM {m['noisy_ssim']:.4f}"
            f"  denoised PSNR {m['psnr']:.2f} dB SSIM {m['ssim']:.4f}"
        )
    return text


def _describe_mean(results: Sequence[Result]) -> str:
    rows = [r.metrics for r in results if r.metrics is not None]
    means = {k: float(np.mean([row[k] for row in rows])) for k in METRIC_COLUMNS[1:]}
    return (
        f"mean over {len(results)} images: noisy PSNR {means['noisy_psnr']:.2f} dB "
        f"SSIM {means['noisy_ssim']:.4f}, denoised PSNR {means['psnr']:.2f} dB "
        f"SSIM {means['ssim']:.4f}"
    )


def _write_metrics(path: Path, results: Sequence[Result]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        for r in results:
            if r.metrics is not None:
                writer.writerow([r.image, *(f"{r.metrics[k]:.6f}" for k in METRIC_COLUMNS[1:])])
