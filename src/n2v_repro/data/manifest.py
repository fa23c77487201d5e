"""The image manifest and id lists: which files exist, which are used for what.

The manifest is `sha256sum` output with paths `<split>/<id>.jpg`, split one of train, val,
test. BSD400 (the training set) is every train and test image; BSD68 is listed separately
and must lie in val.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from n2v_repro.errors import UserError

SPLITS = ("train", "val", "test")
TRAIN_SPLITS = ("train", "test")


class ManifestError(UserError, ValueError):
    """The manifest or an id list is malformed or inconsistent."""


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    split: str
    image_id: str

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.image_id}.jpg"


def id_sort_key(image_id: str) -> tuple[int, int | str]:
    """Numeric ids sort as numbers, anything else after them as text."""
    return (0, int(image_id)) if image_id.isdigit() else (1, image_id)


def data_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every line that is neither blank nor a # comment."""
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield number, line


def read_manifest(path: str | Path) -> dict[str, ManifestEntry]:
    """Entries by image id; raises ManifestError naming the file and line on bad input."""
    entries: dict[str, ManifestEntry] = {}
    for number, line in data_lines(path):
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ManifestError(f"{where}: expected '<sha256>  <split>/<id>.jpg', got {line!r}")
        digest, relpath = parts[0].lower(), parts[1].lstrip("*")
        split, _, filename = relpath.partition("/")
        if split not in SPLITS or not filename.endswith(".jpg") or "/" in filename:
            raise ManifestError(f"{where}: path {relpath!r} is not <train|val|test>/<id>.jpg")
        image_id = filename[: -len(".jpg")]
        if image_id in entries:
            raise ManifestError(f"{where}: image id {image_id} listed twice")
        entries[image_id] = ManifestEntry(digest, split, image_id)
    if not entries:
        raise ManifestError(f"{path}: no entries")
    return entries


def read_id_list(path: str | Path) -> list[str]:
    """Ids one per line (blank lines and # comments ignored), in file order."""
    with open(path) as handle:
        ids = [line.split()[0] for line in handle if line.strip() and not line.startswith("#")]
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: an id is listed twice")
    return ids


def train_ids(manifest: dict[str, ManifestEntry], limit: int | None = None) -> list[str]:
    """BSD400: the train and test images, in id order, optionally only the first `limit`."""
    ids = sorted(
        (e.image_id for e in manifest.values() if e.split in TRAIN_SPLITS), key=id_sort_key
    )
    return _first(ids, limit, "data.train_images", "training images in the manifest")


def bsd68_ids(
    manifest: dict[str, ManifestEntry], ids_file: str | Path, limit: int | None = None
) -> list[str]:
    """BSD68 ids in id order, checked to be val images of the manifest."""
    ids = sorted(read_id_list(ids_file), key=id_sort_key)
    for image_id in ids:
        entry = manifest.get(image_id)
        if entry is None:
            raise ManifestError(f"{ids_file}: BSD68 id {image_id} is not in the manifest")
        if entry.split != "val":
            raise ManifestError(
                f"{ids_file}: BSD68 id {image_id} is in split {entry.split!r} of the manifest, "
                "expected 'val' (it would overlap the training set)"
            )
    return _first(ids, limit, "data.bsd68_images", f"BSD68 ids in {ids_file}")


def _first(ids: list[str], limit: int | None, key: str, what: str) -> list[str]:
    """Return the first `limit` ids; a limit beyond what exists is a configuration error."""
    if limit is None:
        return ids
    if limit > len(ids):
        raise ManifestError(
            f"config key '{key}': {limit} is more than the {len(ids)} {what}; "
            f"allowed 1-{len(ids)} or null (all)"
        )
    return ids[:limit]
