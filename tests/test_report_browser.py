"""The Snakemake report, end to end: on a fake training tree (made-up histories, seeded
initial weights standing in for trained ones), the real evaluate rules (both frameworks) and
aggregation rules run, `snakemake --report` builds the self-contained HTML, and headless
Chromium renders it.

Checks, from the rendered DOM: the landing page shows the PSNR/SSIM table and the headline
figure, every figure is an embedded <img>; from a screenshot: the page is not blank.
Needs /usr/bin/chromium (CI installs it); skipped with a message when it is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fake_results import write_data, write_parity, write_training
from PIL import Image
from pipeline_runner import REPO_DATA, repo_data_config, run_snakemake, write_config

from n2v_repro.data.manifest import bsd68_ids, read_manifest
from n2v_repro.init_weights import make_init_weights

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RULES = [
    "evaluate_torch",
    "evaluate_jittor",
    "aggregate_tables",
    "plot_training",
    "plot_final_psnr",
    "plot_qualitative",
    "plot_parity",
]
FIGURES = [
    "loss_curves.png",
    "valid_psnr_ssim.png",
    "epoch_time.png",
    "memory_utilisation.png",
    "final_psnr.png",
    "qualitative_sigma25.png",
    "parity.png",
]


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
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    workdir = tmp_path_factory.mktemp("report_run")
    # config/test.yaml's BSD68 subset: 8 images, 4 of them for validation, sigma 25
    ids = bsd68_ids(read_manifest(REPO_DATA / "bsds500.sha256"), REPO_DATA / "bsd68_ids.txt", 8)
    weights = make_init_weights("n2n_unet", 123)
    write_data(workdir, ids, n_valid=4, sigmas=(25,))
    for framework in ("torch", "jittor"):
        write_training(workdir, framework, 25, weights=weights)
    write_parity(workdir)
    config = write_config(
        workdir / "test_config.yaml", {**repo_data_config(), "frameworks": ["torch", "jittor"]}
    )
    # Only evaluation and aggregation may run: every file upstream of them already exists.
    allowed = ["--allowed-rules", *RULES]
    result = run_snakemake(workdir, config, extra=allowed, timeout_s=600)
    assert result.returncode == 0, result.stdout[-5000:]
    for framework in ("torch", "jittor"):
        denoised = workdir / "results" / "eval" / framework / "sigma25" / "denoised"
        assert len(list(denoised.glob("*.png"))) == 8
    for name in FIGURES:
        assert (workdir / "results" / "figures" / name).exists(), name
    html = workdir / "results" / "report.html"
    result = run_snakemake(workdir, config, extra=[*allowed, "--report", str(html)])
    assert result.returncode == 0, result.stdout[-5000:]
    assert html.stat().st_size > 100_000  # self-contained: scripts and images inside
    return html


@pytest.fixture(scope="module")
def dom(report: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    user_dir = tmp_path_factory.mktemp("chromium_profile")
    result = _chromium(user_dir, "--dump-dom", report.as_uri())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text()
    # No file the browser would fetch from disk or the network: images are data URIs.
    assert not re.search(r'<img[^>]+src="(?!data:)', text)
    assert not re.search(r'<script[^>]+src="http', text)


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
