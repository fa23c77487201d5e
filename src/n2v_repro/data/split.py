"""Seeded split of the BSD68 ids into a validation and a test subset.

The images themselves are untouched (no cropping, orientation kept); only ids are assigned.
The ids are sorted before shuffling, so the split depends only on the set of ids, the seed
and n_valid, never on the order they were listed or found on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from n2v_repro.data.manifest import id_sort_key
from n2v_repro.errors import UserError
from n2v_repro.io.formats import SUBSETS, write_split

# Mixed into the seed so the split's random stream differs from every other use of `seed`.
_SPLIT_STREAM = 0x5B1D68


class SplitError(UserError, ValueError):
    """The split cannot be made, or a subset is unknown."""


def split_ids(ids: Iterable[str], n_valid: int, seed: int) -> dict[str, str]:
    """Assign `n_valid` ids to 'valid' and the rest to 'test'.

    Returns
    -------
    dict id -> subset, in id order.
    """
    ordered = sorted(set(ids), key=id_sort_key)
    if not 1 <= n_valid < len(ordered):
        raise SplitError(
            f"config key 'data.n_valid': {n_valid} must be at least 1 and smaller than the "
            f"number of BSD68 images in use ({len(ordered)}), so that both subsets are non-empty"
        )
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    chosen = {ordered[i] for i in rng.permutation(len(ordered))[:n_valid]}
    return {i: ("valid" if i in chosen else "test") for i in ordered}


def ids_in(subsets: dict[str, str], subset: str) -> list[str]:
    """Ids of one subset, in id order."""
    if subset not in SUBSETS:
        raise SplitError(f"unknown subset {subset!r}, expected one of {SUBSETS}")
    return sorted((i for i, s in subsets.items() if s == subset), key=id_sort_key)


def make_split(path: str | Path, ids: Iterable[str], n_valid: int, seed: int) -> dict[str, str]:
    """Split `ids` and write the CSV to `path` in id order; returns the split."""
    subsets = split_ids(ids, n_valid, seed)
    write_split(path, subsets)
    return subsets
