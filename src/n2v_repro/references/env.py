"""Each reference's own environment: a venv built from its envs/ file by the pipeline.

The references' libraries conflict with the pipeline's stack (TensorFlow 2.15 needs numpy < 2;
CAREamics needs torch 2.11), so each gets a venv of its own, built once by the rule
reference_env from the pinned pip list of its envs/ref-*.yaml, with <repo>/src linked in by
a .pth file (what an editable install writes) so that the adapter inside reads the
pipeline's files with the pipeline's readers. `built.json` is written last: a build that
failed or was interrupted leaves none, and the next run builds again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from n2v_repro.errors import UserError
from n2v_repro.io.atomic import write_json
from n2v_repro.references.registry import Reference, reference

log = logging.getLogger(__name__)

BUILT = "built.json"
# pip's words when it could not reach the package index (offline, DNS, proxy, timeout).
UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|ConnectTimeout|"
    r"Connection refused|Could not fetch URL|ProxyError|No matching distribution found"
)
# The interpreter to build with, when `python<version>` on PATH is not the one wanted.
PYTHON_VARIABLE = "N2V_REFERENCE_PYTHON"


class ReferenceEnvError(UserError, RuntimeError):
    """A reference's environment cannot be built, or is missing or broken."""


def venv_dir(prefix: str | Path) -> Path:
    return Path(prefix) / "venv"


def env_python(prefix: str | Path) -> Path:
    return venv_dir(prefix) / "bin" / "python"


def rebuild_hint(prefix: str | Path) -> str:
    return f"rebuild it with: rm -rf {prefix} && bash run.sh <your arguments>"


def pip_requirements(env_file: str | Path) -> list[str]:
    """Return the pinned pip list of an envs/ file (its `pip:` section), each `name==version`."""
    with open(env_file) as handle:
        env = yaml.safe_load(handle)
    for item in env.get("dependencies", []):
        if isinstance(item, dict) and "pip" in item:
            pins = [str(line) for line in item["pip"]]
            loose = [p for p in pins if "==" not in p]
            if loose:
                raise ReferenceEnvError(f"{env_file}: pip entries must be pinned (==): {loose}")
            return pins
    raise ReferenceEnvError(f"{env_file}: no pip section in dependencies")


def _version_of(python: str) -> str | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_python(ref: Reference) -> str:
    """Find the interpreter of `ref.python`: $N2V_REFERENCE_PYTHON, python3.X, this one."""
    candidates = [os.environ.get(PYTHON_VARIABLE), shutil.which(f"python{ref.python}")]
    candidates.append(sys.executable)
    for candidate in candidates:
        if candidate and _version_of(candidate) == ref.python:
            return candidate
    raise ReferenceEnvError(
        f"reference environment {ref.name} ({ref.env_file}) needs Python {ref.python}; none "
        f"found (tried ${PYTHON_VARIABLE}, python{ref.python} on PATH, {sys.executable}): "
        f"set {PYTHON_VARIABLE}=/path/to/python{ref.python}"
    )


def _run(command: list[str], log_path: Path) -> tuple[int, str]:
    """Run `command`, its output appended to `log_path`; return (status, output)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    with open(log_path, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n{output}\n")
    return done.returncode, output


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_env(
    name: str, prefix: str | Path, repo_root: str | Path, log_path: str | Path
) -> dict[str, Any]:
    """Build reference `name`'s venv under `prefix` and write prefix/built.json."""
    ref = reference(name)
    prefix, repo_root, log_path = Path(prefix), Path(repo_root), Path(log_path)
    env_file = repo_root / ref.env_file
    pins = pip_requirements(env_file)
    python = find_python(ref)
    (prefix / BUILT).unlink(missing_ok=True)
    shutil.rmtree(venv_dir(prefix), ignore_errors=True)
    prefix.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    status, output = _run([python, "-m", "venv", str(venv_dir(prefix))], log_path)
    if status != 0:
        raise ReferenceEnvError(
            f"reference environment {name}: `{python} -m venv {venv_dir(prefix)}` failed "
            f"(see {log_path})"
        )
    pip = [str(env_python(prefix)), "-m", "pip", "install", "--disable-pip-version-check"]
    log.info("building %s in %s: %s", name, prefix, " ".join(pins))
    status, output = _run([*pip, *pins], log_path)
    if status != 0:
        reason = UNREACHABLE.search(output)
        if reason:
            raise ReferenceEnvError(
                f"reference environment {name} ({ref.env_file}): pip could not reach the "
                f"package index ({reason.group(0)}; see {log_path}); once it can, "
                + rebuild_hint(prefix)
            )
        raise ReferenceEnvError(
            f"reference environment {name} ({ref.env_file}): pip install failed "
            f"(see {log_path}); " + rebuild_hint(prefix)
        )
    _link_package(prefix, repo_root / "src", log_path)
    versions = check_env(name, prefix)
    built = {
        "reference": name,
        "env_file": ref.env_file,
        "env_file_sha256": _sha256(env_file),
        "python": python,
        "requirements": pins,
        "versions": versions,
    }
    write_json(prefix / BUILT, built)
    return built


def _link_package(prefix: Path, src: Path, log_path: Path) -> None:
    """Put <repo>/src on the venv's path with a .pth file, as an editable install does."""
    status, output = _run(
        [
            str(env_python(prefix)),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        log_path,
    )
    if status != 0:
        raise ReferenceEnvError(f"{env_python(prefix)} does not run (see {log_path})")
    site = Path(output.strip().splitlines()[0])
    (site / "n2v_repro.pth").write_text(f"{src.resolve()}\n")


def check_env(name: str, prefix: str | Path) -> dict[str, str]:
    """Import the reference's library and n2v_repro in its venv; return their versions."""
    ref = reference(name)
    python = env_python(prefix)
    script = (
        "import importlib.metadata as m, sys, n2v_repro, " + ref.imports + "; "
        f"print(sys.version.split()[0]); print(m.version({ref.library!r}))"
    )
    problem = None
    if not python.exists():
        problem = f"{python} does not exist"
    else:
        done = subprocess.run(
            [str(python), "-c", script], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            python_version, library_version = done.stdout.split()[-2:]
            return {"python": python_version, ref.library: library_version}
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        problem = lines[-1] if lines else f"exit status {done.returncode}"
    raise ReferenceEnvError(
        f"reference environment {name} at {prefix} is missing or broken ({problem}); "
        + rebuild_hint(prefix)
    )
