"""The docs' lists of networks, frameworks and backend members match the code.

Each list is read from the one place a doc states it (a sentence, a table, a parenthesis),
so a name left out there fails, even if the doc names it elsewhere.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from n2v_repro.backends.base import Backend
from n2v_repro.backends.registry import FRAMEWORKS
from n2v_repro.backends.registry import STOCK_FRAMEWORKS as STOCK
from n2v_repro.models.spec import ARCHS

REPO_ROOT = Path(__file__).resolve().parents[1]
# Names that look like an arch, to catch a stale one (a renamed or removed network).
ARCH_LIKE = re.compile(r"n2[nv]_unet\d*|rednet\d+")


def read(name: str) -> str:
    return (REPO_ROOT / name).read_text()


def flat(text: str) -> str:
    """Whitespace (line breaks included) collapsed to single spaces."""
    return " ".join(text.split())


def between(text: str, start: str, end: str) -> str:
    """The text after `start` up to the first `end` after it; both must be there."""
    text = flat(text)
    assert start in text, f"the doc no longer says {start!r}: update this test's marker"
    after = text.split(start, 1)[1]
    assert end in after, f"no {end!r} after {start!r}"
    return after.split(end, 1)[0]


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of each body row of the table whose header line starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        # A cell may hold an escaped pipe (`float \| None`): split on the others only.
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


def arch_names(text: str) -> set[str]:
    return {name for name in backticked(text) if ARCH_LIKE.fullmatch(name) or name in ARCHS}


ARCH_LISTS = {
    "README.md": lambda: between(
        read("README.md"), "`train.arch` chooses the network:", "`docs/models.md` describes"
    ),
    "docs/gpu.md": lambda: between(read("docs/gpu.md"), "every arch** (", "):"),
    "docs/backend_interface.md": lambda: between(
        read("docs/backend_interface.md"), "| `arch: str` |", "|"
    ),
}


@pytest.mark.parametrize("doc", sorted(ARCH_LISTS))
def test_the_doc_lists_every_arch(doc: str) -> None:
    names = arch_names(ARCH_LISTS[doc]())
    assert names == set(ARCHS), (
        f"{doc}: missing {sorted(set(ARCHS) - names)}, not archs {sorted(names - set(ARCHS))}"
    )


def test_models_md_table_has_one_row_per_arch_in_order() -> None:
    rows = table_rows(read("docs/models.md"), "| arch | from |")
    assert [backticked(row[0])[0] for row in rows] == list(ARCHS)


def test_arch_list_check_catches_a_missing_arch() -> None:
    # The README sentence as it was before n2v_unet32 was added.
    old = (
        "`train.arch` chooses the network: `n2n_unet` (the port's U-Net, default), "
        "`n2v_unet` (the paper's), or the port's `rednet10`, `rednet20`, `rednet30` (e.g. "
        "`train: {arch: rednet30}` in a file); `docs/models.md` describes them."
    )
    names = arch_names(between(old, "`train.arch` chooses the network:", "`docs/models.md`"))
    assert set(ARCHS) - names == {"n2v_unet32", "n2v2_unet", "n2v2_unet32"}


FRAMEWORK_LISTS = {
    "docs/architecture.md": lambda: between(read("docs/architecture.md"), "`{framework}` is", "("),
    "docs/backend_interface.md": lambda: between(
        read("docs/backend_interface.md"), "| `name: str` |", "|"
    ),
}


# What each list names: a run's frameworks, or the backends' names (the packages).
FRAMEWORK_LIST_NAMES = {"docs/architecture.md": FRAMEWORKS, "docs/backend_interface.md": STOCK}


@pytest.mark.parametrize("doc", sorted(FRAMEWORK_LISTS))
def test_the_doc_lists_every_framework(doc: str) -> None:
    text, expected = FRAMEWORK_LISTS[doc](), FRAMEWORK_LIST_NAMES[doc]
    names = set(backticked(text))
    assert names == set(expected), f"{doc}: {text!r} does not name exactly {expected}"


def test_backend_interface_doc_states_frameworks_as_the_registry() -> None:
    found = re.search(r"`FRAMEWORKS` is `([^`]+)`", flat(read("docs/backend_interface.md")))
    assert found, "docs/backend_interface.md no longer states FRAMEWORKS"
    assert ast.literal_eval(found.group(1)) == FRAMEWORKS


# --- the backend interface ---------------------------------------------------------------------


def public_backend_members() -> set[str]:
    """Backend's public methods and properties, class annotations and `self.x` attributes."""
    members = {
        name
        for name, value in inspect.getmembers(Backend)
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }
    members |= {name for name in Backend.__annotations__ if not name.startswith("_")}
    init = ast.parse(inspect.getsource(Backend.__init__).strip())
    for node in ast.walk(init):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and not node.attr.startswith("_")
        ):
            members.add(node.attr)
    return members


def documented_members() -> set[str]:
    """The members named at the start of a backticked span in the first column of the table."""
    rows = table_rows(read("docs/backend_interface.md"), "| member | meaning |")
    return {re.match(r"\w+", span).group(0) for row in rows for span in backticked(row[0])}


def test_backend_interface_doc_names_every_public_member() -> None:
    public = public_backend_members()
    # The members added with queued training steps and CUDA precision must be seen.
    assert {"precision", "queue_train_step", "read_losses", "train_step"} <= public
    documented = documented_members()
    assert not public - documented, f"docs/backend_interface.md lacks {sorted(public - documented)}"
    assert not documented - public, (
        f"docs/backend_interface.md documents {sorted(documented - public)}, not on Backend"
    )


def test_backend_interface_doc_names_every_abstract_tensor_method() -> None:
    text = read("docs/backend_interface.md")
    underscored = {name for name in Backend.__abstractmethods__ if name.startswith("_")}
    missing = {name for name in underscored if f"`{name}`" not in text}
    assert not missing, f"docs/backend_interface.md does not name {sorted(missing)}"
