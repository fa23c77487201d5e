"""Paths named in the docs, sources and messages are the pipeline's real ones.

The path patterns are defined once, in n2v_repro.paths; the docs, the denoise
command's examples and its error hints repeat them, and drifted once (`results/models/...`).
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from n2v_repro import paths

REPO_ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve()

# The tracked text a user reads: docs, sources (docstrings, comments, messages), the workflow.
DOC_AND_SOURCE = ["README.md", "docs/*.md", "src/*.py", "workflow/*"]
# Every tracked text file outside the tests and CI, which place the dataset mirror in ../shared.
OUTSIDE_TESTS = ["*"]
TEXT_SUFFIXES = {".md", ".py", ".smk", ".yaml", ".yml", ".rst", ".txt", ".sh", ".toml", ".json"}
TEXT_NAMES = {"Snakefile"}


def repo_files(patterns: list[str]) -> list[Path]:
    """Text files of the checkout (tracked, or new and not ignored) matching `patterns`.

    fnmatch's `*` also matches `/`, so `docs/*.md` covers docs/measured/ too.
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        # No git (an exported tree): every file, less what .gitignore keeps out of git.
        skip = (".git/", ".venv/", ".cache/", ".snakemake/", "results/", "resources/", "logs/")
        names = [
            path.relative_to(REPO_ROOT).as_posix()
            for path in REPO_ROOT.rglob("*")
            if path.is_file()
            and not path.relative_to(REPO_ROOT).as_posix().startswith(skip)
            and "__pycache__" not in path.parts
        ]
    files = []
    for name in sorted(set(names)):
        path = REPO_ROOT / name
        is_text = path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES
        matched = any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
        # A file deleted in the working tree but still in git's index is not text to read.
        if is_text and matched and path.is_file() and path.resolve() != THIS_FILE:
            files.append(path)
    return files


def occurrences(files: list[Path], needle: str) -> list[str]:
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if needle in line:
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    return found


# --- item: the path patterns of n2v_repro.paths -------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Snakemake pattern as a regex: each `{wildcard}` stands for one path component part."""
    parts = re.split(r"\{[a-z_]+\}", pattern)
    return re.compile("[^/]+".join(map(re.escape, parts)))


@pytest.mark.parametrize(
    "stale", ["results/models/", "resources/patches/sigma", "results/checkpoints"]
)
def test_no_doc_or_source_names_an_old_path(stale: str) -> None:
    files = repo_files(DOC_AND_SOURCE + ["profiles/*", "envs/*", "config/*.yaml"])
    assert len(files) > 50
    found = occurrences(files, stale)
    assert not found, f"old path {stale!r} (see n2v_repro.paths):\n" + "\n".join(found)


def concrete_paths(text: str, prefix: str) -> list[str]:
    """Paths starting with `prefix` in `text` that hold no placeholder (`{...}`, `<...>`)."""
    found = re.findall(re.escape(prefix) + r"[^\s`'\"),;]*", text)
    return [path.rstrip(".:") for path in found if not re.search(r"[{}<>]", path)]


def test_example_weights_and_stats_paths_follow_the_patterns() -> None:
    """Every concrete weights or stats path in the docs and sources fits the real pattern."""
    model = pattern_regex(paths.MODEL_DIR + "/")
    patches = pattern_regex(paths.PATCH_DIR + "/")
    checked, wrong = 0, []
    for path in repo_files(DOC_AND_SOURCE):
        text = path.read_text()
        weights = re.findall(r"--weights\s+(\S+)", text)
        weights += [p for p in concrete_paths(text, "results/") if "/model/" in p]
        for example in weights:
            checked += 1
            folder, _, name = example.rpartition("/")
            if not (model.fullmatch(folder + "/") and name):
                wrong.append(f"{path.relative_to(REPO_ROOT)}: {example}")
        for example in concrete_paths(text, "resources/patches/"):
            checked += 1
            if not patches.match(example):
                wrong.append(f"{path.relative_to(REPO_ROOT)}: {example}")
    assert not wrong, "paths that do not fit n2v_repro.paths:\n" + "\n".join(wrong)
    # README and denoise.py each show two --weights examples; the hints show more.
    assert checked >= 6


# --- item: README's layout block ----------------------------------------------------------------

PACKAGE = REPO_ROOT / "src" / "n2v_repro"


def layout_block() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```\n", 2)[1].splitlines()


def layout_entries() -> list[tuple[int, str, str]]:
    """(indent, first column, description with its continuation lines) per entry."""
    entries: list[tuple[int, str, str]] = []
    for line in layout_block():
        indent = len(line) - len(line.lstrip())
        if indent >= 10:  # a continuation of the entry above
            level, key, description = entries[-1]
            entries[-1] = (level, key, f"{description} {line.strip()}")
        elif line.strip():
            key, _, description = line.strip().partition(" ")
            entries.append((indent, key, description.strip()))
    return entries


def module_names(description: str) -> list[str]:
    """The module names of a description: its words outside parentheses."""
    return re.findall(r"[A-Za-z_]\w*", re.sub(r"\([^)]*\)", "", description))


def test_readme_layout_names_only_existing_paths() -> None:
    missing = []
    for indent, key, description in layout_entries():
        if indent:
            continue
        folder = REPO_ROOT / key
        if not folder.exists():
            missing.append(key)
        if key.endswith("/"):
            # Files and folders named in a folder's description, e.g. `common.smk`, `data/`.
            plain = re.sub(r"\([^)]*\)", "", description)
            for name in re.findall(r"(?<![\w/.])[\w-]+(?:\.\w+|/)(?![\w/])", plain):
                if not (folder / name).exists():
                    missing.append(f"{key}{name}")
        for module in re.findall(r"n2v_repro(?:\.\w+)+", description):
            parts = module.split(".")
            if not any(
                (REPO_ROOT / "src" / Path(*parts)).with_suffix(suffix).exists()
                for suffix in (".py", "")
            ):
                missing.append(module)
    assert not missing, f"README's layout block names paths that do not exist: {missing}"


def test_readme_layout_lists_every_module_of_the_package() -> None:
    """The src/n2v_repro/ entries name exactly the package's modules, each where it lives."""
    named: set[str] = set()
    in_package = False
    for indent, key, description in layout_entries():
        if indent == 0:
            in_package = key == "src/n2v_repro/"
            continue
        assert in_package, f"indented layout entry {key!r} outside src/n2v_repro/"
        folder = "" if key == "*.py" else key
        named |= {f"{folder}{name}.py" for name in module_names(description)}
    actual = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    assert not named - actual, f"README's layout names modules that do not exist: {named - actual}"
    assert not actual - named, f"README's layout leaves out modules: {sorted(actual - named)}"


@pytest.mark.parametrize("removed", ["jittor_winograd", "test_jittor_kernels"])
def test_no_doc_or_source_names_a_removed_file(removed: str) -> None:
    # Removed with the hand-written Jittor kernels: both frameworks now run their own ops.
    found = occurrences(repo_files(DOC_AND_SOURCE + ["tests/*"]), removed)
    assert not found, f"{removed} no longer exists:\n" + "\n".join(found)


# --- item: no reference outside the repository -------------------------------------------------


def test_no_doc_source_or_message_points_outside_the_repository() -> None:
    """`../shared` is a development machine's folder, not part of the project.

    tests/ and .ci/ may use it (CI places the dataset mirror there). README may name
    `../shared/data/BSDS500` only where it says where the tests find the dataset.
    """
    files = [
        path
        for path in repo_files(OUTSIDE_TESTS)
        if path.relative_to(REPO_ROOT).parts[0] not in {"tests", ".ci"}
    ]
    readme_path = REPO_ROOT / "README.md"
    assert readme_path in files
    found = []
    for path in files:
        if path == readme_path:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "../shared" in line or "shared/docs" in line:
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    for paragraph in re.split(r"\n\s*\n", readme_path.read_text()):
        if "../shared" in paragraph or "shared/docs" in paragraph:
            allowed = re.sub(r"`\.\./shared/data/BSDS500`", "", paragraph)
            if "../shared" in allowed or "shared/docs" in allowed or "test" not in paragraph:
                found.append(f"README.md: {paragraph.strip()[:120]}...")
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_protocol_section_references_exist() -> None:
    """`protocol.md section N` must be a numbered section of the in-repo docs/protocol.md."""
    protocol = (REPO_ROOT / "docs" / "protocol.md").read_text()
    sections = set(re.findall(r"^#+\s*(\d+)\.", protocol, flags=re.MULTILINE))
    reference = re.compile(r"protocol\.md,?\s+(?:sections?\s+|s\.\s*)?(\d+)")
    dangling = []
    for path in repo_files(OUTSIDE_TESTS):
        text = path.read_text(errors="replace")
        # Over the whole text: a reference may break across lines.
        for match in reference.finditer(text):
            if match.group(1) not in sections:
                line = text.count("\n", 0, match.start()) + 1
                where = path.relative_to(REPO_ROOT)
                dangling.append(f"{where}:{line}: {' '.join(match.group(0).split())}")
    assert not dangling, "references to sections docs/protocol.md lacks:\n" + "\n".join(dangling)
