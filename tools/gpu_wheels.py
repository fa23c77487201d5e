"""Wheels for the offline GPU machine, fetched here and installed there (docs/gpu.md).

The GPU machine has one python3 (3.12, torch 2.11 with numpy 2) and no package registry.
Missing there: Jittor 1.3.11 and the numpy < 2 it needs, jsonschema (n2v_repro.config), and
optionally Snakemake. Everything is carried as wheels in a git-ignored folder (`.whl/`):

    python tools/gpu_wheels.py download [--snakemake]     # here, with pip and the registry
    python3 tools/gpu_wheels.py install --target DIR      # there, offline

`install` makes two folders under DIR: `common/` (jsonschema and its needs, Snakemake) for
every job, and `jittor/` (numpy 1.26.4, jittor, astunparse) that only Jittor jobs put first
on their path, so torch jobs keep the machine's numpy 2. It writes DIR/env.sh, which exports
N2V_SITE_COMMON and N2V_SITE_JITTOR and puts the common folder on PYTHONPATH; workflow
scripts of the jittor framework then call `n2v_repro.framework_site.use_framework_site`.
Standard library only: it runs on the GPU machine before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = REPO_ROOT / ".whl"
TARGET_PYTHON = "3.12"
# Tags the GPU machine's CPython 3.12 on glibc x86-64 accepts; pip matches them exactly.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (39, 35, 34, 31, 28, 27, 24, 17)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
# Only for Jittor jobs: Jittor 1.3.11 returns garbage from Var.numpy() under numpy 2.
JITTOR = ["numpy==1.26.4", "jittor==1.3.11.0", "astunparse==1.6.3"]
# For every job: n2v_repro.config validates with jsonschema.
COMMON = [
    "jsonschema==4.25.1",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
]
# Snakemake 9.27.1's needs that the GPU machine's image lacks (its list: .library KINDS.md).
# Left out: pulp (15.6 MiB of bundled solvers), which only the `ilp` scheduler imports; without
# it run `snakemake --scheduler greedy`.
SNAKEMAKE = [
    "snakemake==9.27.1",
    "snakemake-interface-common==1.23.0",
    "snakemake-interface-executor-plugins==9.4.0",
    "snakemake-interface-logger-plugins==2.1.0",
    "snakemake-interface-report-plugins==1.3.0",
    "snakemake-interface-scheduler-plugins==2.0.2",
    "snakemake-interface-storage-plugins==4.4.1",
    "annotated-types==0.8.0",
    "argparse-dataclass==2.0.0",
    "conda-inject==1.3.2",
    "configargparse==1.9.0",
    "connection-pool==0.0.3",
    "docutils==0.22.4",
    "dpath==2.2.0",
    "fastjsonschema==2.22.3",
    "gitdb==4.0.12",
    "gitpython==3.2.1",
    "greenlet==3.5.6",
    "humanfriendly==10.0",
    "immutables==0.21",
    "jupyter-core==5.9.1",
    "nbformat==5.11.1",
    "platformdirs==4.14.8",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "smart-open==7.7.1",
    "smmap==5.0.3",
    "sqlalchemy==2.0.58",
    "sqlmodel==0.0.37",
    "tenacity==9.2.1",
    "throttler==1.2.3",
    "traitlets==5.16.1",
    "typing-inspection==0.4.5",
    "yte==1.9.4",
]
BUDGET_MIB = 64


def _name(requirement: str) -> str:
    return requirement.split("==")[0]


def _pip(*args: str, check: bool = True) -> bool:
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, text=True, capture_output=True)
    if result.returncode != 0 and check:
        sys.exit(f"gpu_wheels: failed: {' '.join(command)}\n{result.stdout}{result.stderr}")
    return result.returncode == 0


def download(dest: Path, snakemake: bool) -> list[Path]:
    """Fetch every wheel of the groups into `dest`; return the wheel files.

    A package published only as source (Jittor, connection-pool) is built into a wheel here;
    that must give a pure-Python wheel, which installs on any CPython 3.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wanted = JITTOR + COMMON + (SNAKEMAKE if snakemake else [])
    platforms = [option for tag in PLATFORMS for option in ("--platform", tag)]
    for requirement in wanted:
        if _pip("download", "--no-deps", "--only-binary=:all:", "--python-version",
                TARGET_PYTHON, "--implementation", "cp", "--abi", "cp312", *platforms,
                "-d", str(dest), requirement, check=False):  # fmt: skip
            continue
        with tempfile.TemporaryDirectory() as sdist, tempfile.TemporaryDirectory() as built:
            _pip("download", "--no-deps", "--no-binary=:all:", "-d", sdist, requirement)
            archive = next(Path(sdist).iterdir())
            _pip("wheel", "--no-deps", "--no-build-isolation", "-w", built, str(archive))
            wheel = next(Path(built).glob("*.whl"))
            if not wheel.name.endswith("-none-any.whl"):
                sys.exit(f"gpu_wheels: {requirement} has no cp312 wheel and builds {wheel.name}")
            shutil.move(wheel, dest / wheel.name)
    wheels = sorted(dest.glob("*.whl"))
    found = {_normal(path.name.split("-")[0]) for path in wheels}
    missing = [r for r in wanted if _normal(_name(r)) not in found]
    if missing:
        sys.exit(f"gpu_wheels: no wheel for {', '.join(missing)} in {dest}")
    return wheels


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _wheels_of(group: list[str], wheels: Path) -> list[Path]:
    chosen = []
    for requirement in group:
        name, version = requirement.split("==")
        files = sorted(wheels.glob(f"{_normal(name)}-{version}-*.whl"), key=lambda p: p.name)
        if not files:
            sys.exit(f"gpu_wheels: {requirement} is not in {wheels}; run `download` first")
        chosen.append(files[0])
    return chosen


def install(wheels: Path, target: Path, snakemake: bool) -> dict[str, Path]:
    """Install the groups into target/common and target/jittor, offline; write target/env.sh."""
    folders = {"common": target / "common", "jittor": target / "jittor"}
    groups = {"common": COMMON + (SNAKEMAKE if snakemake else []), "jittor": JITTOR}
    for key, group in groups.items():
        _pip("install", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
             "--upgrade", "--target", str(folders[key]),
             *map(str, _wheels_of(group, wheels)))  # fmt: skip
    env = target / "env.sh"
    env.write_text(
        "# Written by tools/gpu_wheels.py install; source it before running jobs.\n"
        f"export N2V_SITE_COMMON={folders['common']}\n"
        f"export N2V_SITE_JITTOR={folders['jittor']}\n"
        f"export PYTHONPATH={folders['common']}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f"export PATH={folders['common'] / 'bin'}:$PATH\n"
    )
    return folders


PROBE = """
import importlib.util, json
def where(name):
    spec = importlib.util.find_spec(name)
    return spec.origin if spec else None
try:
    import numpy
    numpy_info = [numpy.__version__, numpy.__file__]
except ImportError:
    numpy_info = [None, None]
found = {name: where(name) for name in ("jsonschema", "jittor")}
print(json.dumps({"numpy": numpy_info, **found}))
"""


def probe(path: list[Path]) -> dict:
    """Report what a job with `path` first on PYTHONPATH imports (run in a fresh interpreter)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, text=True, capture_output=True)
    if result.returncode != 0:
        sys.exit(f"gpu_wheels: probe failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def check(folders: dict[str, Path]) -> None:
    """Jittor jobs get numpy 1.26.4 and jittor from their folder; torch jobs the machine's numpy."""
    common, jittor = str(folders["common"]), str(folders["jittor"])
    seen = {
        "torch": probe([folders["common"]]),
        "jittor": probe([folders["jittor"], folders["common"]]),
    }
    problems = []
    for kind, found in seen.items():
        if not (found["jsonschema"] or "").startswith(common):
            problems.append(f"{kind} jobs: jsonschema not from {common}")
    version, where = seen["jittor"]["numpy"]
    if version != "1.26.4" or not (where or "").startswith(jittor):
        problems.append(f"jittor jobs: numpy {version} from {where}, expected 1.26.4 from {jittor}")
    if not (seen["jittor"]["jittor"] or "").startswith(jittor):
        problems.append(f"jittor jobs: jittor from {seen['jittor']['jittor']}")
    if (seen["torch"]["numpy"][1] or "").startswith(jittor):
        problems.append("torch jobs: numpy comes from the Jittor folder")
    if (folders["common"] / "snakemake").is_dir():
        env = {**os.environ, "PYTHONPATH": common}
        command = [sys.executable, "-m", "snakemake", "--version"]
        result = subprocess.run(command, env=env, text=True, capture_output=True)
        if result.returncode != 0:
            problems.append(f"snakemake does not start: {result.stderr.strip()[-500:]}")
        else:
            print(f"gpu_wheels: snakemake {result.stdout.strip()} starts")
    if problems:
        sys.exit("gpu_wheels: " + "; ".join(problems))
    for kind, found in seen.items():
        print(f"gpu_wheels: {kind} jobs: numpy {found['numpy'][0]} ({found['numpy'][1]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="fetch the wheels (needs pip and the registry)")
    get.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    get.add_argument("--snakemake", action="store_true", help="also Snakemake and its needs")
    put = sub.add_parser("install", help="install the carried wheels, offline")
    put.add_argument("--wheels", type=Path, default=DEFAULT_DEST)
    put.add_argument("--target", type=Path, required=True)
    put.add_argument("--snakemake", action="store_true", help="also install Snakemake")
    args = parser.parse_args(argv)
    if args.command == "download":
        wheels = download(args.dest, args.snakemake)
        total = sum(path.stat().st_size for path in wheels) / 2**20
        for path in wheels:
            print(f"{path.stat().st_size / 2**20:8.2f} MiB  {path.name}")
        print(f"{total:8.2f} MiB  in {len(wheels)} wheels ({args.dest})")
        if total > BUDGET_MIB / 2:
            print(f"gpu_wheels: over half of the {BUDGET_MIB} MiB a device call carries")
    else:
        if not args.wheels.is_dir():
            sys.exit(f"gpu_wheels: no wheel folder {args.wheels}")
        check(install(args.wheels, args.target, args.snakemake))
        print(f"gpu_wheels: installed under {args.target}; source {args.target / 'env.sh'}")


if __name__ == "__main__":
    main()
