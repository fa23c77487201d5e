"""One reader and one writer for each file format the pipeline's steps exchange.

Column lists and key names live here only, so a writer and its readers cannot drift apart.
Readers raise `FormatError` (or FileNotFoundError) naming the file. The formats themselves
are described in docs/architecture.md.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from n2v_repro.errors import UserError
from n2v_repro.io.atomic import atomic_open, atomic_path, save_npz, write_json

PathLike = str | Path
Columns = dict[str, np.ndarray]

SPLIT_COLUMNS = ("id", "subset")
SUBSETS = ("valid", "test")
INDEX_COLUMNS = ("id", "offset", "height", "width")
VALID_TILE_KEYS = ("noisy", "clean", "ids")
# Noise2Noise's validation targets: the tiles' second noise realisation (only in its patch sets).
VALID_NOISY2 = "noisy2"
HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "valid_loss",
    "valid_psnr",
    "valid_ssim",
    "epoch_time_s",
    "patches_per_s",
    "valid_time_s",
    "checkpoint_time_s",
    "wall_time_s",
)
MONITOR_COLUMNS = (
    "time_s",
    "cpu_percent",
    "rss_mib",
    "gpu_util_percent",
    "gpu_mem_mib",
    "framework_mem_mib",
)
MONITOR_HEADER = ",".join(MONITOR_COLUMNS)
PER_IMAGE_COLUMNS = ("id", "subset", "weights", "psnr", "ssim")
EVAL_SUMMARY_KEYS = (
    "recipe",
    "framework",
    "arch",
    "sigma",
    "seed",
    "validation",
    "tta",
    "train_stats",
    "test_sets",
    "inference",
)
# One row per arch and Jittor: each check's named layer (or parameter) with both frameworks'
# measures against float64 and the threshold (parity.DEFINITION); every layer's are in
# parity.json.
PARITY_COLUMNS = (
    "arch",
    "framework",
    "batch_norm_semantics",
    "forward_layer",
    "forward_error_torch",
    "forward_error_jittor",
    "forward_threshold",
    "grad_layer",
    "grad_error_torch",
    "grad_error_jittor",
    "grad_threshold",
    "grad_cosine_jittor",
    "grad_error_jittor_unmatched",
    "kink_flips_torch",
    "kink_flips_jittor",
    "adam_layer",
    "adam_error_torch",
    "adam_error_jittor",
    "adam_threshold",
    "steps",
    "passed",
    "failure",
)


class FormatError(UserError, ValueError):
    """A file does not have the format its reader expects."""


class UnusableWeightsError(FormatError):
    """A weights file holds arrays that are not float32, or NaN or infinite (a diverged run)."""


# --- shared helpers -------------------------------------------------------------------------


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read into memory (object arrays refused)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:  # ValueError: not numpy's
        raise FormatError(f"{path}: not a readable .npz file ({error})") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise FormatError(f"{path}: expected an .npz archive, found a single array")
    with loaded as archive:
        return {key: archive[key] for key in archive.files}


def arrays_under(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Return the arrays stored under ``prefix/`` in a bundle, keyed without the prefix."""
    start = len(prefix) + 1
    return {key[start:]: value for key, value in arrays.items() if key.startswith(prefix + "/")}


def _read_json(path: PathLike) -> Any:
    with open(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise FormatError(f"{path}: not valid JSON ({error})") from error


def _read_rows(
    path: PathLike, columns: Sequence[str] | None, delimiter: str = ","
) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV; the header must equal `columns` when given."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    if columns is not None and header != list(columns):
        raise FormatError(f"{path}: expected the header {','.join(columns)}, got {header}")
    return header, rows


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "NA", "-") else math.nan
    except ValueError:
        return math.nan


def _numeric_columns(
    path: PathLike, columns: Sequence[str] | None, delimiter: str = ","
) -> Columns:
    """Columns as float arrays; empty, NA or unparsable cells (a killed run's cut line) NaN."""
    header, rows = _read_rows(path, columns, delimiter)
    return {name: np.array([_number(row.get(name)) for row in rows]) for name in header}


def _write_rows(path: PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


# --- images -----------------------------------------------------------------------------------


def write_gray_png(path: PathLike, gray: np.ndarray) -> None:
    """Write an (H, W) uint8 array as an 8-bit gray PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(gray, mode="L").save(tmp, format="PNG")


def read_gray_png(path: PathLike) -> np.ndarray:
    """Read an 8-bit gray PNG into an (H, W) uint8 array."""
    with Image.open(path) as image:
        if image.mode != "L":
            raise FormatError(f"{path}: expected an 8-bit gray (L) PNG, got mode {image.mode}")
        return np.asarray(image, dtype=np.uint8).copy()


def save_noisy_set(path: PathLike, images: Mapping[str, np.ndarray]) -> None:
    """Write noisy images, one array per image keyed by its id."""
    save_npz(path, dict(images))


def load_noisy_set(path: PathLike) -> dict[str, np.ndarray]:
    """Read the noisy images of `save_noisy_set`, id -> array, in file order."""
    return load_npz(path)


# --- BSD68 split ----------------------------------------------------------------------------


def write_split(path: PathLike, subsets: Mapping[str, str]) -> None:
    """Write `id,subset` rows in the mapping's order (callers pass id order)."""
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        writer.writerows(subsets.items())


def read_split(path: PathLike) -> dict[str, str]:
    """Read an `id,subset` CSV into id -> subset, in file order."""
    _, rows = _read_rows(path, SPLIT_COLUMNS)
    subsets = {}
    for row in rows:
        if row["subset"] not in SUBSETS:
            raise FormatError(
                f"{path}: id {row['id']} has subset {row['subset']!r}, expected one of {SUBSETS}"
            )
        if row["id"] in subsets:
            raise FormatError(f"{path}: id {row['id']} is listed twice")
        subsets[row["id"]] = row["subset"]
    return subsets


# --- training source (patchify -> training) -------------------------------------------------


def write_train_pixels(path: PathLike, images: Sequence[np.ndarray]) -> None:
    """Write the images flattened and concatenated into one float32 .npy, in the given order."""
    total = sum(image.size for image in images)
    with atomic_path(path, suffix=".npy") as tmp:
        # Filled image by image so the whole set is never held twice in memory.
        flat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total,))
        start = 0
        for image in images:
            flat[start : start + image.size] = image.ravel()
            start += image.size
        flat.flush()
        del flat


def read_train_pixels(path: PathLike) -> np.ndarray:
    """Memory-map the flat float32 training pixels."""
    pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    if pixels.ndim != 1 or pixels.dtype != np.float32:
        raise FormatError(
            f"{path}: expected a 1-D float32 array, got shape {pixels.shape} dtype {pixels.dtype}"
        )
    return pixels


def write_train_index(path: PathLike, rows: Iterable[tuple[str, int, int, int]]) -> None:
    """Write the (id, offset, height, width) rows of the training source's index."""
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(INDEX_COLUMNS)
        writer.writerows(rows)


def read_train_index(path: PathLike) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Read the index: ids, and int64 offsets, heights and widths."""
    _, rows = _read_rows(path, INDEX_COLUMNS)
    ids: list[str] = []
    numbers: list[tuple[int, int, int]] = []
    for line, row in enumerate(rows, start=2):
        try:
            offset, height, width = (int(row[key]) for key in INDEX_COLUMNS[1:])
        except (TypeError, ValueError) as error:
            raise FormatError(
                f"{path}, line {line}: offset/height/width must be integers: {row}"
            ) from error
        if offset < 0 or height < 1 or width < 1:
            raise FormatError(
                f"{path}, line {line}: need offset >= 0 and positive height/width, got {row}"
            )
        ids.append(row["id"])
        numbers.append((offset, height, width))
    if not ids:
        raise FormatError(f"{path}: the index lists no image")
    if len(set(ids)) != len(ids):
        raise FormatError(f"{path}: image ids are not unique")
    table = np.array(numbers, dtype=np.int64)
    return tuple(ids), table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy()


def write_train_stats(path: PathLike, stats: Mapping[str, float | int]) -> None:
    """Write the training pixels' statistics (mean, std, n_images, n_pixels)."""
    write_json(path, dict(stats))


def read_train_stats(path: PathLike) -> tuple[float, float]:
    """Read the normalisation (mean, std); std must be positive, both finite."""
    stats = _read_json(path)
    if not isinstance(stats, dict) or not {"mean", "std"} <= stats.keys():
        raise FormatError(f"{path}: must be a JSON object with keys 'mean' and 'std'")
    values = []
    for key in ("mean", "std"):
        value = stats[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FormatError(f"{path}: {key} must be a number, got {value!r}")
        values.append(float(value))
    mean, std = values
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise FormatError(f"{path}: need a finite mean and a finite std > 0, got {mean}, {std}")
    return mean, std


def save_valid_tiles(path: PathLike, tiles: Mapping[str, np.ndarray]) -> None:
    """Write the validation tiles: noisy (N, P, P) float32, clean uint8, ids (N,) str.

    Noise2Noise's sets add noisy2, the tiles' second noise realisation (float32).
    """
    missing = sorted(set(VALID_TILE_KEYS) - set(tiles))
    if missing:
        raise ValueError(f"validation tiles lack the arrays {missing}")
    keys = [*VALID_TILE_KEYS, *([VALID_NOISY2] if VALID_NOISY2 in tiles else [])]
    save_npz(path, {key: tiles[key] for key in keys})


def load_valid_tiles(path: PathLike) -> dict[str, np.ndarray]:
    """Read and check the validation tiles of `save_valid_tiles`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"validation tiles not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = set(VALID_TILE_KEYS) - set(archive.files)
            if missing:
                raise FormatError(f"{path}: missing arrays {sorted(missing)}")
            noisy, clean, ids = (archive[key] for key in VALID_TILE_KEYS)
            noisy2 = archive[VALID_NOISY2] if VALID_NOISY2 in archive.files else None
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise FormatError(f"{path}: ids must be a string array, not objects") from error
        raise
    if noisy.ndim != 3 or noisy.shape[1] != noisy.shape[2] or noisy.shape[0] == 0:
        raise FormatError(f"{path}: noisy must be (N, P, P) with N >= 1, got {noisy.shape}")
    if noisy.dtype != np.float32 or clean.dtype != np.uint8:
        raise FormatError(
            f"{path}: expected noisy float32 and clean uint8, got {noisy.dtype} and {clean.dtype}"
        )
    if clean.shape != noisy.shape or ids.shape != noisy.shape[:1]:
        raise FormatError(
            f"{path}: shapes disagree: noisy {noisy.shape}, clean {clean.shape}, ids {ids.shape}"
        )
    if noisy2 is None:
        return {"noisy": noisy, "clean": clean, "ids": ids}
    if noisy2.dtype != np.float32 or noisy2.shape != noisy.shape:
        raise FormatError(
            f"{path}: noisy2 must be float32 {noisy.shape} like noisy, got {noisy2.dtype} "
            f"{noisy2.shape}"
        )
    return {"noisy": noisy, "clean": clean, "ids": ids, VALID_NOISY2: noisy2}


# --- weights --------------------------------------------------------------------------------


def save_weights(path: PathLike, weights: Mapping[str, np.ndarray]) -> None:
    """Write a weight bundle: one array per parameter or buffer, by its name."""
    save_npz(path, dict(weights))


def load_weights(path: PathLike) -> dict[str, np.ndarray]:
    """Read a weight bundle of `save_weights`."""
    weights = load_npz(path)
    if not weights:
        raise FormatError(f"{path}: holds no weights")
    check_weight_arrays(path, weights)
    return weights


def check_weight_arrays(path: PathLike, weights: Mapping[str, np.ndarray]) -> None:
    """Raise UnusableWeightsError unless every array is float32 and finite.

    Every reader of weights (the files above, training checkpoints) checks here: a cast
    would change the network silently, and NaN weights fail every use the same way.
    """
    for problem, bad in (
        ("not float32", [f"{n} {a.dtype}" for n, a in weights.items() if a.dtype != np.float32]),
        ("NaN or infinite values", [n for n, a in weights.items() if not np.isfinite(a).all()]),
    ):
        if bad:
            raise UnusableWeightsError(
                f"{path}: {problem} in {len(bad)} of {len(weights)} arrays "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); a network cannot "
                "predict with them"
            )


# --- training records -----------------------------------------------------------------------


def write_history(path: PathLike, rows: Iterable[Mapping[str, float]]) -> None:
    """Write history.csv, one row per epoch."""
    _write_rows(path, HISTORY_COLUMNS, rows)


def read_history(path: PathLike) -> Columns:
    """Read history.csv as float columns."""
    return _numeric_columns(path, HISTORY_COLUMNS)


def monitor_line(values: Sequence[float | None]) -> str:
    """One monitor.csv row (MONITOR_COLUMNS order) without its newline; None is empty."""
    if len(values) != len(MONITOR_COLUMNS):
        raise ValueError(f"a monitor row has {len(MONITOR_COLUMNS)} values, got {len(values)}")
    return ",".join("" if value is None else f"{value:.3f}" for value in values)


def read_monitor(path: PathLike) -> Columns:
    """Read monitor.csv as float columns; empty cells (no data) are NaN."""
    return _numeric_columns(path, MONITOR_COLUMNS)


def read_benchmark(path: PathLike) -> Columns:
    """Read a Snakemake benchmark TSV as float columns (`s` is the job's wall time)."""
    columns = _numeric_columns(path, None, delimiter="\t")
    if "s" not in columns:
        raise FormatError(f"{path}: a Snakemake benchmark file needs the column 's'")
    return columns


# --- evaluation -----------------------------------------------------------------------------


def write_per_image(path: PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write per_image.csv; PSNR and SSIM with six decimals."""
    with atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_IMAGE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "psnr": f"{row['psnr']:.6f}", "ssim": f"{row['ssim']:.6f}"})


def read_per_image(path: PathLike) -> list[dict[str, Any]]:
    """Read per_image.csv; psnr and ssim as floats."""
    _, rows = _read_rows(path, PER_IMAGE_COLUMNS)
    return [{**row, "psnr": float(row["psnr"]), "ssim": float(row["ssim"])} for row in rows]


def write_eval_summary(path: PathLike, summary: Mapping[str, Any]) -> None:
    """Write an evaluation's summary.json."""
    missing = [key for key in EVAL_SUMMARY_KEYS if key not in summary]
    if missing:
        raise ValueError(f"an evaluation summary needs the keys {missing}")
    write_json(path, dict(summary))


def read_json_object(path: PathLike) -> dict[str, Any]:
    """Read a JSON file that must hold one object (a reference's inference record)."""
    record = _read_json(path)
    if not isinstance(record, dict):
        raise FormatError(f"{path}: must be a JSON object")
    return record


def read_train_summary(path: PathLike) -> dict[str, Any]:
    """Read a training run's train_summary.json (training/outputs.py writes it)."""
    summary = _read_json(path)
    if not isinstance(summary, dict) or "framework" not in summary:
        raise FormatError(f"{path}: must be a JSON object naming its framework")
    return summary


def read_eval_summary(path: PathLike) -> dict[str, Any]:
    """Read an evaluation's summary.json; it names its own recipe, framework, sigma and seed."""
    summary = _read_json(path)
    if not isinstance(summary, dict):
        raise FormatError(f"{path}: must be a JSON object")
    missing = [key for key in EVAL_SUMMARY_KEYS if key not in summary]
    if missing:
        raise FormatError(f"{path}: lacks the keys {missing}")
    return summary


# --- framework parity -----------------------------------------------------------------------


def write_parity_csv(path: PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write parity.csv, one row per arch and Jittor: each record's PARITY_COLUMNS.

    The records' per-layer `details` are in parity.json only.
    """
    with atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PARITY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)


def read_parity_csv(path: PathLike) -> list[dict[str, str]]:
    """Read parity.csv rows as text."""
    return _read_rows(path, PARITY_COLUMNS)[1]


def write_parity_json(
    path: PathLike, tolerance: float, definition: str | None, records: Sequence[Mapping[str, Any]]
) -> None:
    """Write parity.json: the tolerance judged by, the errors' definition, the records."""
    write_json(path, {"tolerance": tolerance, "definition": definition, "archs": list(records)})


def read_parity_json(path: PathLike) -> dict[str, Any]:
    """Read parity.json."""
    report = _read_json(path)
    if not isinstance(report, dict) or not {"tolerance", "archs"} <= report.keys():
        raise FormatError(f"{path}: must be a JSON object with keys 'tolerance' and 'archs'")
    return report
