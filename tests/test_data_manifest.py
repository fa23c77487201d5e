"""Manifest and id-list parsing: errors name the file, the line and what was expected."""

from pathlib import Path

import pytest

from n2v_repro.data.manifest import ManifestError, bsd68_ids, read_id_list, read_manifest, train_ids

H = "a" * 64


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parses_and_orders(tmp_path: Path) -> None:
    manifest = read_manifest(
        _write(tmp_path, "m", f"# c\n{H}  train/20.jpg\n{H}  test/3.jpg\n{H}  val/100.jpg\n")
    )
    assert manifest["3"].relpath == "test/3.jpg"
    assert train_ids(manifest) == ["3", "20"] and train_ids(manifest, 1) == ["3"]
    ids = _write(tmp_path, "ids", "100\n")
    assert bsd68_ids(manifest, ids) == ["100"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc  train/1.jpg\n", r"m:1: expected '<sha256>  <split>/<id>\.jpg'"),
        (f"{H}  other/1.jpg\n", "m:1: path 'other/1.jpg' is not"),
        (f"{H}  train/1.png\n", "m:1: path 'train/1.png'"),
        (f"{H}  train/1.jpg\n{H}  val/1.jpg\n", "m:2: image id 1 listed twice"),
        ("# only a comment\n", "m: no entries"),
    ],
)
def test_manifest_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest(_write(tmp_path, "m", text))


def test_id_list_errors(tmp_path: Path) -> None:
    manifest = read_manifest(_write(tmp_path, "m", f"{H}  train/1.jpg\n{H}  val/2.jpg\n"))
    with pytest.raises(ManifestError, match="listed twice"):
        read_id_list(_write(tmp_path, "dup", "2\n2\n"))
    with pytest.raises(ManifestError, match="BSD68 id 9 is not in the manifest"):
        bsd68_ids(manifest, _write(tmp_path, "missing", "9\n"))
    with pytest.raises(ManifestError, match="BSD68 id 1 is in split 'train'"):
        bsd68_ids(manifest, _write(tmp_path, "train", "1\n"))


def test_limits_beyond_what_exists_name_the_config_key(tmp_path: Path) -> None:
    """A smaller manifest than BSDS500's: asking for more images than it holds is refused."""
    manifest = read_manifest(_write(tmp_path, "m", f"{H}  train/1.jpg\n{H}  val/2.jpg\n"))
    with pytest.raises(ManifestError, match=r"'data.train_images': 5 is more than the 1"):
        train_ids(manifest, 5)
    with pytest.raises(ManifestError, match=r"'data.bsd68_images': 3 is more than the 1"):
        bsd68_ids(manifest, _write(tmp_path, "ids", "2\n"), 3)
