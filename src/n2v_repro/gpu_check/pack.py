"""The GPU check's data: packed here from the dataset mirror, made into training files there.

The GPU machine has no dataset mirror and no internet; what the check needs travels beside
the working tree in a git-ignored folder (`.gpu_data`, 64 MiB per device call together
with the wheels). `prepare` copies the original jpgs of the training images and BSD68, each
verified against the manifest, with a manifest of exactly those files, the BSD68 ids and
their pixel hashes (~34 MiB for all 400 + 68). `make_data` then verifies every jpg again and
runs the pipeline's own data stage on them (data.gray, data.split, data.noise,
data.patches: the same functions the rules call), so the check trains and evaluates on
exactly the pipeline's files.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from n2v_repro.config import REPO_ROOT, TrainConfig
from n2v_repro.data.download import download_images, is_valid
from n2v_repro.data.manifest import bsd68_ids, read_manifest, train_ids
from n2v_repro.errors import UserError

log = logging.getLogger(__name__)

PACK_MANIFEST = "bsds500.sha256"
PACK_BSD68_IDS = "bsd68_ids.txt"
PACK_PIXELS = "bsd68_pixels.sha256"
PACK_INFO = "pack.json"
IMAGES = "images"
DEFAULT_MANIFEST = REPO_ROOT / "config" / "data" / "bsds500.sha256"
DEFAULT_BSD68_IDS = REPO_ROOT / "config" / "data" / "bsd68_ids.txt"
DEFAULT_PIXELS = REPO_ROOT / "config" / "data" / "bsd68_pixels.sha256"
CARRY_MIB = 64


class PackError(UserError, RuntimeError):
    """The packed data is missing, incomplete or does not match its manifest."""


def images_root(mirror: Path) -> Path:
    """Find the folder laid out `<split>/<id>.jpg`: `mirror`, or a BSDS500 tree's data/images."""
    for candidate in (mirror, mirror / "data" / "images", mirror / "BSDS500" / "data" / "images"):
        if any((candidate / split).is_dir() for split in ("train", "val", "test")):
            return candidate
    raise PackError(f"{mirror}: no <split>/<id>.jpg folders (train, val, test) found in it")


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def prepare(
    mirror: Path,
    dest: Path,
    manifest: Path = DEFAULT_MANIFEST,
    bsd68_ids_file: Path = DEFAULT_BSD68_IDS,
    pixels: Path = DEFAULT_PIXELS,
    train_images: int | None = None,
    bsd68_images: int | None = None,
) -> dict[str, Any]:
    """Pack the training and BSD68 jpgs of `mirror` into `dest`; return what pack.json says.

    Every jpg is checked against `manifest` (a mismatch raises DownloadError naming it);
    files of an earlier, larger pack that are no longer wanted are removed.
    """
    entries = read_manifest(manifest)
    train = train_ids(entries, train_images)
    bsd68 = bsd68_ids(entries, bsd68_ids_file, bsd68_images)
    chosen = [entries[i] for i in train + bsd68]
    images = dest / IMAGES
    outputs = [images / entry.relpath for entry in chosen]
    # The cache is the pack itself: a valid file already there is not copied again.
    download_images(outputs, manifest, [str(images_root(mirror))], cache_dir=images)
    wanted = set(outputs)
    for stale in images.rglob("*"):
        if stale.is_file() and stale not in wanted:
            stale.unlink()
    lines = [f"{entry.sha256}  {entry.relpath}" for entry in chosen]
    (dest / PACK_MANIFEST).write_text("\n".join(lines) + "\n")
    (dest / PACK_BSD68_IDS).write_text("\n".join(bsd68) + "\n")
    (dest / PACK_PIXELS).write_text(Path(pixels).read_text())
    info = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(mirror),
        "train_images": len(train),
        "bsd68_images": len(bsd68),
        "mib": round(folder_mib(dest), 2),
    }
    (dest / PACK_INFO).write_text(json.dumps(info, indent=1) + "\n")
    return info


@dataclass(frozen=True)
class CheckData:
    """The pipeline's files for one sigma, as the rules would write them."""

    patch_dir: Path
    noisy_bsd68: Path
    split_csv: Path
    clean_bsd68: tuple[Path, ...]
    train_images: int
    bsd68_images: int
    n_valid: int
    seconds: float

    def plain(self) -> dict[str, Any]:
        return {
            "patch_dir": str(self.patch_dir),
            "noisy_bsd68": str(self.noisy_bsd68),
            "split_csv": str(self.split_csv),
            "clean_bsd68": [str(p) for p in self.clean_bsd68],
        }


def verify_pack(pack: Path) -> tuple[list[str], list[str], dict[str, Any]]:
    """Check every packed jpg against the pack's manifest; return (train ids, BSD68 ids, jpgs).

    Raises PackError naming the missing or altered files.
    """
    manifest = pack / PACK_MANIFEST
    if not manifest.is_file():
        raise PackError(
            f"{pack}: no packed data ({PACK_MANIFEST} missing); run "
            "`python -m n2v_repro.gpu_check prepare --mirror <BSDS500> --dest "
            f"{pack}` where the mirror is, and carry the folder"
        )
    entries = read_manifest(manifest)
    bad = [
        entry.relpath
        for entry in entries.values()
        if not is_valid(pack / IMAGES / entry.relpath, entry.sha256)
    ]
    if bad:
        raise PackError(
            f"{pack}: {len(bad)} jpg(s) missing or not matching {manifest}: {', '.join(bad[:10])}"
        )
    jpgs = {i: pack / IMAGES / entry.relpath for i, entry in entries.items()}
    return train_ids(entries), bsd68_ids(entries, pack / PACK_BSD68_IDS), jpgs


def make_data(
    pack: Path,
    work: Path,
    sigma: int,
    seed: int,
    n_valid: int,
    patch_size: int,
    workers: int,
    recipe: TrainConfig,
    crops_file: Path,
) -> CheckData:
    """Verify the pack and run the pipeline's data stage into `work` for one sigma.

    `n_valid` is data.n_valid; with fewer BSD68 images packed than that allows, half of them.
    The training set and validation scheme are the recipe's (`recipe`); `crops_file` is
    data.train400_crops, read for a train400 recipe.
    """
    from n2v_repro.data.gray import convert_images
    from n2v_repro.data.noise import write_noisy_sets
    from n2v_repro.data.patches import patchify
    from n2v_repro.data.split import make_split

    start = time.monotonic()
    train, bsd68, jpgs = verify_pack(pack)
    if n_valid >= len(bsd68):
        n_valid = max(1, len(bsd68) // 2)
    train_pngs = [work / "gray" / "bsd400" / f"{i}.png" for i in train]
    bsd68_pngs = [work / "gray" / "bsd68" / f"{i}.png" for i in bsd68]
    convert_images(
        jpgs=[jpgs[i] for i in train + bsd68],
        train_pngs=train_pngs,
        bsd68_pngs=bsd68_pngs,
        pixel_hashes_file=pack / PACK_PIXELS,
        workers=workers,
    )
    split_csv = work / "bsd68_split.csv"
    make_split(split_csv, bsd68, n_valid, seed)
    noisy = work / "noisy" / f"sigma{sigma}"
    write_noisy_sets(
        {
            "bsd400": (train_pngs, noisy / "bsd400.npz"),
            "bsd68": (bsd68_pngs, noisy / "bsd68.npz"),
        },
        sigma=sigma,
        seed=seed,
    )
    patch_dir = work / "patches" / f"sigma{sigma}"
    patchify(
        train_npz=noisy / "bsd400.npz",
        bsd68_npz=noisy / "bsd68.npz",
        split_csv=split_csv,
        clean_bsd68_pngs=list(bsd68_pngs),
        clean_train_pngs=list(train_pngs),
        validation=recipe.validation,
        train_set=recipe.train_set,
        crops_file=crops_file if recipe.train_set == "train400" else None,
        patch_size=patch_size,
        outputs={
            "train": patch_dir / "train.npy",
            "index": patch_dir / "train_index.csv",
            "stats": patch_dir / "train_stats.json",
            "valid": patch_dir / "valid_tiles.npz",
        },
    )
    return CheckData(
        patch_dir=patch_dir,
        noisy_bsd68=noisy / "bsd68.npz",
        split_csv=split_csv,
        clean_bsd68=tuple(bsd68_pngs),
        train_images=len(train),
        bsd68_images=len(bsd68),
        n_valid=n_valid,
        seconds=time.monotonic() - start,
    )
