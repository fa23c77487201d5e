"""The package's layers: each subpackage imports only from those below it, so the structure
drawn in docs/architecture.md stays true."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "n2v_repro"

# Bottom to top; a module may import from its own layer or any layer listed before it.
LAYERS = [
    {"io", "errors", "config", "logs", "framework_site", "paths"},
    {"data", "models"},
    {"backends"},
    {"evaluation"},
    {"training"},
    # references: its adapters train and score with training/evaluation; the report reads it.
    {"report", "parity", "cli", "gpu_check", "references", "pipeline"},
    # bioimage.io export: the package's network (models), test output (evaluation,
    # backends) and the report's table (report).
    {"bmz"},
]


# The modules at the top of the package, each with its reason; everything else is in a
# subpackage that names what it is.
FLAT_MODULES = {
    "config": "the validated config, imported by every layer",
    "errors": "UserError, the base of every user-facing error",
    "logs": "the scripts' and tools' logging, imported by every script",
    "paths": "every path pattern, for the rules, the scripts and the tools",
    "framework_site": "imported by the framework scripts before numpy is",
}


def test_only_the_listed_modules_stay_at_the_top_of_the_package() -> None:
    flat = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert flat == set(FLAT_MODULES), "a new top-level module: put it in a subpackage"


def layer_of(part: str) -> int:
    for level, names in enumerate(LAYERS):
        if part in names:
            return level
    raise AssertionError(f"n2v_repro.{part} is in no layer of LAYERS: add it there")


def imported_parts(path: Path) -> set[str]:
    """First component after `n2v_repro.` of every n2v_repro import in a module."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "n2v_repro":
                names = [f"n2v_repro.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        parts |= {name.split(".")[1] for name in names if name.startswith("n2v_repro.")}
    return parts


def test_every_import_points_down_or_sideways() -> None:
    upward = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    for path in modules:
        relative = path.relative_to(PACKAGE)
        if relative.name == "__init__.py" and len(relative.parts) == 1:
            continue
        own = layer_of(relative.parts[0].removesuffix(".py"))
        for part in imported_parts(path):
            if layer_of(part) > own:
                upward.append(f"{relative} imports n2v_repro.{part}")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from n2v_repro.report.tables import make_tables\n")
    assert imported_parts(module) == {"report"}
    assert layer_of("report") > layer_of("data")
