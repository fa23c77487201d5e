"""The per-rule conda environments (envs/*.yaml): well-formed, pinned like requirements.txt,
and each enough on its own for the rules that use it.

conda cannot be used here (no conda-forge access), so the slow tests build each environment
as a plain venv (kept in .cache/test-envs) from the same package list, mapped to PyPI names,
and run the library code of that environment's rules inside it (tests/env_stages.py): the
analysis env runs the data stage and the tables/figures, the torch env trains and evaluates
without Jittor installed, the jittor env without PyTorch. pip's cache is reused between runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import env_stages
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = REPO_ROOT / "envs"
ENV_NAMES = ("analysis", "torch", "jittor", "bm3d", "bioimageio")
TESTS_DIR = Path(__file__).resolve().parent
# conda-forge names that differ on PyPI; None: not a pip package (the interpreter, pip).
CONDA_TO_PIP: dict[str, str | None] = {
    "python": None,
    "pip": None,
    "matplotlib-base": "matplotlib",
    "pytorch": "torch",
}
FRAMEWORK_PACKAGES = {
    "torch": {"torch"},
    "jittor": {"jittor", "onednn-cpu-gomp", "onednn-devel-cpu-gomp"},
}


def load_env(name: str) -> dict:
    with open(ENV_DIR / f"{name}.yaml") as handle:
        return yaml.safe_load(handle)


def conda_packages(env: dict) -> dict[str, str | None]:
    """conda package name -> pinned version (None when unpinned), pip section excluded."""
    packages: dict[str, str | None] = {}
    for item in env["dependencies"]:
        if isinstance(item, str):
            name, _, version = item.partition("=")
            packages[name.strip()] = version.strip() or None
    return packages


def pip_lines(env: dict) -> list[str]:
    for item in env["dependencies"]:
        if isinstance(item, dict) and "pip" in item:
            return list(item["pip"])
    return []


def pip_requirements(env: dict) -> list[str]:
    """The environment as pip requirement lines (what a venv needs to match it)."""
    lines = []
    for name, version in conda_packages(env).items():
        pip_name = CONDA_TO_PIP.get(name, name)
        if pip_name is not None:
            lines.append(f"{pip_name}=={version}" if version else pip_name)
    return lines + pip_lines(env)


def requirement_name(line: str) -> str:
    return re.split(r"[=<>!~ \[;]", line.strip(), maxsplit=1)[0].lower()


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


# --- the files themselves (fast) ------------------------------------------------------------


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_file_is_conda_forge_only_and_python_311(name: str) -> None:
    env = load_env(name)
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert conda_packages(env)["python"] == "3.11"
    if pip_lines(env):
        assert "pip" in conda_packages(env), "a pip: section needs pip in the environment"


# requirements.txt holds both stacks, so it pins Jittor's numpy < 2; the environments
# without Jittor take numpy 2 (the issue: numpy < 2 only where Jittor needs it).
OWN_PINS = {
    "torch": {"numpy"},
    "analysis": {"numpy"},
    "jittor": set(),
    "bm3d": {"numpy"},
    "bioimageio": {"numpy"},
}


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_pins_match_requirements(name: str) -> None:
    """Every package is pinned, to the version the tests run on (requirements.txt), except
    numpy outside the Jittor environment."""
    pins = pinned_requirements()
    for line in pip_requirements(load_env(name)):
        package = requirement_name(line)
        assert "==" in line, f"envs/{name}.yaml: {package} is not pinned"
        version = line.split("==", 1)[1].strip()
        assert package in pins, f"envs/{name}.yaml: {package} is not in requirements.txt"
        if package in OWN_PINS[name]:
            continue
        assert version == pins[package], (
            f"envs/{name}.yaml pins {package} {version}, requirements.txt {pins[package]}"
        )


@pytest.mark.parametrize(
    ("name", "numpy_major"),
    [("torch", 2), ("analysis", 2), ("bm3d", 2), ("jittor", 1), ("bioimageio", 2)],
)
def test_numpy_2_only_outside_the_jittor_env(name: str, numpy_major: int) -> None:
    """Jittor 1.3.11 returns garbage from Var.numpy() under numpy 2 (docs/migration.md)."""
    version = conda_packages(load_env(name))["numpy"]
    assert int(version.split(".")[0]) == numpy_major, f"envs/{name}.yaml pins numpy {version}"


# The frameworks each environment holds: its own, and PyTorch for the bioimage.io export
# (a Jittor-trained model is exported and validated through the same PyTorch network).
ENV_FRAMEWORKS = {"torch": {"torch"}, "jittor": {"jittor"}, "bioimageio": {"torch"}}


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_holds_no_foreign_framework(name: str) -> None:
    packages = {requirement_name(line) for line in pip_requirements(load_env(name))}
    for framework, framework_packages in FRAMEWORK_PACKAGES.items():
        if framework in ENV_FRAMEWORKS.get(name, set()):
            assert framework_packages <= packages, f"envs/{name}.yaml lacks its framework"
        else:
            assert not packages & framework_packages, f"envs/{name}.yaml holds {framework}"


def test_rules_point_at_existing_envs() -> None:
    """Every `conda:` directive of the workflow names one of these files."""
    referenced = set()
    for rules_file in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):
        referenced |= set(re.findall(r"envs/(\w+)\.yaml", rules_file.read_text()))
    assert referenced, "no rule names a conda environment"
    assert referenced <= set(ENV_NAMES), referenced - set(ENV_NAMES)


# --- each environment alone runs its rules' code (slow) -------------------------------------


def clean_environment(root: Path) -> dict[str, str]:
    """Nothing from the test's own venv: only the repo's src and tests folders are added.

    HOME is private too: Jittor rewrites ~/.cache/jittor/config.json (not atomically) whenever
    JITTOR_HOME differs from the one recorded there, so processes of different Jittor homes
    running at once (other tests, other users of the account) corrupt it for each other.
    """
    home = root / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": os.pathsep.join(
            p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(sys.prefix)
        ),
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(TESTS_DIR)]),
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": "2",
        "MPLBACKEND": "Agg",
        "JITTOR_HOME": str(root / "jittor_home"),
        # pip's cache stays the user's, so wheels are not downloaded again.
        "PIP_CACHE_DIR": os.environ.get(
            "PIP_CACHE_DIR", str(Path(os.environ.get("HOME", "/root")) / ".cache" / "pip")
        ),
    }
    for key in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "TMPDIR", "LANG"):
        if key in os.environ:
            environment[key] = os.environ[key]
    return environment


def env_fingerprint(name: str) -> str:
    return hashlib.sha256((ENV_DIR / f"{name}.yaml").read_bytes()).hexdigest()[:12]


class EnvBuilder:
    """Builds each environment once, as a venv; runs the stages of tests/env_stages.py in it.

    The venvs (and the jittor env's compiled Jittor core, ~2-4 min of g++ for every new
    install path) are kept in <repo>/.cache/test-envs, keyed by a hash of the env file, so a
    rerun reuses them; a changed env file gets a fresh venv. The pipeline's outputs go to a
    new temporary folder each session.
    """

    def __init__(self, cache_root: Path, workdir: Path) -> None:
        self.cache_root = cache_root
        self.workdir = workdir
        cache_root.mkdir(parents=True, exist_ok=True)

    @functools.cache  # noqa: B019 - one builder per session; the cache is the point
    def python(self, name: str) -> Path:
        venv = self.cache_root / f"venv-{name}-{env_fingerprint(name)}"
        python = venv / "bin" / "python"
        done = venv / "installed.txt"
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            requirements = "\n".join(pip_requirements(load_env(name))) + "\n"
            (venv / "requirements.txt").write_text(requirements)
            install = [str(python), "-m", "pip", "install", "--progress-bar", "off"]
            self.run([*install, "-r", str(venv / "requirements.txt")], timeout_s=900)
            done.write_text(requirements)
        self.run([str(python), "-m", "pip", "check"], timeout_s=120)
        return python

    @functools.cache  # noqa: B019
    def stage(self, env_name: str, stage: str) -> str:
        """Run one stage of tests/env_stages.py in the environment; return its output."""
        python = self.python(env_name)
        return self.run(
            [str(python), str(TESTS_DIR / "env_stages.py"), stage, str(self.workdir)],
            timeout_s=900,
        )

    def run(self, command: list[str], timeout_s: float) -> str:
        result = subprocess.run(
            command,
            env=clean_environment(self.cache_root),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-6000:]}"
        return result.stdout


@pytest.fixture(scope="session")
def envs(tmp_path_factory: pytest.TempPathFactory) -> EnvBuilder:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the envs pin python 3.11; the venvs are built from this interpreter")
    return EnvBuilder(REPO_ROOT / ".cache" / "test-envs", tmp_path_factory.mktemp("env-stages"))


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "jittor"])
def test_framework_env_trains_and_evaluates_alone(envs: EnvBuilder, framework: str) -> None:
    """The data stage in the analysis env, then training and evaluation in the framework's;
    each stage first fails if its env can find a framework it must not hold (env_stages)."""
    envs.stage("analysis", "data")
    envs.stage(framework, framework)
    run = envs.workdir / env_stages.run_path(framework)
    models = run / "model"
    for name in ("last.npz", "best.npz", "history.csv", "monitor.csv"):
        assert (models / name).is_file(), name
    evaluation = run / "eval"
    assert (evaluation / "per_image.csv").is_file()
    assert (evaluation / "summary.json").is_file()
    assert any((evaluation / "denoised").glob("*.png"))


@pytest.mark.slow
def test_analysis_env_makes_tables_and_figures(envs: EnvBuilder) -> None:
    envs.stage("analysis", "data")
    envs.stage("torch", "torch")
    envs.stage("jittor", "jittor")
    envs.stage("analysis", "report")
    tables, figures = envs.workdir / "results/tables", envs.workdir / "results/figures"
    for name in ("psnr_ssim.csv", "psnr_ssim.html", "benchmark.csv", "benchmark.html"):
        assert (tables / name).stat().st_size > 0, name
    for name in ("loss_curves.png", "final_psnr.png", "qualitative_sigma25.png"):
        assert (figures / name).stat().st_size > 0, name
