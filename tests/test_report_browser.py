"""The whole pipeline, download to report, as `snakemake --configfile config/test.yaml` runs it.

Generated images (tests/fake_bsds.py) are served from a real HTTP server on 127.0.0.1; every
rule runs for real: download, gray, split, noise, patches, initial weights, both trainings of
both recipes and both seeds, parity, the evaluations, tables, figures. Then
`snakemake --report` builds the self-contained HTML and headless Chromium renders it.

Checks, from the outputs: parity passed, every run trained its epochs and denoised every
image, the PSNR/SSIM table has a row per recipe x test set x weights x framework over both
seeds, and none scores weights on images that chose them; from the rendered DOM: the landing
page shows the compact summary table; from the layout at 1400 and 1920 px: the landing page's
tables (summary, methods) and Snakemake's rule graph do not overlap and the page title is not
cut off; from a screenshot: the page is not blank.
Needs /usr/bin/chromium (CI installs it: `apt-get install -y chromium`); the browser checks
are skipped with a message when it is absent.
"""

from __future__ import annotations

import csv
import json
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
RECIPES = ("paper", "port")  # config/test.yaml: held-out training images, the BSD68 split
SEEDS = (1, 2)
# Window sizes of the layout check: the two widths, at common screen heights.
WINDOWS = [(1400, 900), (1920, 1080)]
# Appended to a copy of the report: once the app has drawn the landing page, write the boxes
# of every table on it (summary, methods), the rule graph and the title into the DOM for
# --dump-dom to read.
MEASURE_SCRIPT = """
<script>
(function measure(tries) {
  const tables = [...document.querySelectorAll(".prose table.n2v-table")];
  const graph = document.querySelector("#rulegraph canvas, #rulegraph svg");
  const title = document.querySelector(".prose h1");
  const drawn = graph && graph.getBoundingClientRect().width > 0;
  if ((!tables.length || !drawn || !title) && tries > 0) {
    setTimeout(() => measure(tries - 1), 200);
    return;
  }
  const box = (e) => {
    if (!e) return null;
    const b = e.getBoundingClientRect();
    return [b.left, b.top, b.right, b.bottom];
  };
  const out = document.createElement("pre");
  out.id = "n2v-boxes";
  out.textContent = JSON.stringify(
    {tables: tables.map(box), graph: box(graph), title: box(title), width: window.innerWidth}
  );
  document.body.appendChild(out);
})(50);
</script>
"""


def _chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={user_dir}",
        # The report is a JavaScript app: let it render before the DOM is read.
        "--virtual-time-budget=15000", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the default target of config/test.yaml on generated images; return the workdir."""
    # config/test.yaml: 8 training images, 4 BSD68 images (2 for validation), sigma 25
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


def test_parity_passes_and_every_run_has_its_epochs_and_images(pipeline_run: Path) -> None:
    # Snakemake's exit status already says that every final output was written.
    results = pipeline_run / "results"
    # The report's parity table, and the gate's mark that every arch in use passed.
    assert "<td>FAILED</td>" not in (results / "parity" / "parity.html").read_text()
    parity_rows = (results / "parity" / "parity.csv").read_text().splitlines()[1:]
    passed = (results / "parity" / "passed.txt").read_text().splitlines()
    assert parity_rows and len(passed) == len(parity_rows)
    for recipe in RECIPES:
        for framework in ("torch", "jittor"):
            for seed in SEEDS:
                run = results / recipe / framework / "sigma25" / f"seed{seed}"
                assert len(list((run / "eval" / "denoised").glob("*.png"))) == 4
                history = (run / "model" / "history.csv").read_text()
                assert len(history.splitlines()) == 1 + 2  # header + config/test.yaml's 2 epochs


def test_heldout_recipe_read_no_bsd68_before_the_test(pipeline_run: Path) -> None:
    stats = json.loads(
        (pipeline_run / "resources/patches/train400_heldout2/sigma25/train_stats.json").read_text()
    )
    assert stats["validation_scheme"] == "heldout_train"
    bsd68 = set((pipeline_run / "resources/bsd68_split.csv").read_text().split())
    assert not set(stats["validation_ids"]) & {line.split(",")[0] for line in bsd68}
    log = (pipeline_run / "logs/patchify/train400_heldout2/sigma25.log").read_text()
    assert "held-out noisy training images" in log


def test_psnr_table_has_every_recipe_framework_test_set_and_weights(pipeline_run: Path) -> None:
    with open(pipeline_run / "results" / "tables" / "psnr_ssim.csv") as handle:
        rows = list(csv.DictReader(handle))
    keys = {(r["recipe"], r["framework"], r["test_set"], r["weights"], r["sigma"]) for r in rows}
    assert keys == {
        (recipe, framework, test_set, weights, "25")
        for recipe in RECIPES
        for framework in ("torch", "jittor")
        for test_set in ("bsd68", "bsd68_test")
        for weights in ("last", "best")
        # port chose its best weights on BSD68's validation half: not scored on all of BSD68
        if not (recipe == "port" and test_set == "bsd68" and weights == "best")
    }
    for row in rows:
        assert np.isfinite(float(row["psnr_mean"])) and float(row["noisy_psnr"]) > 0
        assert int(row["n"]) == (4 if row["test_set"] == "bsd68" else 2)
        assert int(row["seeds"]) == len(SEEDS)
        assert bool(row["paper_psnr"]) == (row["recipe"] == "paper" and row["test_set"] == "bsd68")


def test_every_trained_model_has_a_validated_bioimageio_package(pipeline_run: Path) -> None:
    """config/test.yaml packages the last weights of each of the 8 runs; `bioimageio test`
    passed on each, and a Jittor-trained package's PyTorch and ONNX outputs reproduce Jittor's
    own prediction of its test image within the package's tolerance."""
    with open(pipeline_run / "results" / "tables" / "bmz_packages.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(RECIPES) * 2 * len(SEEDS)
    for recipe in RECIPES:
        for framework in ("torch", "jittor"):
            for seed in SEEDS:
                folder = pipeline_run / "results" / recipe / framework / "sigma25" / f"seed{seed}"
                name = f"n2v_{recipe}_{framework}_sigma25_seed{seed}_last.zip"
                assert (folder / "bmz" / name).stat().st_size > 0, name
                summary = json.loads((folder / "bmz" / "last_validation.json").read_text())
                assert summary["status"] == "passed", summary["failures"]
                assert summary["test_input"]["framework"] == framework
                # Never a BSD68 image: a held-out training tile, or a training image (port).
                bsd68 = (pipeline_run / "resources/bsd68_split.csv").read_text()
                assert summary["test_input"]["image_id"] not in bsd68
                tolerance = summary["tolerance"]["absolute"]
                for weight_format, numbers in summary["reproduction"].items():
                    assert numbers["max_abs_diff"] <= tolerance, (name, weight_format, numbers)


def test_time_breakdown_covers_every_job_of_the_run(pipeline_run: Path) -> None:
    with open(pipeline_run / "results" / "tables" / "time_breakdown.csv") as handle:
        rows = {row["stage"]: row for row in csv.DictReader(handle)}
    runs = len(RECIPES) * 2 * len(SEEDS)  # x torch, jittor at sigma 25
    # download, gray x 2, split, noise x (bsd400, bsd68), patches x the two recipes' data sets
    assert int(rows["data preparation"]["jobs"]) == 8
    assert int(rows["training steps"]["jobs"]) == runs
    assert int(rows["evaluation"]["jobs"]) == runs
    benchmarks = sorted((pipeline_run / "benchmarks" / "evaluate").rglob("*.tsv"))
    assert len(benchmarks) == runs
    parts = [row for stage, row in rows.items() if stage != "total"]
    assert all(float(row["seconds"]) >= 0 for row in parts)
    # a training job does more than its timed epochs: start-up, final validation, outputs
    assert float(rows["rest of the training jobs"]["seconds"]) > 0
    assert sum(float(row["share_percent"]) for row in parts) == pytest.approx(100.0)


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


def test_landing_page_shows_the_summary_table(dom: str) -> None:
    assert 'class="n2v-table"' in dom and "n2v-compact" in dom
    assert "Test PSNR by recipe" in dom
    for header in ("recipe", "test images", "PyTorch", "Jittor", "paper"):
        assert f"<th>{header}</th>" in dom, header
    assert "27.71" in dom  # the paper's reference, on the paper recipe's rows
    for recipe in RECIPES:
        assert f"<td>{recipe}</td>" in dom


@pytest.mark.parametrize(("width", "height"), WINDOWS)
def test_landing_page_tables_do_not_overlap_the_rule_graph(
    report: Path, tmp_path: Path, width: int, height: int
) -> None:
    page = tmp_path / "report_measured.html"
    # Only the document's own </body>: embedded pages inside the report's data have theirs.
    head, tag, tail = report.read_text().rpartition("</body>")
    page.write_text(head + MEASURE_SCRIPT + tag + tail)
    result = _chromium(
        tmp_path / "profile", f"--window-size={width},{height}", "--dump-dom", page.as_uri()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r'<pre id="n2v-boxes">(.*?)</pre>', result.stdout, flags=re.S)
    assert found, "the measuring script wrote nothing: the landing page did not render"
    boxes = json.loads(found.group(1))
    assert boxes["width"] == width
    graph = boxes["graph"]
    # The summary table, then the methods table's block (config/test.yaml: sigma 25 only).
    assert len(boxes["tables"]) == 2 and graph, boxes
    for table in boxes["tables"]:
        # The table's own box, wider than its scrolling box's when it spills: every column in
        # view beside the graph, none hidden behind a sideways scroll.
        left, top, right, bottom = table
        intersects = left < graph[2] and graph[0] < right and top < graph[3] and graph[1] < bottom
        assert not intersects, f"landing-page table {table} overlaps the rule graph {graph}"
        assert table[2] - table[0] > 200  # a real table, not a collapsed one
    # Snakemake centres the landing page vertically: without workflow.rst's style, content
    # taller than the window would lose its top, title included, out of reach of scrolling.
    assert boxes["title"][1] >= 0, f"the page title is cut off: {boxes['title']}"


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
