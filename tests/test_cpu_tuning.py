"""The CPU recipe is tuned on training data only: tools/cpu_tuning.py refuses BSD68 reads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BSD68_IDS = (REPO / "config/data/bsd68_ids.txt").read_text().split()


@pytest.fixture(scope="module")
def tuning() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpu_tuning", REPO / "tools/cpu_tuning.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_tuning"] = module
    spec.loader.exec_module(module)
    return module


def test_the_projects_candidates_plan_reads_no_bsd68_file(
    tuning: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dry run of config/cpu-tuning.yaml plans data and training jobs, none on BSD68."""
    status = tuning.main(["config/cpu-tuning.yaml", "--dry-run", "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().err
    generated = yaml.safe_load((tmp_path / "candidates.yaml").read_text())
    candidates = yaml.safe_load((REPO / "config/cpu-tuning.yaml").read_text())["candidates"]
    assert generated["recipes"] == list(candidates)
    assert generated["recipe_book"]["base"]["validation"]["scheme"] == "heldout_train"


def test_a_plan_that_evaluates_on_bsd68_is_refused(tuning: ModuleType, tmp_path: Path) -> None:
    """Asking for an evaluation (a BSD68 score) among the targets fails before any job runs."""
    target = "results/cpu/torch/sigma25/seed123/eval/summary.json"
    with pytest.raises(tuning.TuningError, match=r"refused: rule \w+ would read the BSD68 file"):
        tuning.check_plan([target, "--configfile", "config/cpu.yaml"], BSD68_IDS)


def test_bsd68_reads_names_the_rule_and_file(tuning: ModuleType) -> None:
    listing = "\n".join(
        [
            "rule download_bsds500:",
            "    input: config/data/bsds500.sha256",
            "rule to_gray_bsd400:",
            "    input: resources/bsds500/train/2092.jpg, resources/bsds500/test/3063.jpg",
            "rule peek:",
            f"    input: resources/patches/x/train.npy, resources/bsds500/val/{BSD68_IDS[0]}.jpg",
        ]
    )
    assert tuning.bsd68_reads(listing, BSD68_IDS) == [
        ("peek", f"resources/bsds500/val/{BSD68_IDS[0]}.jpg")
    ]
