"""The Jittor jobs' own package folder goes first on the path (n2v_repro.framework_site).

Each case runs a fresh interpreter: the folder must win before numpy is first imported. The
folder holds a stand-in numpy package that only reports where it was imported from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

JOB = """
import json, subprocess, sys
from n2v_repro.framework_site import use_framework_site
{before}
try:
    folder = use_framework_site({framework!r})
except Exception as error:
    print(json.dumps({{"error": f"{{type(error).__name__}}: {{error}}"}}))
    sys.exit(0)
import numpy
child = subprocess.run([sys.executable, "-c", "import numpy; print(numpy.__file__)"],
                       capture_output=True, text=True).stdout.strip()
print(json.dumps({{"folder": str(folder), "numpy": numpy.__file__, "child": child}}))
"""


@pytest.fixture
def jittor_site(tmp_path: Path) -> Path:
    site = tmp_path / "site_jittor"
    (site / "numpy").mkdir(parents=True)
    (site / "numpy" / "__init__.py").write_text("__version__ = '1.26.4'\n")
    return site


def run_job(framework: str, site: str | None, before: str = "") -> dict:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.pop("N2V_SITE_JITTOR", None)
    if site is not None:
        env["N2V_SITE_JITTOR"] = site
    script = JOB.format(framework=framework, before=before)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_jittor_job_imports_numpy_from_its_folder(jittor_site: Path) -> None:
    seen = run_job("jittor", str(jittor_site))
    assert seen["folder"] == str(jittor_site.resolve())
    assert seen["numpy"].startswith(str(jittor_site.resolve()))
    assert seen["child"].startswith(str(jittor_site.resolve()))  # child interpreters too


def test_torch_job_keeps_the_machines_numpy(jittor_site: Path) -> None:
    seen = run_job("torch", str(jittor_site))
    assert seen["folder"] == "None"
    assert not seen["numpy"].startswith(str(jittor_site.resolve()))


def test_without_the_variable_nothing_changes() -> None:
    seen = run_job("jittor", None)
    assert seen["folder"] == "None"


def test_too_late_once_numpy_is_imported(jittor_site: Path) -> None:
    seen = run_job("jittor", str(jittor_site), before="import numpy")
    assert seen["error"].startswith("RuntimeError: numpy")


def test_missing_folder_and_unknown_framework_are_named(tmp_path: Path) -> None:
    missing = run_job("jittor", str(tmp_path / "nowhere"))
    assert "FileNotFoundError" in missing["error"] and "nowhere" in missing["error"]
    unknown = run_job("paddle", None)
    assert "ValueError" in unknown["error"]


def test_a_worker_environment_puts_the_frameworks_folder_first(tmp_path: Path) -> None:
    from n2v_repro.framework_site import framework_env

    site = tmp_path / "site_jittor"
    site.mkdir()
    base = {"PYTHONPATH": f"/src{os.pathsep}{site}", "N2V_SITE_JITTOR": str(site), "X": "1"}
    env = framework_env("jittor", base)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(site.resolve()), "/src"]
    assert env["X"] == "1" and base["PYTHONPATH"] == f"/src{os.pathsep}{site}"  # a copy
    assert framework_env("torch", base)["PYTHONPATH"] == base["PYTHONPATH"]
    assert framework_env("jittor", {"PYTHONPATH": "/src"}) == {"PYTHONPATH": "/src"}
    with pytest.raises(ValueError, match="framework"):
        framework_env("mxnet", base)
