"""Workflow scripts' error reporting and logs (n2v_repro.logs.script_log), through Snakemake.

A user's mistake (here: no mirror can serve the images) shows its message on Snakemake's
console without a traceback, and the rule's log keeps the traceback. Snakemake deletes a
job's log before each run; the log of an earlier, failed attempt is kept above the new one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from fake_bsds import FakeBsds, make_fake_bsds
from http_mirror import serve_directory, unreachable_url
from pipeline_runner import run_snakemake, write_config

LOG = "logs/download_bsds500/download_bsds500.log"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeBsds:
    return make_fake_bsds(tmp_path_factory.mktemp("fake"), n_train=2, n_test=0, n_val=3, n_bsd68=3)


def download(workdir: Path, fake: FakeBsds, mirror: str) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(exist_ok=True)
    config = {
        "frameworks": ["torch"],
        "sigmas": [25],
        "data": fake.data_config([mirror], train_images=None, bsd68_images=None, n_valid=2),
    }
    return run_snakemake(
        workdir, write_config(workdir / "config.yaml", config), ["download_bsds500"]
    )


def test_failed_download_shows_its_message_and_its_log_is_kept_by_the_rerun(
    tmp_path: Path, fake: FakeBsds
) -> None:
    down = unreachable_url()
    result = download(tmp_path, fake, down)
    assert result.returncode != 0
    n_files = len(fake.train_ids) + len(fake.ids["val"])
    console = result.stdout
    assert f"Error: {n_files} of {n_files} file(s) could not be downloaded" in console, console
    # Downloads run in threads: the first file fails itself or is skipped after three others
    # failed; either way its line names its address and the refused connection.
    first = re.escape(f"{down}/train/{fake.train_ids[0]}.jpg: ")
    assert re.search(first + r"[^\n]*cannot connect", console), console
    assert f"(full log: {LOG})" in console
    assert "Traceback" not in console, console
    log = (tmp_path / LOG).read_text()
    assert "Traceback (most recent call last)" in log and "DownloadError" in log, log
    assert f"{down}/train/{fake.train_ids[0]}.jpg" in log

    with serve_directory(fake.images) as mirror:
        result = download(tmp_path, fake, mirror)
    assert result.returncode == 0, result.stdout[-3000:]
    log = (tmp_path / LOG).read_text()
    failed = log.index("could not be downloaded")
    header = re.search(
        r"^==== attempt 2, started (\S+) \(earlier attempts above\) ====$", log, re.M
    )
    assert header is not None, log
    assert datetime.fromisoformat(header.group(1)).date() == datetime.now().astimezone().date()
    succeeded = log.index(f"{n_files}/{n_files} files in place ({n_files} fetched)")
    assert failed < header.start() < succeeded, log
    assert log.count("==== attempt") == 1
    # Once the job succeeds, its log holds everything: no attempts file is left behind.
    assert [p.name for p in (tmp_path / LOG).parent.iterdir()] == [Path(LOG).name]


SCRIPT = textwrap.dedent(
    """
    import sys
    from n2v_repro.data.manifest import ManifestError
    from n2v_repro.logs import script_log
    with script_log(sys.argv[1]):
        if sys.argv[2] == "user":
            raise ManifestError("manifest.sha256 line 3: not '<hash>  <split>/<id>.jpg'")
        {}["a bug"]
    """
)


@pytest.mark.parametrize("kind", ["user", "bug"])
def test_user_errors_show_the_message_and_bugs_the_traceback(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "logs" / "job.log"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log), kind],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in log.read_text()
    if kind == "user":
        assert result.stderr.startswith("Error: manifest.sha256 line 3: not")
        assert "Traceback" not in result.stderr
    else:
        assert "Traceback (most recent call last)" in result.stderr and "KeyError" in result.stderr
    assert (tmp_path / "logs" / ".job.log.attempts").exists(), "kept for the next attempt"
