"""A small generated stand-in for BSDS500, so tests run without ../shared (shared helper).

API (kept stable):

``make_fake_bsds(root, n_train=4, n_test=2, n_val=6, n_bsd68=5, size=(96, 128), seed=0)``
writes under ``root``:

- ``images/<split>/<id>.jpg``: RGB JPEGs with smooth structure (gradients, discs, stripes)
  plus mild texture; ids are numeric strings (train 1001.., test 2001.., val 3001..). The
  last train image and the first BSD68 image are portrait (W x H swapped).
- ``bsds500.sha256``: the manifest, ``<sha256>  <split>/<id>.jpg`` (the project's format).
- ``bsd68_ids.txt``: the first ``n_bsd68`` val ids.
- ``bsd68_pixels.sha256``: ``<sha256>  <id>  <H>x<W>`` of the gray pixels of each BSD68
  image, computed with the project's conversion (``n2v_repro.data.gray``).
- ``train400_crops.txt``: a Train400-style crop table, one 64 x 64 crop of each training
  (train + test) image at a seeded position, with its gray pixels' sha256.

and returns a ``FakeBsds`` with those paths, the ids per split, and ``data_config(mirrors)``
giving a ``data:`` config section that points at them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from n2v_repro.data.gray import load_gray, pixel_digest

_FIRST_ID = {"train": 1001, "test": 2001, "val": 3001}
CROP_SIZE = 64


@dataclass(frozen=True)
class FakeBsds:
    """Paths and ids of a generated data set (see the module docstring)."""

    images: Path
    manifest: Path
    bsd68_ids: Path
    bsd68_pixels: Path
    ids: dict[str, list[str]] = field(default_factory=dict)
    train400_crops: Path | None = None

    @property
    def train_ids(self) -> list[str]:
        """BSD400 stand-in: the train and test ids, in numeric order."""
        return sorted(self.ids["train"] + self.ids["test"], key=int)

    @property
    def bsd68(self) -> list[str]:
        return self.bsd68_ids.read_text().split()

    def jpg(self, image_id: str) -> Path:
        split = next(s for s, ids in self.ids.items() if image_id in ids)
        return self.images / split / f"{image_id}.jpg"

    def data_config(self, mirrors: list[str], **overrides: Any) -> dict[str, Any]:
        """A `data:` config section using this data set and the given mirrors."""
        return {
            "mirrors": list(mirrors),
            "manifest": str(self.manifest),
            "bsd68_ids": str(self.bsd68_ids),
            "bsd68_pixels": str(self.bsd68_pixels),
            **({"train400_crops": str(self.train400_crops)} if self.train400_crops else {}),
            **overrides,
        }


def _structured_rgb(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 with edges and smooth regions, like a photo rather than noise."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.empty((height, width, 3))
    for channel in range(3):
        angle = rng.uniform(0, np.pi)
        ramp = (np.cos(angle) * rows + np.sin(angle) * cols) / max(height, width)
        stripes = np.sin(2 * np.pi * rows / rng.uniform(8, 30) + rng.uniform(0, 6))
        image[..., channel] = 60 + 120 * ramp + 20 * stripes
    for _ in range(3):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.1, 0.3) * min(height, width)
        disc = (rows - cy) ** 2 + (cols - cx) ** 2 < radius**2
        image[disc] = rng.uniform(0, 255, size=3)
    image += rng.normal(0, 4, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_fake_bsds(
    root: Path,
    n_train: int = 4,
    n_test: int = 2,
    n_val: int = 6,
    n_bsd68: int = 5,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> FakeBsds:
    """Generate the data set under `root` (see the module docstring); `size` is (H, W)."""
    if not 1 <= n_bsd68 <= n_val:
        raise ValueError(f"n_bsd68 must be in 1..n_val ({n_val}), got {n_bsd68}")
    if n_train < 1:
        raise ValueError(f"n_train must be at least 1, got {n_train}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    images = root / "images"
    counts = {"train": n_train, "test": n_test, "val": n_val}
    ids = {s: [str(_FIRST_ID[s] + k) for k in range(n)] for s, n in counts.items()}
    portrait = {ids["train"][-1], ids["val"][0]}
    manifest_lines = []
    for split, split_ids in ids.items():
        (images / split).mkdir(parents=True, exist_ok=True)
        for image_id in split_ids:
            height, width = size[::-1] if image_id in portrait else size
            path = images / split / f"{image_id}.jpg"
            Image.fromarray(_structured_rgb(height, width, rng), mode="RGB").save(
                path, format="JPEG", quality=90
            )
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            manifest_lines.append(f"{digest}  {split}/{image_id}.jpg")
    manifest = root / "bsds500.sha256"
    manifest.write_text("\n".join(manifest_lines) + "\n")
    bsd68 = ids["val"][:n_bsd68]
    bsd68_ids = root / "bsd68_ids.txt"
    bsd68_ids.write_text("\n".join(bsd68) + "\n")
    bsd68_pixels = root / "bsd68_pixels.sha256"
    grays = {i: load_gray(images / "val" / f"{i}.jpg") for i in bsd68}
    lines = [f"{pixel_digest(g)}  {i}  {g.shape[0]}x{g.shape[1]}" for i, g in grays.items()]
    bsd68_pixels.write_text("# generated test data\n" + "\n".join(lines) + "\n")
    crop_lines = []
    for number, image_id in enumerate(ids["train"] + ids["test"], start=1):
        split = "train" if image_id in ids["train"] else "test"
        gray = load_gray(images / split / f"{image_id}.jpg")
        top = int(rng.integers(0, gray.shape[0] - CROP_SIZE + 1))
        left = int(rng.integers(0, gray.shape[1] - CROP_SIZE + 1))
        digest = pixel_digest(gray[top : top + CROP_SIZE, left : left + CROP_SIZE])
        crop_lines.append(f"test_{number:03d}  {image_id}  {top}  {left}  {CROP_SIZE}  {digest}")
    crops = root / "train400_crops.txt"
    crops.write_text("# generated test data\n" + "\n".join(crop_lines) + "\n")
    return FakeBsds(images, manifest, bsd68_ids, bsd68_pixels, ids, crops)
