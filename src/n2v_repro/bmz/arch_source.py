"""The self-contained PyTorch architecture file that a bioimage.io package ships.

A `pytorch_state_dict` entry names a Python file and a callable in it; bioimage.io's loader
imports that one file on its own, so it may import nothing of this project. The file is
generated from `n2v_repro.models.torch_nets` rather than written a second time: the module's
own source, with its `from n2v_repro... import` lines replaced by the definitions they import
(constants as literals, functions by their source, with the module globals those functions
use). A network added to torch_nets is thus exported without touching this module; one whose
imports cannot be inlined fails here, at export, naming the name.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from pathlib import Path
from typing import Any

from n2v_repro.errors import UserError

SOURCE_MODULE = "n2v_repro.models.torch_nets"
PROJECT_PACKAGE = "n2v_repro"
# The callable of the package's architecture entry: build_model(arch=...).
ARCH_CALLABLE = "build_model"
# Values that `repr` writes back as valid Python literals.
LITERAL_TYPES = (bool, int, float, str, type(None))


class ArchSourceError(UserError, ValueError):
    """torch_nets imports something of the project that cannot be written into one file."""


def _is_literal(value: Any) -> bool:
    if isinstance(value, LITERAL_TYPES):
        return True
    if isinstance(value, tuple | list | frozenset | set):
        return all(_is_literal(item) for item in value)
    if isinstance(value, dict):
        return all(_is_literal(k) and _is_literal(v) for k, v in value.items())
    return False


def _global_names(function: types.FunctionType) -> set[str]:
    """Return the global names a function's code (nested code objects included) may read."""
    names: set[str] = set()
    stack = [function.__code__]
    while stack:
        code = stack.pop()
        names |= set(code.co_names)
        stack += [const for const in code.co_consts if isinstance(const, types.CodeType)]
    return names


def _definitions(module: types.ModuleType, names: list[str]) -> tuple[list[str], list[str]]:
    """Source lines of `names` from `module`, with the module globals that functions need.

    Returns (constants, functions): constants first so that the functions' defaults and the
    importing module's class bodies can read them.
    """
    constants: dict[str, str] = {}
    functions: dict[str, str] = {}
    pending = list(names)
    while pending:
        name = pending.pop(0)
        if name in constants or name in functions:
            continue
        if not hasattr(module, name):
            continue  # a builtin or an attribute name that the code reads, not a global
        value = getattr(module, name)
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            functions[name] = inspect.getsource(value) + "\n"
            pending += sorted(_global_names(value))
        elif _is_literal(value):
            constants[name] = f"{name} = {value!r}"
        elif isinstance(value, types.ModuleType) or name.startswith("__"):
            continue  # e.g. `math` inside a helper: imported again below if used
        else:
            raise ArchSourceError(
                f"{module.__name__}.{name} ({type(value).__name__}) cannot be written into the "
                "bioimage.io architecture file: only literals and plain functions can"
            )
    return list(constants.values()), list(functions.values())


def arch_source() -> str:
    """Return the source of the self-contained architecture file (no project imports)."""
    module = importlib.import_module(SOURCE_MODULE)
    path = Path(inspect.getsourcefile(module) or "")
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    inlined: list[str] = []
    replaced: list[tuple[int, int]] = []
    std_imports: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PROJECT_PACKAGE):
            imported = importlib.import_module(node.module or "")
            names = [alias.name for alias in node.names]
            if any(alias.asname for alias in node.names):
                raise ArchSourceError(f"{path}: `import ... as` from {node.module} is not inlined")
            constants, functions = _definitions(imported, names)
            # Helper functions may use modules their own module imported (math, ...).
            for function_name in names:
                value = getattr(imported, function_name)
                if isinstance(value, types.FunctionType):
                    for used in _global_names(value):
                        if isinstance(getattr(imported, used, None), types.ModuleType):
                            std_imports.add(getattr(imported, used).__name__)
            inlined += [f"# Inlined from {node.module}.", *constants, "", "", *functions]
            replaced.append((node.lineno, node.end_lineno or node.lineno))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name.split(".")[0] == PROJECT_PACKAGE:
                    raise ArchSourceError(f"{path}: line {node.lineno} imports {alias.name}")
    if not replaced:
        body = lines
    else:
        first, last = replaced[0][0], replaced[-1][1]
        kept_before = lines[: first - 1]
        kept_after = [
            line
            for number, line in enumerate(lines[last:], start=last + 1)
            if not any(a <= number <= b for a, b in replaced)
        ]
        extra = [f"import {name}" for name in sorted(std_imports)]
        body = [*kept_before, *extra, "", *inlined, "", *kept_after]
    header = (
        f"# Generated from {PROJECT_PACKAGE}/models/torch_nets.py by {__name__}: the networks\n"
        "# of the n2v_repro project (Noise2Void on BSD68 in PyTorch and Jittor) without its\n"
        f"# imports. bioimage.io loads `{ARCH_CALLABLE}(arch=...)` from this file alone.\n"
    )
    source = header + "\n".join(body).rstrip() + "\n"
    _check_self_contained(source)
    return source


def _check_self_contained(source: str) -> None:
    """Check that the generated file parses and imports nothing of the project."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        for module in modules:
            if module.split(".")[0] == PROJECT_PACKAGE:
                raise ArchSourceError(f"the generated architecture file still imports {module}")


def write_arch_source(path: str | Path) -> Path:
    """Write `arch_source()` to `path` and return it."""
    path = Path(path)
    path.write_text(arch_source())
    return path
