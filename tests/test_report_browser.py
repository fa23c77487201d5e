"""The whole pipeline, download to report, as `snakemake --configfile config/test.yaml` runs it.

Generated images (tests/fake_bsds.py) are served from a real HTTP server on 127.0.0.1; every
rule runs for real: download, gray, split, noise, patches, initial weights, both trainings,
parity, both evaluations, tables, figures. Then `snakemake --report` builds the
self-contained HTML and headless Chromium renders it.

Checks, from the outputs: every final table and figure exists, the PSNR/SSIM table has a row
per framework x test set x weights; from the rendered DOM: the landing page shows the PSNR/SSIM
table and the headline figure, every figure is an embedded <img>; from a screenshot: the page
is not blank. Needs /usr/bin/chromium (CI installs it); the browser checks are skipped with a
message when it is absent.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fake_bsds import make_fake_bsds
from http_mirror import serve_directory
from PIL import Image
from pipeline_runner import run_snakemake, write_config

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FIGURES = [
    "loss_curves.png",
    "valid_psnr_ssim.png",
    "epoch_time.png",
    "memory_utilisation.png",
    "final_psnr.png",
    "qualitative_sigma25.png",
    "parity.png",
]
TABLES = ["psnr_ssim.csv", "psnr_ssim.html", "benchmark.csv", "benchmark.html"]


def _chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_dir}",
        # The report is a JavaScript app: let it render before the DOM is read.
        "--virtual-time-budget=15000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the default target of config/test.yaml on generated images; return the workdir."""
    # config/test.yaml: 8 training images, 8 BSD68 images (4 for validation), sigma 25
    fake = make_fake_bsds(tmp_path_factory.mktemp("fake"), n_train=6, n_test=2, n_val=10, n_bsd68=8)
    workdir = tmp_path_factory.mktemp("pipeline_run")
    with serve_directory(fake.images) as mirror:
        config = write_config(workdir / "mirror.yaml", {"data": fake.data_config([mirror])})
        result = run_snakemake(workdir, config, timeout_s=1200)
        assert result.returncode == 0, result.stdout[-5000:]
        html = workdir / "results" / "report.html"
        result = run_snakemake(workdir, config, extra=["--report", str(html)])
        assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.fixture(scope="module")
def report(pipeline_run: Path) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    return pipeline_run / "results" / "report.html"


def test_every_final_output_exists(pipeline_run: Path) -> None:
    results = pipeline_run / "results"
    for name in TABLES:
        assert (results / "tables" / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (results / "figures" / name).stat().st_size > 0, name
    assert (results / "parity" / "parity.json").exists()
    # The report's parity table, and the gate's mark that every arch passed.
    assert "<td>FAILED</td>" not in (results / "parity" / "parity.html").read_text()
    assert len((results / "parity" / "passed.txt").read_text().splitlines()) == 5
    for framework in ("torch", "jittor"):
        denoised = results / "eval" / framework / "sigma25" / "denoised"
        assert len(list(denoised.glob("*.png"))) == 8
        history = (results / "models" / framework / "sigma25" / "history.csv").read_text()
        assert len(history.splitlines()) == 1 + 2  # header + config/test.yaml's 2 epochs


def test_psnr_table_has_every_framework_test_set_and_weights(pipeline_run: Path) -> None:
    with open(pipeline_run / "results" / "tables" / "psnr_ssim.csv") as handle:
        rows = list(csv.DictReader(handle))
    keys = {(r["framework"], r["test_set"], r["weights"], r["sigma"]) for r in rows}
    assert keys == {
        (framework, test_set, weights, "25")
        for framework in ("torch", "jittor")
        for test_set in ("bsd68", "test34")
        for weights in ("last", "best")
    }
    for row in rows:
        assert np.isfinite(float(row["psnr_mean"])) and float(row["noisy_psnr"]) > 0
        assert int(row["n"]) == (8 if row["test_set"] == "bsd68" else 4)


def test_report_is_self_contained(report: Path) -> None:
    assert report.stat().st_size > 100_000  # scripts and images inside
    text = report.read_text()
    # No file the browser would fetch from disk or the network: images are data URIs.
    assert not re.search(r'<img[^>]+src="(?!data:)', text)
    assert not re.search(r'<script[^>]+src="http', text)


@pytest.fixture(scope="module")
def dom(report: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    user_dir = tmp_path_factory.mktemp("chromium_profile")
    result = _chromium(user_dir, "--dump-dom", report.as_uri())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_landing_page_shows_the_psnr_ssim_table(dom: str) -> None:
    assert 'class="n2v-table"' in dom
    assert "Denoising accuracy on BSD68 (PSNR/SSIM)" in dom
    for header in ("PSNR mean (dB)", "SSIM mean", "noisy PSNR (dB)", "paper N2V PSNR (dB)"):
        assert header in dom, header
    assert "27.71" in dom  # the paper's reference, on the bsd68 sigma-25 rows
    assert re.search(r"<td[^>]*>(bsd68|test34)</td>", dom)


def test_landing_page_shows_the_headline_figure(dom: str) -> None:
    images = re.findall(r"<img[^>]*>", dom)
    headline = [img for img in images if 'alt="Test PSNR by noise level"' in img]
    assert len(headline) == 1, [img[:120] for img in images]
    assert 'src="data:image/png;base64,' in headline[0]


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = _chromium(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri()
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-3000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1800, 1400)
    assert pixels.var() > 100, "screenshot is (nearly) uniform"
    # Keep the screenshot where a person can look at it after the run.
    keep = report.parent / "report_screenshot.png"
    shutil.copyfile(shot, keep)
