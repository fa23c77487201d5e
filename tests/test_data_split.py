"""BSD68 validation/test split: seeded, reproducible, order-independent."""

from pathlib import Path

import pytest

from n2v_repro.data.split import SplitError, ids_in, make_split, split_ids
from n2v_repro.io.formats import FormatError, read_split

IDS = [str(i) for i in (3096, 12084, 14037, 16077, 19021, 21077, 24077, 33039, 101085, 101087)]


def test_sizes_and_subsets() -> None:
    subsets = split_ids(IDS, n_valid=4, seed=123)
    assert list(subsets) == IDS  # id (numeric) order
    assert sorted(subsets.values()).count("valid") == 4
    assert set(subsets.values()) == {"valid", "test"}


def test_reproducible_and_independent_of_input_order() -> None:
    reference = split_ids(IDS, 4, 123)
    assert split_ids(list(reversed(IDS)), 4, 123) == reference
    assert split_ids(IDS[3:] + IDS[:3], 4, 123) == reference
    assert split_ids(set(IDS), 4, 123) == reference


def test_seed_changes_the_split() -> None:
    splits = {tuple(ids_in(split_ids(IDS, 5, seed), "valid")) for seed in range(6)}
    assert len(splits) > 1


@pytest.mark.parametrize("n_valid", [0, 10, 11])
def test_n_valid_must_leave_both_subsets(n_valid: int) -> None:
    with pytest.raises(SplitError, match="data.n_valid"):
        split_ids(IDS, n_valid, 123)


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    subsets = make_split(path, reversed(IDS), 3, 7)
    assert path.read_text().splitlines()[0] == "id,subset"
    assert [line.split(",")[0] for line in path.read_text().splitlines()[1:]] == IDS
    assert read_split(path) == subsets
    assert ids_in(subsets, "valid") == [i for i in IDS if subsets[i] == "valid"]


def test_read_split_rejects_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "split.csv"
    path.write_text("id,subset\n1,train\n")
    with pytest.raises(FormatError, match=r"split\.csv: id 1 has subset 'train'"):
        read_split(path)
    path.write_text("image,subset\n1,valid\n")
    with pytest.raises(FormatError, match="header"):
        read_split(path)
    path.write_text("id,subset\n1,valid\n1,test\n")
    with pytest.raises(FormatError, match="id 1 is listed twice"):
        read_split(path)
