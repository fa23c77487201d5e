"""DnCNN's Train400 as crops of the BSDS500 images: read the crop table, cut and check crops.

Train400 (DnCNN, Zhang et al. 2017, after Chen & Pock's TNRD) is the training set of the
Noise2Void paper's BSD68 experiment: 400 gray 180 x 180 images. Every one of them is, pixel
for pixel, a 180 x 180 block of the MATLAB-rgb2gray image of one BSD400 image (BSDS500 train
or test) in its original orientation; `config/data/train400_crops.txt` lists where (found by
`locate_crops` over all 500 gray images: one exact match per file, none in `val`). With that
table the set is rebuilt from BSDS500 alone and checked against the recorded pixel hashes.

`python -m n2v_repro.data.train400 <Train400 folder> <BSDS500 images folder>` repeats the
search and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from n2v_repro.data.gray import load_gray, pixel_digest
from n2v_repro.data.manifest import data_lines, id_sort_key
from n2v_repro.errors import UserError


class CropError(UserError, ValueError):
    """The crop table is malformed, or a crop does not reproduce its recorded pixels."""


@dataclass(frozen=True)
class Crop:
    """One Train400 image: the size x size block at (top, left) of BSDS500 image `image_id`."""

    name: str
    image_id: str
    top: int
    left: int
    size: int
    sha256: str

    def cut(self, image: np.ndarray) -> np.ndarray:
        """Return the crop of `image` (an (H, W) array of this id), checking that it fits."""
        height, width = image.shape
        if self.top + self.size > height or self.left + self.size > width:
            raise CropError(
                f"crop {self.name} ({self.size}x{self.size} at {self.top},{self.left}) does not "
                f"fit in image {self.image_id} of {height}x{width}"
            )
        return image[self.top : self.top + self.size, self.left : self.left + self.size]


def read_crops(path: str | Path) -> list[Crop]:
    """Read the crop table (`<name> <id> <top> <left> <size> <sha256>` per line) in file order."""
    crops: list[Crop] = []
    names: set[str] = set()
    ids: set[str] = set()
    for number, line in data_lines(path):
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 6 or not all(p.isdigit() for p in parts[2:5]) or len(parts[5]) != 64:
            raise CropError(
                f"{where}: expected '<name>  <id>  <top>  <left>  <size>  <sha256>', got {line!r}"
            )
        crop = Crop(parts[0], parts[1], int(parts[2]), int(parts[3]), int(parts[4]), parts[5])
        if crop.name in names or crop.image_id in ids:
            raise CropError(f"{where}: name {crop.name} or id {crop.image_id} listed twice")
        names.add(crop.name)
        ids.add(crop.image_id)
        crops.append(crop)
    if not crops:
        raise CropError(f"{path}: lists no crop")
    return crops


def crops_of(crops: Sequence[Crop], image_ids: Iterable[str]) -> list[Crop]:
    """Return the crops of the images in use, in table order; every image must have one."""
    wanted = set(image_ids)
    chosen = [crop for crop in crops if crop.image_id in wanted]
    missing = sorted(wanted - {crop.image_id for crop in chosen}, key=id_sort_key)
    if missing:
        raise CropError(f"no Train400 crop is listed for the training images {missing[:10]}")
    return chosen


def check_crops(crops: Sequence[Crop], clean: Mapping[str, np.ndarray]) -> None:
    """Raise CropError naming every crop whose clean pixels differ from the recorded hash."""
    bad = [
        f"{crop.name} (image {crop.image_id})"
        for crop in crops
        if pixel_digest(np.ascontiguousarray(crop.cut(clean[crop.image_id]))) != crop.sha256
    ]
    if bad:
        raise CropError(
            f"{len(bad)} Train400 crop(s) do not reproduce DnCNN's pixels (a different gray "
            f"conversion or image?): {', '.join(bad[:10])}"
        )


# --- finding the crops (how the table was made) --------------------------------------------

_KEY = 8  # pixels of a crop's first row used to find candidate positions


def _row_keys(image: np.ndarray) -> np.ndarray:
    """(H, W - 7) uint64: each horizontal run of 8 pixels packed into one number."""
    windows = np.lib.stride_tricks.sliding_window_view(image, _KEY, axis=1)
    height, count = windows.shape[:2]
    return np.ascontiguousarray(windows).reshape(-1, _KEY).view(np.uint64).reshape(height, count)


def locate_crops(
    crops: Mapping[str, np.ndarray], images: Mapping[str, np.ndarray]
) -> dict[str, list[tuple[str, int, int]]]:
    """Find every exact occurrence of each crop (name -> uint8 array) in the images (id -> array).

    Returns name -> [(image id, top, left), ...]; a well-defined table has exactly one each.
    """
    by_key: dict[int, list[str]] = {}
    for name, crop in crops.items():
        first = np.ascontiguousarray(crop[0, :_KEY]).view(np.uint64)[0]
        by_key.setdefault(int(first), []).append(name)
    keys = np.array(sorted(by_key), dtype=np.uint64)
    found: dict[str, list[tuple[str, int, int]]] = {name: [] for name in crops}
    for image_id, image in images.items():
        row_keys = _row_keys(image)
        for top, left in zip(*np.nonzero(np.isin(row_keys, keys)), strict=True):
            for name in by_key[int(row_keys[top, left])]:
                crop = crops[name]
                block = image[top : top + crop.shape[0], left : left + crop.shape[1]]
                if block.shape == crop.shape and np.array_equal(block, crop):
                    found[name].append((image_id, int(top), int(left)))
    return found


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train400", type=Path, help="folder of DnCNN's Train400 PNGs")
    parser.add_argument("images", type=Path, help="BSDS500 images folder (<split>/<id>.jpg)")
    args = parser.parse_args(argv)
    from PIL import Image

    crops = {
        p.stem: np.asarray(Image.open(p).convert("L")) for p in sorted(args.train400.glob("*.png"))
    }
    images = {p.stem: load_gray(p) for p in sorted(args.images.glob("*/*.jpg"))}
    found = locate_crops(crops, images)
    for name in sorted(found):
        if len(found[name]) != 1:
            print(f"# {name}: {len(found[name])} matches {found[name]}", file=sys.stderr)
            continue
        image_id, top, left = found[name][0]
        size = crops[name].shape[0]
        print(f"{name}  {image_id}  {top}  {left}  {size}  {pixel_digest(crops[name])}")
    return 0 if all(len(v) == 1 for v in found.values()) else 1


if __name__ == "__main__":
    sys.exit(_main())
