"""A framework's own package folder, first on the path, on a machine with one Python for both.

The GPU machine has a single python3 whose numpy is 2.x (torch's); Jittor 1.3.11 needs
numpy < 2. `tools/gpu_wheels.py install` puts numpy 1.26.4 and Jittor into a folder of their
own and exports its path as N2V_SITE_JITTOR; a Jittor job calls `use_framework_site("jittor")`
before anything imports numpy, a torch job leaves the path alone. Without the variable (the
conda environments, a development venv) nothing changes. Standard library only: importing
this module must not import numpy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

SITE_ENV = {"jittor": "N2V_SITE_JITTOR", "torch": "N2V_SITE_TORCH"}


def framework_package(framework: str) -> str:
    """Return the framework package a run's framework runs: `jittor-exactbn` runs jittor.

    A labelled variant of a framework is named `<framework>-<variant>`
    (`backends.registry.FRAMEWORKS`).
    """
    return framework.split("-", 1)[0]


def use_framework_site(framework: str) -> Path | None:
    """Put the folder named by N2V_SITE_<FRAMEWORK> first on sys.path and PYTHONPATH.

    PYTHONPATH carries it to child interpreters (Jittor starts some). Returns the folder, or
    None when the variable is unset or empty. Raises FileNotFoundError for a missing folder
    and RuntimeError when numpy was already imported from elsewhere (too late to switch).
    """
    framework = framework_package(framework)
    if framework not in SITE_ENV:
        raise ValueError(f"framework must be one of {', '.join(SITE_ENV)}, got {framework!r}")
    variable = SITE_ENV[framework]
    value = os.environ.get(variable, "")
    if not value:
        return None
    folder = Path(value).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{variable}={value}: no such folder (made by `tools/gpu_wheels.py install`)"
        )
    numpy = sys.modules.get("numpy")
    if numpy is not None and not str(Path(numpy.__file__ or "").resolve()).startswith(str(folder)):
        raise RuntimeError(
            f"numpy {numpy.__version__} was imported from {numpy.__file__} before "
            f"{variable} could take effect: call use_framework_site() first"
        )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(folder) not in inherited:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *inherited])
    return folder


def framework_env(framework: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for a child process of `framework`: its folder first on PYTHONPATH.

    For a parent that has already imported numpy (its own, e.g. torch's numpy 2) and starts a
    Jittor worker: the child then imports numpy from N2V_SITE_JITTOR. A copy of `base`
    (default os.environ), unchanged when the variable is unset or empty.
    """
    framework = framework_package(framework)
    if framework not in SITE_ENV:
        raise ValueError(f"framework must be one of {', '.join(SITE_ENV)}, got {framework!r}")
    env = dict(os.environ if base is None else base)
    value = env.get(SITE_ENV[framework], "")
    if value:
        folder = str(Path(value).resolve())
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
        env["PYTHONPATH"] = os.pathsep.join([folder, *inherited])
    return env


def onednn_dirs(prefix: Path = Path(sys.prefix)) -> tuple[Path, Path]:
    """Return the (lib, include) folders of the PyPI oneDNN that Jittor uses on the CPU.

    The onednn-cpu-gomp wheels install into the environment's prefix; jittor_env links
    Jittor's oneDNN folder to them.
    """
    return prefix / "lib", prefix / "include"
