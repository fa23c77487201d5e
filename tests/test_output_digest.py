"""tools/output_digest.py: a rerun's own changes (times, process names) digest the same; a
changed result does not."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "output_digest.py"
spec = importlib.util.spec_from_file_location("output_digest", TOOL)
digest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(digest)


def write_run(root: Path, psnr: str, seconds: str, process: int) -> Path:
    tables = root / "results" / "tables"
    tables.mkdir(parents=True)
    (tables / "psnr_ssim.csv").write_text(f"recipe,psnr,train_total_s\ncpu,{psnr},{seconds}\n")
    summary = {"psnr_mean": float(psnr), "total_time_s": float(seconds), "machine": "x"}
    (tables / "summary.json").write_text(json.dumps(summary))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as package:
        package.writestr(f"code/_bmz_arch_{process}.py", f"class _bmz_arch_{process}: {psnr}")
        package.writestr("code/conv.py.debug_pkl", f"/tmp/checkout{process}/src")
    (tables / "package.zip").write_bytes(archive.getvalue())
    return root


def test_a_rerun_with_other_times_and_process_digests_the_same(tmp_path: Path) -> None:
    before = digest.run_digests(write_run(tmp_path / "a", "27.21", "1758.2", 101))
    after = digest.run_digests(write_run(tmp_path / "b", "27.21", "1900.7", 202))
    assert len(before) == 3
    assert digest.differences(before, after) == []


def test_a_changed_psnr_differs_in_every_file_that_holds_it(tmp_path: Path) -> None:
    before = digest.run_digests(write_run(tmp_path / "a", "27.21", "1758.2", 101))
    after = digest.run_digests(write_run(tmp_path / "b", "27.20", "1758.2", 101))
    assert digest.differences(before, after) == [
        "differs: results/tables/package.zip",
        "differs: results/tables/psnr_ssim.csv",
        "differs: results/tables/summary.json",
    ]
